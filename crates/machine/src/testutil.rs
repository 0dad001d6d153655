//! Shared test fixtures: a tiny RV64 encoder, an assembler with labels, an in-memory
//! ELF builder and helpers to run a program on a [`Machine`] and inspect it.
//!
//! Encodings follow the unprivileged spec ch. 2 (base formats) and ch. 34 (opcode
//! map); `tests::encoder_matches_binutils` pins them to riscv64-linux-gnu-as output.
#![allow(dead_code)]

use crate::boot::{BootConfig, Firmware};
use crate::devices::layout::{RAM_BASE, TEST_BASE};
use crate::devices::sifive_test::FINISHER_PASS;
use crate::machine::{Exit, Machine};
use crate::types::ICount;

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

// ---- Base formats -------------------------------------------------------------------

fn r_type(op: u32, f3: u32, f7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}
fn check_imm(imm: i32, bits: u32) {
    let half = 1 << (bits - 1);
    assert!(
        (-half..half).contains(&imm),
        "immediate {imm} does not fit {bits} bits"
    );
}
fn i_type(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    check_imm(imm, 12);
    (imm as u32 & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}
fn s_type(op: u32, f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    check_imm(imm, 12);
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | op
}
fn b_type(f3: u32, rs1: u32, rs2: u32, off: i32) -> u32 {
    check_imm(off, 13);
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}

/// `lui rd, imm20` (the 20-bit field, as objdump prints it).
pub fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 & 0xfffff) << 12 | rd << 7 | 0x37
}
/// `auipc rd, imm20`.
pub fn auipc(rd: u32, imm20: u32) -> u32 {
    (imm20 & 0xfffff) << 12 | rd << 7 | 0x17
}
/// `jal rd, off` (pc-relative byte offset).
pub fn jal(rd: u32, off: i32) -> u32 {
    check_imm(off, 21);
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o & 0xff000)
        | rd << 7
        | 0x6f
}
/// `jalr rd, imm(rs1)`.
pub fn jalr(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(0x67, 0, rd, rs1, imm)
}

macro_rules! enc {
    (branch $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rs1, rs2, off`.")]
        pub fn $name(rs1: u32, rs2: u32, off: i32) -> u32 { b_type($f3, rs1, rs2, off) }
    )*};
    (load $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, imm(rs1)`.")]
        pub fn $name(rd: u32, rs1: u32, imm: i32) -> u32 { i_type(0x03, $f3, rd, rs1, imm) }
    )*};
    (store $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rs2, imm(rs1)`.")]
        pub fn $name(rs2: u32, rs1: u32, imm: i32) -> u32 { s_type(0x23, $f3, rs1, rs2, imm) }
    )*};
    (imm $op:expr; $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, imm`.")]
        pub fn $name(rd: u32, rs1: u32, imm: i32) -> u32 { i_type($op, $f3, rd, rs1, imm) }
    )*};
    (shift $op:expr; $($name:ident = $f3:expr, $hi:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, shamt`.")]
        pub fn $name(rd: u32, rs1: u32, sh: u32) -> u32 {
            i_type($op, $f3, rd, rs1, ($hi << 5 | sh) as i32)
        }
    )*};
    (reg $op:expr; $($name:ident = $f3:expr, $f7:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, rs2`.")]
        pub fn $name(rd: u32, rs1: u32, rs2: u32) -> u32 { r_type($op, $f3, $f7, rd, rs1, rs2) }
    )*};
    (amo $($name:ident = $f5:expr, $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs2, (rs1)`.")]
        pub fn $name(rd: u32, rs2: u32, rs1: u32) -> u32 {
            r_type(0x2f, $f3, $f5 << 2, rd, rs1, rs2)
        }
    )*};
    (csr $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, csr, rs1_or_uimm`.")]
        pub fn $name(rd: u32, csr: u16, src: u32) -> u32 {
            (csr as u32) << 20 | src << 15 | $f3 << 12 | rd << 7 | 0x73
        }
    )*};
}

enc!(branch beq = 0; bne = 1; blt = 4; bge = 5; bltu = 6; bgeu = 7;);
enc!(load lb = 0; lh = 1; lw = 2; ld = 3; lbu = 4; lhu = 5; lwu = 6;);
enc!(store sb = 0; sh = 1; sw = 2; sd = 3;);
enc!(imm 0x13; addi = 0; slti = 2; sltiu = 3; xori = 4; ori = 6; andi = 7;);
enc!(imm 0x1b; addiw = 0;);
enc!(shift 0x13; slli = 1, 0; srli = 5, 0; srai = 5, 0x20;);
enc!(shift 0x1b; slliw = 1, 0; srliw = 5, 0; sraiw = 5, 0x20;);
enc!(reg 0x33;
    add = 0, 0; sub = 0, 0x20; sll = 1, 0; slt = 2, 0; sltu = 3, 0; xor = 4, 0;
    srl = 5, 0; sra = 5, 0x20; or = 6, 0; and = 7, 0;
    mul = 0, 1; mulh = 1, 1; mulhsu = 2, 1; mulhu = 3, 1;
    div = 4, 1; divu = 5, 1; rem = 6, 1; remu = 7, 1;);
