//! Differential testing of the engines: random RV64GC programs run under the
//! interpreter, under the JIT, and under both taking turns, with the state hash
//! compared at every step (issue: "the two engines are interchangeable mid-flight").
//!
//! A program is built from a byte string (a seed's expansion or a fuzzer's input):
//! M-mode setup (trap vector, page tables, random registers, optionally a timer),
//! then a body run in M, S or U mode with Sv39 or bare addressing, a few times over.
//! The body mixes integer, multiply/divide, word and compressed instructions (some
//! taken from random encodings, illegal ones included), loads and stores (aligned and
//! not, RAM, devices and unmapped addresses), atomics, CSR accesses, floating point,
//! branches and jumps, system instructions, stores into its own code (self-modifying
//! code, with and without FENCE.I), and page-table changes with and without
//! SFENCE.VMA. A trap handler skips whatever faults, and re-arms the timer.

use crate::boot::{BootConfig, Firmware};
use crate::cpu::decode::{decode16, Insn};
use crate::devices::layout::{CLINT_BASE, RAM_BASE, UART_BASE};
use crate::machine::{Event, Exit, Machine, OutputKind};
use crate::testutil::pte::*;
use crate::testutil::reg::*;
use crate::testutil::*;
use crate::types::ICount;
use crate::Engine;

/// Where the data sandbox is in physical memory (16 KiB).
const DATA_PA: u64 = RAM_BASE + 0x10_0000;
/// Its virtual address under Sv39 (four 4 KiB pages with random permissions).
const DATA_VA: u64 = 0x4000_0000;
/// Page tables: root, then the level-1 and level-0 tables of the sandbox.
const PT: u64 = RAM_BASE + 0x20_0000;
/// The sandbox's level-0 table (its PTEs are what the program rewrites).
const PT_L0: u64 = PT + 0x2000;

/// Registers the body never writes: data bases, the code base, the PTE base, a
/// device base, the loop counter, and the trap handler's two scratch registers.
const DATA0: u32 = S0;
const DATA1: u32 = S1;
const CODE: u32 = S2;
const PTES: u32 = S3;
const LOOPS: u32 = S4;
const DEV: u32 = S5;
/// Where results are folded (see `body_code`).
const ACC: u32 = T2;
const RESERVED: [u32; 9] = [DATA0, DATA1, CODE, PTES, LOOPS, DEV, ACC, T5, T6];

/// A source of choices: the input's bytes, then a xorshift generator seeded by them.
pub struct Source<'a> {
    bytes: &'a [u8],
    state: u64,
}

impl<'a> Source<'a> {
    /// Choices from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Source<'a> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for &b in bytes {
            state = (state ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        Source {
            bytes,
            state: state | 1,
        }
    }

