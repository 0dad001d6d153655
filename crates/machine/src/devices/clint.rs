//! SiFive CLINT (core-local interruptor): software and timer interrupts per hart.
//!
//! Register map (SiFive FU540 manual §9, "Core Local Interruptor"; QEMU
//! `hw/intc/riscv_aclint.c`): `msip[hart]` at `0x0 + 4*hart`, `mtimecmp[hart]` at
//! `0x4000 + 8*hart`, `mtime` at `0xbff8`.
//!
//! The CLINT does not own time: the machine derives `mtime` from the instruction count
//! and passes it to every access. So this device does not implement [`super::Mmio`];
//! its `read`/`write` take `mtime` as an extra argument. Writes to `mtime` are ignored:
//! guest time is a function of the instruction count and cannot be set by the guest.

use serde::{Deserialize, Serialize};

/// Offset of `msip[0]`.
pub const MSIP_BASE: u64 = 0x0;
/// Offset of `mtimecmp[0]`.
pub const MTIMECMP_BASE: u64 = 0x4000;
/// Offset of `mtime`.
pub const MTIME: u64 = 0xbff8;
/// Most harts the register map has room for (`mtimecmp` must end before `mtime`).
pub const MAX_HARTS: usize = ((MTIME - MTIMECMP_BASE) / 8) as usize;

/// CLINT state: the per-hart `msip` bits and `mtimecmp` registers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clint {
    /// `msip[hart]` bit 0 (the other 31 bits are hardwired to zero).
    msip: Vec<bool>,
    /// `mtimecmp[hart]`.
    mtimecmp: Vec<u64>,
}

impl Clint {
    /// A CLINT for `harts` harts (clamped to `1..=MAX_HARTS`), in its reset state:
    /// no software interrupt, `mtimecmp = u64::MAX` (no timer interrupt).
    pub fn new(harts: usize) -> Clint {
        let harts = harts.clamp(1, MAX_HARTS);
        Clint {
            msip: vec![false; harts],
            mtimecmp: vec![u64::MAX; harts],
        }
    }

    /// Whether restored state has the shape the register map relies on: one `msip`
    /// and one `mtimecmp` per hart, `1..=MAX_HARTS` harts (a snapshot is not trusted).
    pub fn is_valid(&self) -> bool {
        (1..=MAX_HARTS).contains(&self.msip.len()) && self.mtimecmp.len() == self.msip.len()
    }

    /// Number of harts.
    pub fn harts(&self) -> usize {
        self.msip.len()
    }

    /// Whether `msip[hart]` is set (MSIP pending); false for unknown harts.
    pub fn msip(&self, hart: usize) -> bool {
        self.msip.get(hart).copied().unwrap_or(false)
    }

    /// `mtimecmp[hart]`; `u64::MAX` for unknown harts.
    pub fn mtimecmp(&self, hart: usize) -> u64 {
        self.mtimecmp.get(hart).copied().unwrap_or(u64::MAX)
    }

    /// Whether the timer interrupt (MTIP) of `hart` is pending at time `mtime`:
    /// `mtime >= mtimecmp` (Priv. spec 3.2.1).
    pub fn mtip(&self, hart: usize, mtime: u64) -> bool {
        mtime >= self.mtimecmp(hart)
    }

    /// Read `size` bytes at `offset`, with the current time `mtime`. Accesses must lie
    /// inside one register (4- and 8-byte accesses to `mtimecmp`/`mtime`, either half
    /// of them with 4 bytes); anything else reads 0.
    pub fn read(&mut self, offset: u64, size: u8, mtime: u64) -> u64 {
        match self.decode(offset, size) {
            Some((Reg::Msip(hart), off)) => lanes_read(self.msip[hart] as u64, off, size),
            Some((Reg::Mtimecmp(hart), off)) => lanes_read(self.mtimecmp[hart], off, size),
            Some((Reg::Mtime, off)) => lanes_read(mtime, off, size),
            None => 0,
        }
    }

    /// Write the low `size` bytes of `value` at `offset`. Writes to `mtime` are ignored
    /// (time belongs to the machine); `mtime` is unused but kept for symmetry with
    /// [`Clint::read`].
    pub fn write(&mut self, offset: u64, size: u8, value: u64, _mtime: u64) {
        match self.decode(offset, size) {
            Some((Reg::Msip(hart), off)) => {
                let v = lanes_write(self.msip[hart] as u64, off, size, value);
                self.msip[hart] = v & 1 != 0;
            }
            Some((Reg::Mtimecmp(hart), off)) => {
                self.mtimecmp[hart] = lanes_write(self.mtimecmp[hart], off, size, value);
            }
            Some((Reg::Mtime, _)) | None => {}
        }
    }

