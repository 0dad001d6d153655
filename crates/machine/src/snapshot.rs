//! Whole-machine snapshots and the state hash (DESIGN.md §1, STYLE.md: one container
//! with magic, version, serde state and CRC).
//!
//! Container: `b"FTVMSNAP"`, format version (u32 LE), payload length (u64 LE),
//! payload (postcard-encoded [`MachineState`]), CRC32C of everything before it (u32 LE).

use crate::bus::Bus;
use crate::clock::Clock;
use crate::cpu::{Hart, HartState};
use crate::devices::clint::Clint;
use crate::devices::plic::Plic;
use crate::devices::sifive_test::SifiveTest;
use crate::devices::uart::Uart16550;
use crate::devices::virtio::{VirtioBlk, VirtioNet, VirtioRng};
use crate::machine::Machine;
use crate::ram::Ram;
use crate::PAGE_SIZE;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"FTVMSNAP";
/// Snapshot format version; bump on any change to [`MachineState`].
pub const FORMAT_VERSION: u32 = 2;
const PAGE: usize = PAGE_SIZE;

/// Problems reading a snapshot; messages read as sentences.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot at all.
    #[error("not an ftvm snapshot (bad magic)")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("snapshot format version {found} is not supported (this ftvm reads version {FORMAT_VERSION})")]
    Version {
        /// Version in the file.
        found: u32,
    },
    /// Shorter than its header says.
    #[error("snapshot is truncated ({0} bytes)")]
    Truncated(usize),
    /// Checksum mismatch.
    #[error("snapshot is corrupt (CRC32C mismatch)")]
    Checksum,
    /// Payload could not be decoded.
    #[error("snapshot payload is malformed: {0}")]
    Decode(String),
}

/// Everything guest-visible, as plain data.
#[derive(Serialize, Deserialize)]
pub struct MachineState {
    hart: HartState,
    clint: Clint,
    plic: Plic,
    uart: Uart16550,
    test: SifiveTest,
    clock: Clock,
    blk: Option<VirtioBlk>,
    net: Option<VirtioNet>,
    rng: Option<VirtioRng>,
    builtin_sbi: bool,
    ram_size: u64,
    /// Non-zero RAM pages: (page index, contents).
    ram_pages: Vec<(u32, serde_bytes::ByteBuf)>,
}

impl Machine {
    fn device_state(&self, with_ram: bool) -> MachineState {
        let ram = self.bus.ram.as_slice();
        let ram_pages = if with_ram {
            ram.chunks(PAGE)
                .enumerate()
                .filter(|(_, p)| p.iter().any(|&b| b != 0))
                .map(|(i, p)| (i as u32, serde_bytes::ByteBuf::from(p.to_vec())))
                .collect()
        } else {
            Vec::new()
        };
        MachineState {
            // The x0 write sink is scratch, not state: `Regs` serializes x0..x31 only.
            hart: self.hart.s.clone(),
            clint: self.bus.clint.clone(),
            plic: self.bus.plic.clone(),
            uart: self.bus.uart.clone(),
            test: self.bus.test.clone(),
            clock: self.bus.clock.clone(),
            blk: self.bus.blk.clone(),
            net: self.bus.net.clone(),
            rng: self.bus.rng.clone(),
            builtin_sbi: self.builtin_sbi,
            ram_size: self.bus.ram.size(),
            ram_pages,
        }
    }

    /// A 128-bit hash (XXH3) of every bit of guest-visible state: hart, CSRs, devices,
    /// clock and all of RAM. Equal states hash equal on any host.
    pub fn state_hash(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let meta = postcard::to_stdvec(&self.device_state(false)).expect("state encodes");
        h.update(&meta);
        h.update(self.bus.ram.as_slice());
        h.digest128()
    }

    /// Save the whole machine as one versioned, checksummed container.
    pub fn save(&self) -> Vec<u8> {
        seal(&self.device_state(true))
    }

    /// Rebuild a machine from [`Machine::save`] output.
    pub fn restore(bytes: &[u8]) -> Result<Machine, SnapshotError> {
        let st = decode(bytes)?;
        let ram = Ram::try_new(st.ram_size).map_err(|e| {
            SnapshotError::Decode(format!(
                "cannot allocate its {} MiB of guest RAM: {e}",
                st.ram_size >> 20
            ))
        })?;
        Machine::from_state(st, ram)
    }

    // ---- Live transfer: pre-copy RAM while the source runs, then stop and copy ----

    /// Number of [`PAGE_SIZE`] pages of guest RAM.
    pub fn ram_pages(&self) -> u32 {
        self.bus.ram.pages()
    }

