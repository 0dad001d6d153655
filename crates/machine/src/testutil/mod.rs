//! Shared test fixtures: a tiny RV64 encoder, an assembler with labels, an in-memory
//! ELF builder and helpers to run a program on a [`Machine`] and inspect it.
#![allow(dead_code)]

use crate::boot::{BootConfig, Firmware};
use crate::devices::layout::{RAM_BASE, TEST_BASE};
use crate::devices::sifive_test::FINISHER_PASS;
use crate::machine::{Exit, Machine};
use crate::types::ICount;

mod enc;
pub use enc::*;

/// Sv39 page-table entries: the flag bits (privileged spec 4.3.1) and an entry.
#[allow(dead_code, missing_docs)]
pub mod pte {
    pub const V: u64 = 1;
    pub const R: u64 = 2;
    pub const W: u64 = 4;
    pub const X: u64 = 8;
    pub const U: u64 = 16;
    pub const A: u64 = 64;
    pub const D: u64 = 128;

    /// A PTE for physical address `pa` with `flags`.
    pub fn pte(pa: u64, flags: u64) -> u64 {
        (pa >> 12) << 10 | flags
    }
}

/// ABI register numbers.
#[allow(dead_code, missing_docs)]
pub mod reg {
    pub const ZERO: u32 = 0;
    pub const RA: u32 = 1;
    pub const SP: u32 = 2;
    pub const GP: u32 = 3;
    pub const TP: u32 = 4;
    pub const T0: u32 = 5;
    pub const T1: u32 = 6;
    pub const T2: u32 = 7;
    pub const S0: u32 = 8;
    pub const S1: u32 = 9;
    pub const A0: u32 = 10;
    pub const A1: u32 = 11;
    pub const A2: u32 = 12;
    pub const A3: u32 = 13;
    pub const A4: u32 = 14;
    pub const A5: u32 = 15;
    pub const A6: u32 = 16;
    pub const A7: u32 = 17;
    pub const S2: u32 = 18;
    pub const S3: u32 = 19;
    pub const S4: u32 = 20;
    pub const S5: u32 = 21;
    pub const T3: u32 = 28;
    pub const T4: u32 = 29;
    /// Clobbered by [`super::Asm::halt`].
    pub const T5: u32 = 30;
    /// Clobbered by [`super::Asm::halt`].
    pub const T6: u32 = 31;
}

// ---- Assembler ----------------------------------------------------------------------

/// A position in the program, bound once with [`Asm::bind`].
#[derive(Clone, Copy, Debug)]
pub struct Label(usize);

type Fixup = Box<dyn Fn(i32) -> Vec<u32>>;