enc!(reg 0x3b;
    addw = 0, 0; subw = 0, 0x20; sllw = 1, 0; srlw = 5, 0; sraw = 5, 0x20;
    mulw = 0, 1; divw = 4, 1; divuw = 5, 1; remw = 6, 1; remuw = 7, 1;);
enc!(amo
    sc_w = 0x03, 2; sc_d = 0x03, 3;
    amoswap_w = 0x01, 2; amoadd_w = 0x00, 2; amoxor_w = 0x04, 2; amoand_w = 0x0c, 2;
    amoor_w = 0x08, 2; amomin_w = 0x10, 2; amomax_w = 0x14, 2; amominu_w = 0x18, 2;
    amomaxu_w = 0x1c, 2;
    amoswap_d = 0x01, 3; amoadd_d = 0x00, 3; amomin_d = 0x10, 3; amomaxu_d = 0x1c, 3;);
enc!(csr csrrw = 1; csrrs = 2; csrrc = 3; csrrwi = 5; csrrsi = 6; csrrci = 7;);

/// `lr.w rd, (rs1)`.
pub fn lr_w(rd: u32, rs1: u32) -> u32 {
    r_type(0x2f, 2, 0x02 << 2, rd, rs1, 0)
}
/// `lr.d rd, (rs1)`.
pub fn lr_d(rd: u32, rs1: u32) -> u32 {
    r_type(0x2f, 3, 0x02 << 2, rd, rs1, 0)
}
/// `ecall`.
pub const ECALL: u32 = 0x0000_0073;
/// `ebreak`.
pub const EBREAK: u32 = 0x0010_0073;
/// `mret`.
pub const MRET: u32 = 0x3020_0073;
/// `sret`.
pub const SRET: u32 = 0x1020_0073;
/// `wfi`.
pub const WFI: u32 = 0x1050_0073;
/// `fence iorw, iorw`.
pub const FENCE: u32 = 0x0ff0_000f;
/// `fence.i`.
pub const FENCE_I: u32 = 0x0000_100f;
/// `sfence.vma rs1, rs2`.
pub fn sfence_vma(rs1: u32, rs2: u32) -> u32 {
    r_type(0x73, 0, 0x09, 0, rs1, rs2)
}
/// `fadd.d rd, rs1, rs2` (dynamic rounding).
pub fn fadd_d(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r_type(0x53, 7, 0x01, rd, rs1, rs2)
}
/// `fmv.d.x rd, rs1`.
pub fn fmv_d_x(rd: u32, rs1: u32) -> u32 {
    r_type(0x53, 0, 0x79, rd, rs1, 0)
}
/// `csrw csr, rs1` (`csrrw zero, csr, rs1`).
pub fn csrw(csr: u16, rs1: u32) -> u32 {
    csrrw(0, csr, rs1)
}
/// `csrr rd, csr` (`csrrs rd, csr, zero`).
pub fn csrr(rd: u32, csr: u16) -> u32 {
    csrrs(rd, csr, 0)
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

    /// Words from riscv64-linux-gnu-as 2.40 (`.option norvc`).
    #[test]
    fn encoder_matches_binutils() {
        let cases: &[(u32, u32)] = &[
            (lui(A0, 0x12345), 0x12345537),
            (auipc(RA, 1), 0x00001097),
            (jal(RA, 16), 0x010000ef),
            (jal(ZERO, -8), 0xff9ff06f),
            (jalr(ZERO, T0, -2048), 0x80028067),
            (blt(A0, ZERO, 4094), 0x7e054fe3),
            (bge(T0, T1, -4096), 0x8062d063),
            (bgeu(A4, A5, -2), 0xfef77fe3),
            (lw(S1, S2, 2047), 0x7ff92483),
            (lwu(T4, T5, 8), 0x008f6e83),
            (sb(A0, A1, -1), 0xfea58fa3),
            (sd(RA, SP, -2048), 0x80113023),
            (addi(A0, ZERO, -1), 0xfff00513),
            (srai(A0, A1, 63), 0x43f5d513),
            (sraiw(A0, A1, 31), 0x41f5d51b),
            (sub(A0, A1, A2), 0x40c58533),
            (remuw(A0, A1, A2), 0x02c5f53b),
            (mulhsu(A0, A1, A2), 0x02c5a533),
            (lr_d(T0, SP), 0x100132af),
            (sc_w(A0, A2, A1), 0x18c5a52f),
            (amomaxu_w(A0, A2, A1), 0xe0c5a52f),
            (amoadd_d(A0, A2, A1), 0x00c5b52f),
            (csrrw(A0, 0x300, A1), 0x30059573),
            (csrrwi(A0, 0x305, 31), 0x305fd573),
            (csrr(A0, 0xc00), 0xc0002573),
            (sfence_vma(A0, A1), 0x12b50073),
            (fadd_d(10, 11, 12), 0x02c5f553),
            (fmv_d_x(0, A0), 0xf2050053),
        ];
        for (i, &(got, want)) in cases.iter().enumerate() {
            assert_eq!(got, want, "case {i}: {got:#010x} != {want:#010x}");
        }
    }

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