    /// Indices (ascending) of the RAM pages written since the last call (by the guest,
    /// devices or boot), clearing the record. A machine from [`Machine::new`] or
    /// [`Machine::restore`] reports every page on its first call; one from
    /// [`Machine::restore_keeping_ram`] keeps its RAM's record.
    pub fn take_dirty_pages(&mut self) -> Vec<u32> {
        self.bus.ram.take_dirty()
    }

    /// The contents of RAM page `index` ([`PAGE_SIZE`] bytes), if inside RAM.
    pub fn ram_page(&self, index: u32) -> Option<&[u8]> {
        self.bus.ram.page(index)
    }

    /// Overwrite RAM page `index` with `data` (exactly [`PAGE_SIZE`] bytes); false, and
    /// nothing changed, if the page is outside RAM or `data` is the wrong length.
    pub fn set_ram_page(&mut self, index: u32, data: &[u8]) -> bool {
        self.bus.ram.set_page(index, data)
    }

    /// Like [`Machine::save`], but without RAM contents (the RAM size is still
    /// recorded): the stop-and-copy part of a live transfer, for a target whose RAM
    /// already holds this machine's pages. Apply it with [`Machine::restore_keeping_ram`].
    pub fn save_without_ram(&self) -> Vec<u8> {
        seal(&self.device_state(false))
    }

    /// Replace this machine's CPU and device state with a container's, keeping its RAM,
    /// with any RAM pages the container holds written over it. Once this machine's RAM
    /// has received every page the source reported dirty (from its first call to
    /// [`Machine::take_dirty_pages`] on), the result of restoring the source's
    /// [`Machine::save_without_ram`] behaves exactly as `Machine::restore(&source.save())`.
    ///
    /// A full [`Machine::save`] container lists only non-zero pages, so pages it omits
    /// keep this machine's contents rather than becoming zero.
    ///
    /// On error this machine is dropped; the container is checked as by
    /// [`Machine::restore`], and its RAM size must equal this machine's.
    pub fn restore_keeping_ram(self, bytes: &[u8]) -> Result<Machine, SnapshotError> {
        let st = decode(bytes)?;
        let ram = self.bus.ram;
        if st.ram_size != ram.size() {
            return Err(SnapshotError::Decode(format!(
                "RAM size {} differs from this machine's {}",
                st.ram_size,
                ram.size()
            )));
        }
        // The caches that depend on RAM contents (decoded blocks, TLB) live in the hart,
        // which is rebuilt empty; `ram`'s code flags may be stale, which only costs an
        // extra invalidation on a later write.
        Machine::from_state(st, ram)
    }

    /// A machine from decoded state and RAM, writing the state's RAM pages into it.
    fn from_state(st: MachineState, mut ram: Ram) -> Result<Machine, SnapshotError> {
        for (i, page) in &st.ram_pages {
            if !ram.set_page(*i, page) {
                return Err(SnapshotError::Decode(format!("bad RAM page {i}")));
            }
        }
        let mut bus = Bus::new(ram, 1);
        bus.clint = st.clint;
        bus.plic = st.plic;
        bus.uart = st.uart;
        bus.test = st.test;
        bus.clock = st.clock;
        bus.blk = st.blk;
        bus.net = st.net;
        bus.rng = st.rng;
        let mut hart = Hart::from_state(st.hart);
        hart.sbi_intercept = st.builtin_sbi;
        Ok(Machine::from_parts(hart, bus, st.builtin_sbi))
    }
}