/// A program under construction at [`RAM_BASE`], with forward and backward labels.
#[derive(Default)]
pub struct Asm {
    bytes: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label, Fixup)>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Asm {
        Asm::default()
    }

    /// A program whose first instructions point `mtvec` at a handler that powers off,
    /// so any trap ends the run with the trap CSRs left for the test to read.
    pub fn with_trap_halt() -> Asm {
        let mut a = Asm::new();
        let (handler, start) = (a.label(), a.label());
        a.la(reg::T0, handler);
        a.i(csrw(0x305, reg::T0));
        a.j(start);
        a.bind(handler);
        a.halt();
        a.bind(start);
        a
    }

    /// Like [`Asm::with_trap_halt`], but the handler skips the trapping 4-byte
    /// instruction and returns with MRET (clobbers t0), so the program continues.
    pub fn with_trap_skip() -> Asm {
        let mut a = Asm::new();
        let (handler, start) = (a.label(), a.label());
        a.la(reg::T0, handler);
        a.i(csrw(0x305, reg::T0));
        a.j(start);
        a.bind(handler);
        a.i(csrr(reg::T0, 0x341)).i(addi(reg::T0, reg::T0, 4));
        a.i(csrw(0x341, reg::T0)).i(MRET);
        a.bind(start);
        a
    }

    /// Guest address of the next instruction.
    pub fn here(&self) -> u64 {
        RAM_BASE + self.bytes.len() as u64
    }

    /// Append 32-bit instructions.
    pub fn i(&mut self, w: u32) -> &mut Asm {
        self.bytes.extend_from_slice(&w.to_le_bytes());
        self
    }

    /// Append several 32-bit instructions.
    pub fn all(&mut self, ws: &[u32]) -> &mut Asm {
        ws.iter().for_each(|&w| {
            self.i(w);
        });
        self
    }

    /// Append a 16-bit (compressed) instruction.
    pub fn c(&mut self, h: u16) -> &mut Asm {
        self.bytes.extend_from_slice(&h.to_le_bytes());
        self
    }

    /// A new unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Bind `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none(), "label bound twice");
        self.labels[l.0] = Some(self.bytes.len());
    }

    /// Guest address of a bound label.
    pub fn addr(&self, l: Label) -> u64 {
        RAM_BASE + self.labels[l.0].expect("label not bound") as u64
    }

    /// Emit the words `f(offset from here to l)`, patched when the program is built.
    pub fn to(&mut self, l: Label, f: impl Fn(i32) -> Vec<u32> + 'static) -> &mut Asm {
        let pos = self.bytes.len();
        for w in f(0) {
            self.i(w);
        }
        self.fixups.push((pos, l, Box::new(f)));
        self
    }

    /// `jal zero, l`.
    pub fn j(&mut self, l: Label) -> &mut Asm {
        self.to(l, |o| vec![jal(0, o)])
    }

    /// A branch to `l`: `a.br(l, |o| beq(A0, A1, o))`.
    pub fn br(&mut self, l: Label, f: impl Fn(i32) -> u32 + 'static) -> &mut Asm {
        self.to(l, move |o| vec![f(o)])
    }

    /// `rd = address of l` (auipc + addi).
    pub fn la(&mut self, rd: u32, l: Label) -> &mut Asm {
        self.to(l, move |o| {
            let lo = (o << 20) >> 20;
            vec![auipc(rd, ((o - lo) >> 12) as u32), addi(rd, rd, lo)]
        })
    }

    /// `rd = v` for any 64-bit value (lui/addiw, then shifts and adds).
    pub fn li(&mut self, rd: u32, v: u64) -> &mut Asm {
        let v = v as i64;
        if v == (v as i32) as i64 {
            let lo = ((v as i32) << 20) >> 20;
            let hi = ((v as i32).wrapping_sub(lo) as u32) >> 12;
            if hi == 0 {
                return self.i(addi(rd, 0, lo));
            }
            self.i(lui(rd, hi));
            return self.i(addiw(rd, rd, lo));
        }
        let lo = ((v << 52) >> 52) as i32;
        self.li(rd, (v.wrapping_sub(lo as i64) >> 12) as u64);
        self.i(slli(rd, rd, 12));
        self.i(addi(rd, rd, lo))
    }

    /// Power the machine off (clobbers t5, t6).
    pub fn halt(&mut self) -> &mut Asm {
        self.li(reg::T6, TEST_BASE);
        self.li(reg::T5, FINISHER_PASS as u64);
        self.i(sw(reg::T5, reg::T6, 0))
    }

    /// Leave M-mode for `prv` (0 = U, 1 = S) at label `l` via MRET (clobbers t0).
    pub fn enter(&mut self, prv: u64, l: Label) -> &mut Asm {
        self.li(reg::T0, 3 << 11);
        self.i(csrrc(0, 0x300, reg::T0));
        self.li(reg::T0, prv << 11);
        self.i(csrrs(0, 0x300, reg::T0));
        self.la(reg::T0, l);
        self.i(csrw(0x341, reg::T0));
        self.i(MRET)
    }

    /// The program's bytes with every label reference resolved.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        for (pos, l, f) in &self.fixups {
            let target = self.labels[l.0].expect("label not bound");
            let words = f(target as i32 - *pos as i32);
            for (k, w) in words.iter().enumerate() {
                out[pos + 4 * k..pos + 4 * k + 4].copy_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// A machine with this program loaded, not yet run.
    pub fn machine(&self) -> Machine {
        machine_with(elf(&self.bytes()))
    }

    /// Build, run until the program powers off, and return the machine.
    pub fn run(&self) -> Machine {
        let mut m = self.machine();
        run_to_halt(&mut m);
        m
    }
}

// ---- ELF and machine ----------------------------------------------------------------