    /// The next 64 random bits.
    pub fn u64(&mut self) -> u64 {
        if let Some((&b, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            self.state ^= (b as u64) << 56 | b as u64;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }

    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A value with a bias towards edge cases.
    pub fn value(&mut self) -> u64 {
        match self.below(8) {
            0 => self.pick(&[
                0,
                1,
                u64::MAX,
                i64::MIN as u64,
                i64::MAX as u64,
                0x8000_0000,
            ]),
            1 => self.below(64),
            2 => (self.u64() as i32) as i64 as u64,
            3 => self.u64() as u32 as u64,
            _ => self.u64(),
        }
    }

    /// A 12-bit immediate, biased towards edges.
    pub fn imm12(&mut self) -> i32 {
        match self.below(6) {
            0 => self.pick(&[0, 1, -1, 2047, -2048]),
            1 => self.below(64) as i32 - 32,
            _ => (self.below(4096) as i32) - 2048,
        }
    }
}

/// The privilege the body runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// M-mode, physical addresses.
    Machine,
    /// S-mode under Sv39.
    Supervisor,
    /// U-mode under Sv39.
    User,
}

/// One generated case: the program and how to drive it.
pub struct Case {
    /// The ELF image.
    pub elf: Vec<u8>,
    /// Where the body runs.
    pub mode: Mode,
    /// Run lengths between comparisons, with an event to inject after some.
    pub steps: Vec<(u64, Option<Event>)>,
}

/// Build a case from `src`.
pub fn generate(src: &mut Source) -> Case {
    let mode = src.pick(&[Mode::Machine, Mode::Supervisor, Mode::User]);
    let mut a = Asm::new();
    let (handler, setup, body) = (a.label(), a.label(), a.label());
    a.j(setup);
    trap_handler(&mut a, handler, src);
    a.bind(setup);
    a.la(T0, handler).i(csrw(0x305, T0));
    // FP on (mstatus.FS = Initial), as the FP instructions need.
    a.li(T0, 1 << 13).i(csrrs(0, 0x300, T0));
    let paged = mode != Mode::Machine;
    if paged {
        page_tables(&mut a, mode, src);
    }
    for r in 1..32u32 {
        if !RESERVED.contains(&r) {
            let v = src.value();
            a.li(r, v);
        }
    }
    for f in 0..8 {
        let v = src.value();
        a.li(T0, v).i(fmv_d_x(f, T0));
    }
    let data = if paged { DATA_VA } else { DATA_PA };
    // Mostly aligned bases, so that aligned offsets make aligned accesses.
    let skew = if src.chance(80) { 0 } else { src.below(8) };
    a.li(DATA0, data + 0x800 + 8 * src.below(8) + skew);
    a.li(DATA1, data + 0x2800 + src.below(8) * 8);
    // Random contents in the hot slots (through the physical addresses: M-mode).
    for slot in 0..16 {
        let v = src.value();
        a.li(T0, DATA_PA + 0x800 + 8 * slot)
            .li(T1, v)
            .i(sd(T1, T0, 0));
        a.li(T0, DATA_PA + 0x2800 + 8 * slot).i(sd(T1, T0, 0));
    }
    a.la(CODE, body);
    a.li(PTES, PT_L0);
    a.li(
        DEV,
        src.pick(&[UART_BASE, CLINT_BASE + 0xbff8, CLINT_BASE + 0x4000]),
    );
    a.li(LOOPS, 3 + src.below(30));
    let timer = src.chance(50);
    if timer {
        // A timer interrupt some way into the body, re-armed by the handler.
        a.li(T0, CLINT_BASE + 0x4000).li(T1, 50 + src.below(2000));
        a.i(sd(T1, T0, 0));
        a.li(T0, 1 << 7).i(csrrs(0, 0x304, T0));
        if mode == Mode::Machine {
            a.li(T0, 1 << 3).i(csrrs(0, 0x300, T0));
        }
    }
    if paged {
        a.li(T0, 8 << 60 | PT >> 12)
            .i(csrw(0x180, T0))
            .i(sfence_vma(0, 0));
    }
    // Registers clobbered by the setup get fresh values.
    for r in [T0, T1] {
        let v = src.value();
        a.li(r, v);
    }
    match mode {
        Mode::Machine => {
            a.j(body);
        }
        Mode::Supervisor => {
            a.enter(1, body);
        }
        Mode::User => {
            a.enter(0, body);
        }
    }
    a.bind(body);
    body_code(&mut a, src, mode, timer);
    let mut steps = Vec::new();
    let total = 4_000 + src.below(40_000);
    let mut done = 0;
    while done < total {
        let n = match src.below(10) {
            0 => 1 + src.below(8),
            1 | 2 => 1 + src.below(200),
            _ => 1 + src.below(5_000),
        };
        let ev = match src.below(12) {
            0 => Some(Event::ConsoleInput(vec![
                src.u64() as u8;
                1 + src.below(3) as usize
            ])),
            1 => Some(Event::ClockAdvance {
                ticks: src.below(500),
            }),
            _ => None,
        };
        steps.push((n, ev));
        done += n;
    }
    Case {
        elf: elf(&a.bytes()),
        mode,
        steps,
    }
}

/// The M-mode trap handler: an interrupt re-arms the timer, anything else skips the
/// instruction that trapped (2 or 4 bytes). Uses only t5 and t6.
fn trap_handler(a: &mut Asm, at: Label, src: &mut Source) {
    let (irq, four) = (a.label(), a.label());
    a.bind(at);
    a.i(csrr(T6, 0x342));
    a.br(irq, |o| blt(T6, ZERO, o));
    a.i(csrr(T6, 0x341)).i(lhu(T5, T6, 0)).i(andi(T5, T5, 3));
    a.i(addi(T6, T6, 2)).i(addi(T5, T5, -3));
    a.br(four, |o| bne(T5, ZERO, o));
    a.i(addi(T6, T6, 2));
    a.bind(four);
    a.i(csrw(0x341, T6)).i(MRET);
    a.bind(irq);
    let delta = 20 + src.below(3000);
    a.li(T6, CLINT_BASE + 0xbff8).i(ld(T5, T6, 0));
    a.li(T6, delta).i(add(T5, T5, T6));
    a.li(T6, CLINT_BASE + 0x4000).i(sd(T5, T6, 0)).i(MRET);
}

/// Random permissions for a sandbox page (mostly usable).
fn data_perms(src: &mut Source, mode: Mode) -> u64 {
    let user = match mode {
        Mode::User => !src.chance(10),
        _ => src.chance(20),
    };
    let mut f = V | R;
    if src.chance(80) {
        f |= W;
    }
    if src.chance(15) {
        f = V | X; // execute-only: loads need MXR
    }
    if src.chance(70) {
        f |= A;
    }
    if src.chance(60) {
        f |= D;
    }
    if user {
        f |= U;
    }
    if src.chance(5) {
        f &= !V;
    }
    f
}

/// Write the page tables with stores: gigapages mapping devices (0..1 GiB) and RAM
/// (2..3 GiB) to themselves, and four 4 KiB sandbox pages at [`DATA_VA`].
fn page_tables(a: &mut Asm, mode: Mode, src: &mut Source) {
    let user = if mode == Mode::User { U } else { 0 };
    let put = |a: &mut Asm, at: u64, v: u64| {
        a.li(T0, at).li(T1, v).i(sd(T1, T0, 0));
    };
    put(a, PT, pte(0, V | R | W | A | D | user));
    put(a, PT + 8, pte(PT + 0x1000, V));
    put(a, PT + 16, pte(RAM_BASE, V | R | W | X | A | D | user));
    put(a, PT + 0x1000, pte(PT_L0, V));
    for i in 0..4 {
        let f = data_perms(src, mode);
        put(a, PT_L0 + 8 * i, pte(DATA_PA + 0x1000 * i, f));
    }
}

/// A destination register the body may write.
fn rd(src: &mut Source) -> u32 {
    loop {
        let r = src.below(32) as u32;
        if !RESERVED.contains(&r) {
            return r;
        }
    }
}

/// Any register, as a source.
fn rs(src: &mut Source) -> u32 {
    src.below(32) as u32
}

/// The register a compressed instruction writes, if it is a plain integer operation
/// (the only compressed instructions taken from random encodings).
fn compressed_alu_rd(i: Insn) -> Option<u8> {
    use Insn::*;
    match i {
        Lui { rd, .. }
        | Addi { rd, .. }
        | Addiw { rd, .. }
        | Slli { rd, .. }
        | Srli { rd, .. }
        | Srai { rd, .. }
        | Andi { rd, .. }
        | Add { rd, .. }
        | Sub { rd, .. }
        | Xor { rd, .. }
        | Or { rd, .. }
        | And { rd, .. }
        | Addw { rd, .. }
        | Subw { rd, .. } => Some(rd),
        _ => None,
    }
}

/// The body: `LOOPS` rounds of random instructions, then power-off.
fn body_code(a: &mut Asm, src: &mut Source, mode: Mode, timer: bool) {
    let top = a.label();
    a.bind(top);
    let n = 20 + src.below(300) as usize;
    // Byte offsets from the body's start of 4-byte ALU instructions that a store may
    // replace with another (control flow stays as built).
    let mut replaceable: Vec<i32> = Vec::new();
    let start = a.here();
    let mut pending: Vec<(Label, usize)> = Vec::new();
    for i in 0..n {
        // Bind forward labels that are due.
        pending.retain(|&(l, at)| {
            if at <= i {
                a.bind(l);
                false
            } else {
                true
            }
        });
        let here = (a.here() - start) as i32;
        // The register the instruction writes, folded into the accumulator after it
        // so that a wrong intermediate result stays visible in the state hash.
        let mut wrote: Option<u32> = None;
        match src.below(100) {
            0..=19 => {
                let ops = [
                    add, sub, sll, slt, sltu, xor, srl, sra, or, and, mul, mulh, mulhsu, mulhu,
                    div, divu, rem, remu, addw, subw, sllw, srlw, sraw, mulw, divw, divuw, remw,
                    remuw,
                ];
                let op = src.pick(&ops);
                let r = rd(src);
                wrote = Some(r);
                let w = op(r, rs(src), rs(src));
                if here < 2040 {
                    replaceable.push(here);
                }
                a.i(w);
            }
            20..=31 => {
                let (r, s) = (rd(src), rs(src));
                wrote = Some(r);
                let w = match src.below(13) {
                    0 => addi(r, s, src.imm12()),
                    1 => slti(r, s, src.imm12()),
                    2 => sltiu(r, s, src.imm12()),
                    3 => xori(r, s, src.imm12()),
                    4 => ori(r, s, src.imm12()),
                    5 => andi(r, s, src.imm12()),
                    6 => slli(r, s, src.below(64) as u32),
                    7 => srli(r, s, src.below(64) as u32),
                    8 => srai(r, s, src.below(64) as u32),
                    9 => addiw(r, s, src.imm12()),
                    10 => slliw(r, s, src.below(32) as u32),
                    11 => srliw(r, s, src.below(32) as u32),
                    _ => sraiw(r, s, src.below(32) as u32),
                };
                if here < 2040 {
                    replaceable.push(here);
                }
                a.i(w);
            }
            32..=33 => {
                let r = rd(src);
                wrote = Some(r);
                let imm = src.u64() as u32;
                a.i(if src.chance(50) {
                    lui(r, imm)
                } else {
                    auipc(r, imm)
                });
            }
            34..=35 => {
                // A random encoding in the integer opcode spaces (illegal ones trap).
                let op = src.pick(&[0x13u32, 0x1b, 0x33, 0x3b]);
                let w = (src.u64() as u32 & !0xfff) | (src.below(8) as u32) << 12;
                let r = rd(src);
                wrote = Some(r);
                a.i(w | r << 7 | op);
            }
            36..=39 => {
                // A random compressed integer operation.
                let h = loop {
                    let h = src.u64() as u16;
                    if h & 3 == 3 {
                        continue;
                    }
                    if let Some(r) = compressed_alu_rd(decode16(h)) {
                        if !RESERVED.contains(&(r as u32)) {
                            wrote = Some(r as u32);
                            break h;
                        }
                    }
                };
                a.c(h);
            }
            40..=54 => {
                let base = match src.below(10) {
                    0..=4 => DATA0,
                    5..=7 => DATA1,
                    8 => DEV,
                    _ => rs(src),
                };
                let r = rd(src);
                let kind = src.below(11);
                let size = [1, 2, 4, 8, 1, 2, 4, 1, 2, 4, 8][kind as usize];
                // Mostly a few hot slots (so loads meet earlier stores), aligned.
                let imm = if base == DEV {
                    src.below(16) as i32 - 4
                } else if src.chance(60) {
                    (8 * src.below(16) as i32 + src.pick(&[0, 0, 0, 4, 2, 1])) & !(size - 1)
                } else if src.chance(60) {
                    src.imm12() & !(size - 1)
                } else {
                    src.imm12()
                };
                if kind < 7 {
                    wrote = Some(r);
                }
                let w = match kind {
                    0 => lb(r, base, imm),
                    1 => lh(r, base, imm),
                    2 => lw(r, base, imm),
                    3 => ld(r, base, imm),
                    4 => lbu(r, base, imm),
                    5 => lhu(r, base, imm),
                    6 => lwu(r, base, imm),
                    7 => sb(rs(src), base, imm),
                    8 => sh(rs(src), base, imm),
                    9 => sw(rs(src), base, imm),
                    _ => sd(rs(src), base, imm),
                };
                a.i(w);
            }
            55..=59 => {
                let base = if src.chance(80) { DATA0 } else { DATA1 };
                let r = rd(src);
                wrote = Some(r);
                let w = match src.below(14) {
                    0 => lr_w(r, base),
                    1 => lr_d(r, base),
                    2 => sc_w(r, rs(src), base),
                    3 => sc_d(r, rs(src), base),
                    4 => amoswap_w(r, rs(src), base),
                    5 => amoadd_w(r, rs(src), base),
                    6 => amoxor_w(r, rs(src), base),
                    7 => amoand_w(r, rs(src), base),
                    8 => amoor_w(r, rs(src), base),
                    9 => amomin_w(r, rs(src), base),
                    10 => amomax_w(r, rs(src), base),
                    11 => amominu_w(r, rs(src), base),
                    12 => amoswap_d(r, rs(src), base),
                    _ => amoadd_d(r, rs(src), base),
                };
                a.i(w);
            }
            60..=64 => {
                let csr = src.pick(&[
                    0xc00u16, 0xc01, 0xc02, 0x001, 0x002, 0x003, 0x100, 0x140, 0x340, 0x300, 0x344,
                    0x304, 0xb00,
                ]);
                let r = rd(src);
                // Counters differ by design between steps of a fold; reads of them
                // are compared at the step ends only.
                if !matches!(csr, 0xc00..=0xc02 | 0xb00) {
                    wrote = Some(r);
                }
                if matches!(csr, 0x100 | 0x300) {
                    // Status writes keep to the bits that matter here (SUM, MXR, FS):
                    // others could leave the mode or switch translation off.
                    let bits = src.pick(&[1u64 << 18, 1 << 19, 3 << 13, 1 << 13]);
                    let t = rd(src);
                    a.li(t, bits);
                    a.i(if src.chance(50) {
                        csrrs(r, csr, t)
                    } else {
                        csrrc(r, csr, t)
                    });
                } else if matches!(csr, 0x304 | 0x344) {
                    // Interrupt enables and pending bits: read only (a pending software
                    // interrupt would never clear).
                    a.i(csrr(r, csr));
                } else {
                    a.i(match src.below(4) {
                        0 => csrr(r, csr),
                        1 => csrrs(r, csr, rs(src)),
                        2 => csrrc(r, csr, rs(src)),
                        _ => csrrw(r, csr, rs(src)),
                    });
                }
            }
            65..=71 => {
                // Floating point: loads/stores on the sandbox and register operations.
                let f = |s: &mut Source| s.below(32) as u32;
                let w = match src.below(8) {
                    0 => i_type(0x07, 3, f(src), DATA0, src.imm12()), // fld
                    1 => i_type(0x07, 2, f(src), DATA1, src.imm12()), // flw
                    2 => s_type(0x27, 3, DATA0, f(src), src.imm12()), // fsd
                    3 => fadd_d(f(src), f(src), f(src)),
                    4 => fmv_d_x(f(src), rs(src)),
                    5 => {
                        let r = rd(src);
                        wrote = Some(r);
                        r_type(0x53, 0, 0x71, r, f(src), 0) // fmv.x.d
                    }
                    _ => {
                        // Any OP-FP encoding writing an allowed register.
                        let funct = src.pick(&[
                            0x00u32, 0x01, 0x04, 0x05, 0x08, 0x09, 0x0c, 0x0d, 0x10, 0x11, 0x14,
                            0x15, 0x20, 0x21, 0x2c, 0x2d, 0x50, 0x51, 0x60, 0x61, 0x68, 0x69, 0x70,
                            0x71,
                        ]);
                        r_type(
                            0x53,
                            src.below(8) as u32,
                            funct,
                            rd(src),
                            f(src),
                            src.below(4) as u32,
                        )
                    }
                };
                a.i(w);
            }
            72..=79 => {
                // A branch forward over a few instructions, or (rarely) back.
                if src.chance(97) || i < 4 {
                    let l = a.label();
                    pending.push((l, i + 1 + src.below(8) as usize));
                    let (x, y) = (rs(src), rs(src));
                    let b = src.pick(&[beq, bne, blt, bge, bltu, bgeu]);
                    a.br(l, move |o| b(x, y, o));
                } else {
                    // Back to the top, spending one of the rounds.
                    a.i(addi(LOOPS, LOOPS, -1));
                    a.br(top, |o| blt(ZERO, LOOPS, o));
                }
            }
            80..=83 => {
                let l = a.label();
                pending.push((l, i + 1 + src.below(6) as usize));
                let r = rd(src);
                if src.chance(50) {
                    a.to(l, move |o| vec![jal(r, o)]);
                } else {
                    // auipc + jalr to the label (through a real register: x0 would
                    // make it an absolute jump).
                    let t = loop {
                        let t = rd(src);
                        if t != 0 {
                            break t;
                        }
                    };
                    a.to(l, move |o| {
                        let lo = (o << 20) >> 20;
                        vec![auipc(t, ((o - lo) >> 12) as u32), jalr(r, t, lo)]
                    });
                }
            }
            84..=87 => {
                // Rewrite one of the body's ALU instructions, maybe with FENCE.I. The
                // word depends on the round (its rs2 field flips), so that later rounds
                // store new code, not the same bytes again.
                if let Some(&at) = replaceable.get(src.below(replaceable.len() as u64 + 1) as usize)
                {
                    let (t, u) = (rd(src), rd(src));
                    let w = if src.chance(50) {
                        add(rd(src), rs(src), rs(src))
                    } else {
                        xori(rd(src), rs(src), src.imm12())
                    };
                    a.i(andi(t, LOOPS, 1))
                        .i(slli(t, t, 20 + src.below(5) as u32));
                    if u != t {
                        a.li(u, w as u64).i(xor(t, t, u));
                    }
                    a.i(sw(t, CODE, at));
                    if src.chance(50) {
                        a.i(FENCE_I);
                    }
                }
            }
            88..=90 => {
                // Change a sandbox page's permissions, maybe followed by SFENCE.VMA.
                let t = rd(src);
                let page = src.below(4);
                let v = pte(DATA_PA + 0x1000 * page, data_perms(src, mode));
                a.li(t, v).i(sd(t, PTES, 8 * page as i32));
                if src.chance(60) {
                    a.i(sfence_vma(0, 0));
                }
            }
            94..=96 if mode == Mode::Supervisor => {
                // Flip SUM or MXR: cached translations of user or execute-only pages
                // must follow them.
                let t = rd(src);
                let bit = src.pick(&[1u64 << 18, 1 << 19]);
                a.li(t, bit);
                a.i(if src.chance(50) {
                    csrrs(0, 0x100, t)
                } else {
                    csrrc(0, 0x100, t)
                });
            }
            91..=93 => {
                // WFI only where a timer will wake it.
                let wfi = if timer { WFI } else { FENCE };
                let w = src.pick(&[ECALL, EBREAK, FENCE, FENCE_I, wfi, 0, sfence_vma(0, 0)]);
                a.i(w);
            }
            _ => {
                a.i(FENCE);
            }
        }
        if let Some(r) = wrote.filter(|&r| r != 0 && src.chance(85)) {
            a.i(add(ACC, ACC, r));
        }
    }
    for (l, _) in pending {
        a.bind(l);
    }
    a.i(addi(LOOPS, LOOPS, -1));
    a.br(top, |o| blt(ZERO, LOOPS, o));
    a.halt();
}

/// A machine for `case` running under `engine`, compiling every block on its second
/// run (so that short programs exercise the compiler).
fn machine(case: &Case, engine: Engine) -> Machine {
    let cfg = BootConfig {
        firmware: Firmware::None,
        memory_mib: 16,
        insns_per_tick: 10,
        kernel: case.elf.clone(),
        initrd: None,
        cmdline: String::new(),
        devices: Default::default(),
    };
    let mut m = Machine::new(&cfg).expect("a generated program boots");
    m.set_jit_threshold(1);
    m.set_engine(engine);
    m
}

/// Run `m` to `until`; returns what it did on the way (exits and outputs), so two
/// runs can be compared, and whether it can go on.
fn advance(m: &mut Machine, until: u64, trace: &mut Vec<String>) -> bool {
    let mut idle = 0;
    loop {
        match m.run(ICount(until)) {
            Exit::Until => return true,
            Exit::Output => {
                for o in m.take_outputs() {
                    if let OutputKind::Console(b) = o.kind {
                        trace.push(format!("{}: console {b:?}", o.icount));
                    }
                }
            }
            Exit::Idle => {
                // WFI with nothing that can wake it ends the program.
                idle += 1;
                let Some(ticks) = m.idle_ticks().filter(|_| idle < 100) else {
                    trace.push(format!("{}: asleep for good", m.icount()));
                    return false;
                };
                let ticks = ticks.max(1);
                trace.push(format!("{}: idle {ticks}", m.icount()));
                m.inject(&Event::ClockAdvance { ticks });
            }
            e => {
                trace.push(format!("{}: {e:?}", m.icount()));
                return false;
            }
        }
    }
}

/// The RAM a generated program touches: its code, the data sandbox, the page tables.
fn used_ram(m: &Machine) -> [&[u8]; 3] {
    let ram = m.bus.ram.as_slice();
    let at = |pa: u64, len: usize| {
        let off = (pa - RAM_BASE) as usize;
        &ram[off..off + len]
    };
    [at(RAM_BASE, 0x4000), at(DATA_PA, 0x4000), at(PT, 0x3000)]
}

/// Run `case` under the interpreter, the JIT, and the two taking turns; `Err` names
/// the first step at which they differ.
pub fn check(case: &Case) -> Result<(), String> {
    let mut interp = machine(case, Engine::Interp);
    let mut jit = machine(case, Engine::Jit);
    let mut mixed = machine(case, Engine::Jit);
    let mut at = 0u64;
    for (k, (n, ev)) in case.steps.iter().enumerate() {
        at += n;
        // The mixed machine changes engine now and then, mid-program.
        if k % 3 == 0 {
            let next = match mixed.engine() {
                Engine::Jit => Engine::Interp,
                Engine::Interp => Engine::Jit,
            };
            mixed.set_engine(next);
        }
        let (mut ti, mut tj, mut tm) = (vec![], vec![], vec![]);
        let go_i = advance(&mut interp, at, &mut ti);
        let go_j = advance(&mut jit, at, &mut tj);
        let go_m = advance(&mut mixed, at, &mut tm);
        // Full hashes now and then (they read all of RAM); in between, the hart and
        // the parts of RAM the program uses.
        let full = k % 64 == 63 || !(go_i && go_j && go_m) || k + 1 == case.steps.len();
        let same = |a: &Machine, b: &Machine| {
            if full {
                a.state_hash() == b.state_hash()
            } else {
                a.hart.s == b.hart.s && used_ram(a) == used_ram(b)
            }
        };
        if ti != tj || ti != tm || !same(&interp, &jit) || !same(&interp, &mixed) {
            return Err(format!(
                "step {k} (to {at}, mode {:?}): interp icount {} pc {:#x} {ti:?}; jit icount {} pc {:#x} {tj:?}; mixed icount {} pc {:#x} {tm:?}; registers (interp, jit, mixed) {:x?} {:x?} {:x?}",
                case.mode,
                interp.icount(),
                interp.hart.s.pc,
                jit.icount(),
                jit.hart.s.pc,
                mixed.icount(),
                mixed.hart.s.pc,
                &interp.hart.s.x.0[..32],
                &jit.hart.s.x.0[..32],
                &mixed.hart.s.x.0[..32],
            ));
        }
        if !(go_i && go_j && go_m) {
            return Ok(());
        }
        if let Some(ev) = ev {
            interp.inject(ev);
            jit.inject(ev);
            mixed.inject(ev);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds run in the suite (each a few thousand to 45 000 instructions). Longer runs
    /// go through the fuzz target (`crates/machine/fuzz`).
    const SEEDS: u64 = 2_000;

    #[test]
    fn the_engines_agree_on_random_programs() {
        for seed in 0..SEEDS {
            let bytes = seed.to_le_bytes();
            let case = generate(&mut Source::new(&bytes));
            if let Err(e) = check(&case) {
                panic!("seed {seed}: {e}");
            }
        }
    }

    #[test]
    fn generated_programs_reach_their_end_under_both_engines() {
        // The generator is useful only if programs run their body: most power off
        // (the loop ends) rather than wedge in a trap loop.
        let mut ended = 0;
        for seed in 0..50u64 {
            let case = generate(&mut Source::new(&seed.to_le_bytes()));
            let mut m = machine(&case, Engine::Jit);
            let mut t = vec![];
            loop {
                let until = m.icount().0 + 100_000;
                if !advance(&mut m, until, &mut t) || until >= 2_000_000 {
                    break;
                }
            }
            if t.iter().any(|l| l.contains("PowerOff")) {
                ended += 1;
            }
        }
        assert!(ended >= 25, "only {ended} of 50 programs ran to their end");
    }
}