/// Wrap `st` in the container: magic, version, length, payload, CRC32C.
fn seal(st: &MachineState) -> Vec<u8> {
    let payload = postcard::to_stdvec(st).expect("state encodes");
    let mut out = Vec::with_capacity(payload.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Check a container and decode its state, validating what the machine relies on.
fn decode(bytes: &[u8]) -> Result<MachineState, SnapshotError> {
    if bytes.len() < 24 {
        return Err(if bytes.starts_with(&MAGIC[..bytes.len().min(8)]) {
            SnapshotError::Truncated(bytes.len())
        } else {
            SnapshotError::BadMagic
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(SnapshotError::Version { found: version });
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let total = 20u64
        .checked_add(len)
        .and_then(|n| n.checked_add(4))
        .ok_or(SnapshotError::Truncated(bytes.len()))?;
    if (bytes.len() as u64) < total {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    let body = &bytes[..20 + len as usize];
    let crc = u32::from_le_bytes(bytes[body.len()..body.len() + 4].try_into().unwrap());
    if crc32c::crc32c(body) != crc {
        return Err(SnapshotError::Checksum);
    }
    let st: MachineState =
        postcard::from_bytes(&body[20..]).map_err(|e| SnapshotError::Decode(e.to_string()))?;
    if !st.ram_size.is_multiple_of(PAGE as u64) || st.ram_size > (64 << 30) {
        return Err(SnapshotError::Decode(format!(
            "bad RAM size {}",
            st.ram_size
        )));
    }
    if st.hart.csr.pmpaddr.len() != 64 {
        return Err(SnapshotError::Decode("bad PMP register count".into()));
    }
    if !st.clock.is_valid() {
        return Err(SnapshotError::Decode("bad clock rate".into()));
    }
    if !st.plic.is_valid() || !st.clint.is_valid() {
        return Err(SnapshotError::Decode(
            "bad interrupt controller state".into(),
        ));
    }
    Ok(st)
}

#[cfg(test)]
mod hostile_tests {
    use super::*;
    use crate::boot::{DeviceConfig, DiskConfig};
    use crate::testutil::{self as enc, Asm};
    use crate::ICount;

    /// xorshift64: deterministic pseudo-random numbers without a dependency.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Recompute the container's CRC, so mutations reach the decoder and the machine.
    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    /// A snapshot crafted to pass the checksum but carrying hostile state must be
    /// refused or, if accepted, run without panicking: restore validates what the
    /// machine relies on (STYLE.md: guest input never panics the host).
    #[test]
    fn mutated_snapshots_with_valid_checksums_never_panic() {
        let mut a = Asm::new();
        let top = a.label();
        a.bind(top);
        a.i(enc::addi(5, 5, 1));
        a.j(top);
        let mut cfg = crate::testutil::config(crate::testutil::elf(&a.bytes()));
        cfg.devices = DeviceConfig {
            disk: Some(DiskConfig {
                sectors: 64,
                read_only: false,
            }),
            net: Some([2, 0, 0, 0, 0, 1]),
            rng: true,
        };
        let mut m = Machine::new(&cfg).map_err(|e| e.to_string()).unwrap();
        m.run(ICount(1000));
        let good = m.save();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let header = 20;
        // Mutate everything before the RAM pages (the last field).
        let meta_len = postcard::to_stdvec(&m.device_state(false)).unwrap().len();
        let meta_end = header + meta_len;
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..1 + rng(&mut seed) % 4 {
                let at = header + (rng(&mut seed) as usize) % (meta_end - header);
                bad[at] = rng(&mut seed) as u8;
            }
            reseal(&mut bad);
            let outcome = std::panic::catch_unwind(move || {
                if let Ok(mut m) = Machine::restore(&bad) {
                    let until = m.icount().0.saturating_add(2000);
                    for _ in 0..16 {
                        if !matches!(m.run(ICount(until)), crate::Exit::Output) {
                            break;
                        }
                        m.take_outputs();
                    }
                    m.state_hash();
                }
            });
            assert!(outcome.is_ok(), "a mutated snapshot panicked the host");
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::testutil::{config, elf, Asm};

    /// A snapshot may claim any RAM size up to the 64 GiB bound; one the host cannot
    /// map (60 GiB on this 24 GiB machine, whose kernel refuses to overcommit that
    /// far) is an error naming the size, never a panic.
    #[test]
    fn a_snapshot_claiming_more_ram_than_the_host_has_is_refused() {
        let mut a = Asm::new();
        a.halt();
        let m = Machine::new(&config(elf(&a.bytes()))).unwrap();
        let mut st = decode(&m.save()).unwrap();
        st.ram_size = 60 << 30;
        match Machine::restore(&seal(&st)) {
            Err(e) => assert!(e.to_string().contains("61440 MiB"), "{e}"),
            // A host that can map it is fine too: the machine must then work.
            Ok(mut big) => {
                big.run(crate::ICount(100));
            }
        }
    }
}

/// Inputs the snapshot fuzz target (`scripts/fuzz snapshot`) found, kept as tests:
/// each is a container payload that panicked the host before its fix.
#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    fn sealed(payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(payload);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn a_plic_with_too_few_priorities_is_refused() {
        let payload = include_bytes!("../fuzz/regressions/snapshot-short-plic-priorities");
        let err = Machine::restore(&sealed(payload)).err().expect("refused");
        assert!(err.to_string().contains("interrupt controller"), "{err}");
    }
}

#[cfg(test)]
mod transfer_tests {
    use super::*;
    use crate::boot::BootConfig;
    use crate::testutil::reg::*;
    use crate::testutil::*;
    use crate::{Exit, ICount};

    /// An endless loop storing one word per iteration, spread over 64 pages, mixing in
    /// guest time (so the clock's state matters too).
    fn writer() -> BootConfig {
        let mut a = Asm::new();
        let top = a.label();
        a.li(S1, DATA);
        a.bind(top);
        a.i(addi(S4, S4, 1)).i(csrr(T2, 0xc01));
        a.i(xor(S3, S3, T2)).i(add(S3, S3, S4));
        a.i(andi(T0, S4, 63)).i(slli(T0, T0, 12));
        a.i(srli(T1, S4, 6))
            .i(andi(T1, T1, 0x1ff))
            .i(slli(T1, T1, 3));
        a.i(add(T0, T0, T1)).i(add(T0, T0, S1)).i(sd(S3, T0, 0));
        a.j(top);
        config(elf(&a.bytes()))
    }

    fn run_to(m: &mut Machine, n: u64) {
        assert_eq!(m.run(ICount(n)), Exit::Until);
    }

    /// Copy the pages `from` reports dirty to `to` (but for the last one if
    /// `skip_last`); returns how many were dirty.
    fn copy_dirty(from: &mut Machine, to: &mut Machine, skip_last: bool) -> usize {
        let dirty = from.take_dirty_pages();
        let copy = dirty.len() - usize::from(skip_last);
        for &i in &dirty[..copy] {
            assert!(to.set_ram_page(i, from.ram_page(i).unwrap()));
        }
        dirty.len()
    }

    /// Pre-copy in two rounds while `a` runs, then stop and copy; returns the target.
    fn transfer(a: &mut Machine, mut b: Machine, skip_last: bool) -> Machine {
        assert_eq!(copy_dirty(a, &mut b, false), a.ram_pages() as usize);
        assert_eq!(b.bus.ram.as_slice(), a.bus.ram.as_slice());
        run_to(a, 20_000);
        let round1 = copy_dirty(a, &mut b, false);
        assert!((2..=65).contains(&round1), "round 1 copied {round1} pages");
        run_to(a, 20_500);
        assert!(copy_dirty(a, &mut b, skip_last) > 1);
        let state = a.save_without_ram();
        assert!(state.len() < PAGE, "no RAM in the stop-and-copy container");
        b.restore_keeping_ram(&state).unwrap()
    }

    #[test]
    fn live_transfer_reproduces_the_source() {
        let cfg = writer();
        let mut a = Machine::new(&cfg).unwrap();
        let mut b = transfer(&mut a, Machine::new(&cfg).unwrap(), false);
        assert_eq!(b.icount(), ICount(20_500));
        assert_eq!(b.state_hash(), a.state_hash());
        let mut whole = Machine::restore(&a.save()).unwrap();
        for n in [20_501, 31_000, 60_000] {
            for m in [&mut a, &mut b, &mut whole] {
                run_to(m, n);
            }
            assert_eq!(b.state_hash(), a.state_hash(), "at {n}");
            assert_eq!(whole.state_hash(), a.state_hash(), "at {n}");
        }
    }

    /// The target's RAM held other code, cached by its own hart: none of it may survive.
    #[test]
    fn live_transfer_onto_a_machine_that_ran_other_code() {
        let mut other = Asm::new();
        let top = other.label();
        other.li(S1, DATA + 0x3000);
        other.bind(top);
        other.i(addi(T0, T0, 3)).i(sd(T0, S1, 0)).j(top);
        let mut b = Machine::new(&config(elf(&other.bytes()))).unwrap();
        run_to(&mut b, 1_000);
        let mut a = Machine::new(&writer()).unwrap();
        let mut b = transfer(&mut a, b, false);
        assert_eq!(b.state_hash(), a.state_hash());
        run_to(&mut a, 40_000);
        run_to(&mut b, 40_000);
        assert_eq!(b.state_hash(), a.state_hash());
    }

    #[test]
    fn a_missed_dirty_page_shows_in_the_hash() {
        let cfg = writer();
        let mut a = Machine::new(&cfg).unwrap();
        let b = transfer(&mut a, Machine::new(&cfg).unwrap(), true);
        assert_ne!(b.state_hash(), a.state_hash());
    }

    #[test]
    fn restore_keeping_ram_refuses_a_different_ram_size() {
        let a = Machine::new(&writer()).unwrap();
        let mut cfg = writer();
        cfg.memory_mib = 32;
        let b = Machine::new(&cfg).unwrap();
        assert_eq!(b.ram_pages(), 2 * a.ram_pages());
        match b.restore_keeping_ram(&a.save_without_ram()) {
            Err(SnapshotError::Decode(msg)) => assert!(msg.contains("RAM size"), "{msg}"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a 16 MiB state restored onto 32 MiB of RAM"),
        }
    }

    #[test]
    fn restore_keeping_ram_validates_like_restore() {
        let a = Machine::new(&writer()).unwrap();
        let mut bad = a.save_without_ram();
        bad[30] ^= 1;
        let b = Machine::new(&writer()).unwrap();
        assert!(matches!(
            b.restore_keeping_ram(&bad),
            Err(SnapshotError::Checksum)
        ));
        let mut b = Machine::new(&writer()).unwrap();
        assert!(!b.set_ram_page(b.ram_pages(), &[0; PAGE]));
        assert!(!b.set_ram_page(0, &[0; 100]));
        assert_eq!(b.ram_page(b.ram_pages()), None);
    }
}