/// A minimal ELF64 RISC-V executable: one PT_LOAD of `code` at [`RAM_BASE`], entry there.
pub fn elf(code: &[u8]) -> Vec<u8> {
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    e.extend_from_slice(&2u16.to_le_bytes()); // e_type: EXEC
    e.extend_from_slice(&243u16.to_le_bytes()); // e_machine: RISC-V
    e.extend_from_slice(&1u32.to_le_bytes()); // e_version
    e.extend_from_slice(&RAM_BASE.to_le_bytes()); // e_entry
    e.extend_from_slice(&EHDR.to_le_bytes()); // e_phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    e.extend_from_slice(&5u32.to_le_bytes()); // e_flags: RVC, double-float ABI
    for half in [EHDR as u16, PHDR as u16, 1, 64, 0, 0] {
        e.extend_from_slice(&half.to_le_bytes()); // ehsize, phentsize, phnum, sh*
    }
    let off = EHDR + PHDR;
    let len = code.len() as u64;
    e.extend_from_slice(&1u32.to_le_bytes()); // p_type: LOAD
    e.extend_from_slice(&7u32.to_le_bytes()); // p_flags: RWX
    for word in [off, RAM_BASE, RAM_BASE, len, len, 4] {
        e.extend_from_slice(&word.to_le_bytes());
    }
    e.extend_from_slice(code);
    e
}

/// The boot configuration the CPU tests use: bare metal, 16 MiB, 10 insns per tick.
pub fn config(kernel: Vec<u8>) -> BootConfig {
    BootConfig {
        firmware: Firmware::None,
        memory_mib: 16,
        insns_per_tick: 10,
        kernel,
        initrd: None,
        cmdline: String::new(),
        devices: Default::default(),
    }
}

/// A machine booted from `kernel` with [`config`].
pub fn machine_with(kernel: Vec<u8>) -> Machine {
    Machine::new(&config(kernel)).expect("test program boots")
}

/// Run until power-off, failing with the hart's state if the program does not halt.
pub fn run_to_halt(m: &mut Machine) {
    let exit = m.run(ICount(m.icount().0 + 1_000_000));
    let s = &m.hart.s;
    assert_eq!(
        exit,
        Exit::PowerOff { exit_code: 0 },
        "program did not halt: pc={:#x} prv={:?} mcause={} mepc={:#x} mtval={:#x}",
        s.pc,
        s.prv,
        s.csr.mcause,
        s.csr.mepc,
        s.csr.mtval
    );
}

/// Free RAM for test data, away from the code (which starts at [`RAM_BASE`]).
pub const DATA: u64 = RAM_BASE + 0x10_0000;

/// Integer register `r` after a run.
pub fn x(m: &Machine, r: u32) -> u64 {
    m.hart.s.x[r as usize]
}

/// Write a little-endian u64 into guest RAM at physical `pa`.
pub fn poke64(m: &mut Machine, pa: u64, v: u64) {
    assert!(
        m.bus.ram.load(pa, &v.to_le_bytes()),
        "{pa:#x} is outside RAM"
    );
}

/// Read a little-endian u64 from guest RAM at physical `pa`.
pub fn peek64(m: &Machine, pa: u64) -> u64 {
    let off = m.bus.ram.offset(pa, 8).expect("inside RAM");
    m.bus.ram.read_at::<8>(off)
}

#[cfg(test)]
mod tests {
    use super::reg::*;
    use super::*;

    #[test]
    fn li_loads_any_constant() {
        let vals = [
            0,
            1,
            0x7ff,
            0x800,
            0xffff_ffff_ffff_f800,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            0x8000_0000_0000_0000,
            0x1234_5678_9abc_def0,
            u64::MAX,
        ];
        let mut a = Asm::new();
        for (k, &v) in vals.iter().enumerate() {
            a.li(A0 + k as u32, v);
        }
        a.halt();
        let m = a.run();
        for (k, &v) in vals.iter().enumerate() {
            assert_eq!(x(&m, A0 + k as u32), v, "li {v:#x}");
        }
    }

    #[test]
    fn labels_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let (back, fwd, done) = (a.label(), a.label(), a.label());
        a.li(A0, 0).li(A1, 3);
        a.bind(back);
        a.i(addi(A0, A0, 1));
        a.br(done, move |o| beq(A0, A1, o));
        a.j(fwd);
        a.i(addi(A2, A2, 100)); // skipped
        a.bind(fwd);
        a.j(back);
        a.bind(done);
        a.la(A3, done);
        a.halt();
        let m = a.run();
        assert_eq!(x(&m, A0), 3);
        assert_eq!(x(&m, A2), 0);
        assert_eq!(x(&m, A3), a.addr(done));
    }
}