    /// The register and the byte offset inside it, if the access fits in one register.
    fn decode(&self, offset: u64, size: u8) -> Option<(Reg, u64)> {
        if !matches!(size, 1 | 2 | 4 | 8) || !offset.is_multiple_of(u64::from(size)) {
            return None;
        }
        let harts = self.harts() as u64;
        let (reg, width, off) = if offset < MTIMECMP_BASE {
            let hart = (offset - MSIP_BASE) / 4;
            (hart < harts).then_some((Reg::Msip(hart as usize), 4, offset % 4))?
        } else if offset < MTIME {
            let hart = (offset - MTIMECMP_BASE) / 8;
            (hart < harts).then_some((Reg::Mtimecmp(hart as usize), 8, offset % 8))?
        } else if offset < MTIME + 8 {
            (Reg::Mtime, 8, offset - MTIME)
        } else {
            return None;
        };
        (off + u64::from(size) <= width).then_some((reg, off))
    }
}

/// A CLINT register.
#[derive(Clone, Copy, Debug)]
enum Reg {
    Msip(usize),
    Mtimecmp(usize),
    Mtime,
}

/// Mask of the low `size` bytes.
fn size_mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (8 * u32::from(s))) - 1,
    }
}

/// Bytes `[off, off + size)` of little-endian register `reg`.
fn lanes_read(reg: u64, off: u64, size: u8) -> u64 {
    (reg >> (8 * off)) & size_mask(size)
}

/// `reg` with bytes `[off, off + size)` replaced by the low bytes of `value`.
fn lanes_write(reg: u64, off: u64, size: u8, value: u64) -> u64 {
    let mask = size_mask(size) << (8 * off);
    (reg & !mask) | ((value << (8 * off)) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_state() {
        let c = Clint::new(1);
        assert!(!c.msip(0));
        assert_eq!(c.mtimecmp(0), u64::MAX);
        assert!(!c.mtip(0, u64::MAX - 1));
        assert!(!c.msip(5));
    }

    #[test]
    fn msip_bit0_only() {
        let mut c = Clint::new(1);
        c.write(0, 4, 0xffff_ffff, 0);
        assert!(c.msip(0));
        assert_eq!(c.read(0, 4, 0), 1);
        c.write(0, 4, 0, 0);
        assert!(!c.msip(0));
        // msip[1] does not exist on a one-hart CLINT.
        c.write(4, 4, 1, 0);
        assert_eq!(c.read(4, 4, 0), 0);
    }

    #[test]
    fn mtimecmp_halves_and_whole() {
        let mut c = Clint::new(2);
        c.write(0x4000, 8, 0x1122_3344_5566_7788, 0);
        assert_eq!(c.mtimecmp(0), 0x1122_3344_5566_7788);
        assert_eq!(c.read(0x4000, 4, 0), 0x5566_7788);
        assert_eq!(c.read(0x4004, 4, 0), 0x1122_3344);
        c.write(0x4004, 4, 0xaabb_ccdd, 0);
        assert_eq!(c.mtimecmp(0), 0xaabb_ccdd_5566_7788);
        c.write(0x4000, 4, 0x0102_0304, 0);
        assert_eq!(c.read(0x4000, 8, 0), 0xaabb_ccdd_0102_0304);
        // Hart 1's register is 8 bytes further.
        c.write(0x4008, 8, 5, 0);
        assert_eq!(c.mtimecmp(1), 5);
        assert_eq!(c.mtimecmp(0), 0xaabb_ccdd_0102_0304);
        assert!(c.mtip(1, 5) && !c.mtip(1, 4));
    }

    #[test]
    fn mtime_reads_machine_time_and_ignores_writes() {
        let mut c = Clint::new(1);
        let t = 0x0000_0001_8000_0002;
        assert_eq!(c.read(0xbff8, 8, t), t);
        assert_eq!(c.read(0xbff8, 4, t), 0x8000_0002);
        assert_eq!(c.read(0xbffc, 4, t), 1);
        let before = c.clone();
        c.write(0xbff8, 8, 0, t);
        assert_eq!(c, before);
    }

    #[test]
    fn misaligned_and_unknown_accesses() {
        let mut c = Clint::new(1);
        assert_eq!(c.read(0x4002, 4, 0), 0);
        assert_eq!(c.read(0x4004, 8, 0), 0);
        assert_eq!(c.read(0xc000, 8, 7), 0);
        assert_eq!(c.read(0x3, 3, 0), 0);
        c.write(0x4001, 8, 0, 0);
        assert_eq!(c.mtimecmp(0), u64::MAX);
    }

    #[test]
    fn serde_round_trip() {
        let mut c = Clint::new(1);
        c.write(0, 4, 1, 0);
        c.write(0x4000, 8, 1234, 0);
        let bytes = postcard::to_stdvec(&c).unwrap();
        let back: Clint = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, c);
    }
}
