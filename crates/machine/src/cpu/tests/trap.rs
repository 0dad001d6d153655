//! Traps (privileged spec 3.1.6.1, 3.1.7-3.1.9, 3.3.2, 4.1.1): delegation, the
//! trap CSRs, xRET, vectored entry, interrupt priority and enables, WFI.

use crate::cpu::csr::{mstatus, num};
use crate::cpu::trap::{cause, irq, Priv};
use crate::cpu::Hart;
use crate::devices::layout::CLINT_BASE;
use crate::machine::{Event, Exit};
use crate::testutil::reg::*;
use crate::testutil::*;
use crate::types::ICount;

const INTERRUPT: u64 = 1 << 63;

/// Point `stvec` at a handler that halts (clobbers t0).
fn stvec_halt(a: &mut Asm) {
    let (h, over) = (a.label(), a.label());
    a.la(T0, h).i(csrw(num::STVEC, T0)).j(over);
    a.bind(h);
    a.halt();
    a.bind(over);
}

#[test]
fn user_ecall_goes_to_s_when_delegated_and_to_m_otherwise() {
    for delegated in [true, false] {
        let mut a = Asm::with_trap_halt();
        let user = a.label();
        stvec_halt(&mut a);
        if delegated {
            a.li(T1, 1 << cause::ECALL_U).i(csrw(num::MEDELEG, T1));
        }
        a.enter(0, user);
        a.bind(user);
        let at = a.here();
        a.i(ECALL);
        let m = a.run();
        let c = &m.hart.s.csr;
        if delegated {
            assert_eq!(m.hart.s.prv, Priv::S);
            assert_eq!((c.scause, c.sepc, c.stval), (cause::ECALL_U, at, 0));
            assert_eq!(c.mstatus & mstatus::SPP, 0, "came from U");
            assert_eq!(c.mcause, 0, "M-mode not involved");
        } else {
            assert_eq!(m.hart.s.prv, Priv::M);
            assert_eq!((c.mcause, c.mepc, c.mtval), (cause::ECALL_U, at, 0));
            assert_eq!(c.scause, 0);
        }
    }
}

#[test]
fn m_mode_exceptions_are_never_delegated() {
    let mut a = Asm::with_trap_halt();
    stvec_halt(&mut a);
    a.li(T1, u64::MAX)
        .i(csrw(num::MEDELEG, T1))
        .i(csrr(S0, num::MEDELEG));
    let at = a.here();
    a.i(EBREAK);
    let m = a.run();
    let c = &m.hart.s.csr;
    assert_eq!(
        x(&m, S0) & (1 << cause::ECALL_M),
        0,
        "ecall from M cannot be delegated"
    );
    assert_eq!((c.mcause, c.mepc, c.mtval), (cause::BREAKPOINT, at, at));
    assert_eq!(c.scause, 0);
}

#[test]
fn s_mode_access_fault_delegated_sets_stval() {
    let mut a = Asm::with_trap_halt();
    let sup = a.label();
    stvec_halt(&mut a);
    a.li(T1, 1 << cause::LOAD_ACCESS).i(csrw(num::MEDELEG, T1));
    a.enter(1, sup);
    a.bind(sup);
    a.li(A0, 0x4000_0010);
    let at = a.here();
    a.i(ld(A1, A0, 0));
    let m = a.run();
    let c = &m.hart.s.csr;
    assert_eq!(
        (c.scause, c.sepc, c.stval),
        (cause::LOAD_ACCESS, at, 0x4000_0010)
    );
    assert_ne!(c.mstatus & mstatus::SPP, 0, "came from S");
}

/// MRET to S with MPIE = 1, MIE = 0, SPIE = 1, SIE = 0; then `in_s`.
fn mret_to_s(in_s: impl FnOnce(&mut Asm)) -> crate::machine::Machine {
    let mut a = Asm::with_trap_halt();
    let sup = a.label();
    a.li(T1, mstatus::MPIE | 1 << mstatus::MPP_SHIFT | mstatus::SPIE);
    a.i(csrw(num::MSTATUS, T1));
    a.la(T1, sup).i(csrw(num::MEPC, T1)).i(MRET);
    a.bind(sup);
    in_s(&mut a);
    a.run()
}

#[test]
fn mret_and_sret_restore_privilege_and_enables() {
    // MRET really went to S: reading mstatus there is illegal.
    let m = mret_to_s(|a| {
        a.i(csrr(S0, num::MSTATUS));
    });
    assert_eq!(m.hart.s.csr.mcause, cause::ILLEGAL_INSN);
    assert_eq!(
        (m.hart.s.csr.mstatus & mstatus::MPP) >> mstatus::MPP_SHIFT,
        1
    );

    let m = mret_to_s(|a| {
        let (s2, u) = (a.label(), a.label());
        a.i(csrr(S0, num::SSTATUS));
        // SRET to S: SIE = SPIE (1), SPIE = 1, SPP = U.
        a.li(T1, mstatus::SPP).i(csrrs(ZERO, num::SSTATUS, T1));
        a.la(T1, s2).i(csrw(num::SEPC, T1)).i(SRET);
        a.bind(s2);
        a.i(csrr(S1, num::SSTATUS));
        // SRET to U with SPIE = 0: SIE = 0, SPIE = 1.
        a.li(T1, mstatus::SPIE).i(csrrc(ZERO, num::SSTATUS, T1));
        a.la(T1, u).i(csrw(num::SEPC, T1)).i(SRET);
        a.bind(u);
        a.i(ECALL);
    });
    let s_bits = |v: u64| {
        (
            v & mstatus::SIE != 0,
            v & mstatus::SPIE != 0,
            v & mstatus::SPP != 0,
        )
    };
    assert_eq!(
        s_bits(x(&m, S0)),
        (false, true, false),
        "MRET leaves the S bits alone"
    );
    assert_eq!(s_bits(x(&m, S1)), (true, true, false), "after SRET to S");
    let st = m.hart.s.csr.mstatus;
    assert_eq!(
        m.hart.s.csr.mcause,
        cause::ECALL_U,
        "reached U via MRET then SRET"
    );
    assert_eq!(s_bits(st), (false, true, false), "after SRET to U");
    // MRET set MIE = MPIE (1) and MPIE = 1; the trap from U then stacked MIE into
    // MPIE and cleared MIE.
    assert_ne!(st & mstatus::MPIE, 0);
    assert_eq!(st & mstatus::MIE, 0);
    assert_eq!((st & mstatus::MPP) >> mstatus::MPP_SHIFT, 0, "MPP = U");
}

#[test]
fn mret_sets_mpie_and_clears_mpp() {
    // From M to M with MPIE = 0: MIE = 0, MPIE = 1, MPP = U (the least privilege).
    let mut a = Asm::new();
    let next = a.label();
    a.li(T1, mstatus::MIE | mstatus::MPP)
        .i(csrw(num::MSTATUS, T1));
    a.la(T1, next).i(csrw(num::MEPC, T1)).i(MRET);
    a.bind(next);
    a.i(csrr(S0, num::MSTATUS)).halt();
    let m = a.run();
    let st = x(&m, S0);
    assert_eq!(
        st & (mstatus::MIE | mstatus::MPIE | mstatus::MPP),
        mstatus::MPIE
    );
}

#[test]
fn xret_below_its_privilege_is_illegal() {
    let cases: [(u64, u32, u64); 3] = [(1, MRET, 0), (0, SRET, 0), (1, SRET, mstatus::TSR)];
    for (prv, insn, extra) in cases {
        let mut a = Asm::with_trap_halt();
        let body = a.label();
        a.li(T1, extra).i(csrrs(ZERO, num::MSTATUS, T1));
        a.enter(prv, body);
        a.bind(body);
        let at = a.here();
        a.i(insn);
        let m = a.run();
        let c = &m.hart.s.csr;
        assert_eq!(
            (c.mcause, c.mepc, c.mtval),
            (cause::ILLEGAL_INSN, at, insn as u64)
        );
    }
}

#[test]
fn illegal_instruction_mtval_holds_the_bits() {
    let mut a = Asm::with_trap_halt();
    a.i(0xffff_ffff);
    let m = a.run();
    assert_eq!(m.hart.s.csr.mtval, 0xffff_ffff);
    // A 16-bit illegal instruction: only its 16 bits, not the next parcel.
    let mut a = Asm::with_trap_halt();
    let at = a.here();
    a.c(0x4002).c(0x4501); // c.lwsp zero (reserved), then c.li a0,0
    let m = a.run();
    let c = &m.hart.s.csr;
    assert_eq!(
        (c.mcause, c.mepc, c.mtval),
        (cause::ILLEGAL_INSN, at, 0x4002)
    );
}

/// Set `mip` bits `pending` and `mie` bits `enabled`, enable M interrupts, with
/// `mtvec` vectored at a table whose slot k does `jal t3, tail`.
fn vectored(pending: u64, enabled: u64, msip: bool) -> (crate::machine::Machine, u64) {
    let mut a = Asm::new();
    let (table, tail, over) = (a.label(), a.label(), a.label());
    a.la(T0, table)
        .i(ori(T0, T0, 1))
        .i(csrw(num::MTVEC, T0))
        .j(over);
    a.bind(table);
    for _ in 0..16 {
        a.to(tail, |o| vec![jal(T3, o)]);
    }
    a.bind(tail);
    a.halt();
    a.bind(over);
    a.li(T1, pending).i(csrw(num::MIP, T1));
    if msip {
        a.li(T1, CLINT_BASE).li(T2, 1).i(sw(T2, T1, 0));
    }
    a.li(T1, enabled).i(csrw(num::MIE, T1));
    a.i(csrrsi(ZERO, num::MSTATUS, mstatus::MIE as u32));
    a.i(addi(A7, ZERO, 1)); // must not run before the interrupt
    a.halt();
    let m = a.run();
    let base = a.addr(table);
    (m, base)
}

#[test]
fn vectored_mtvec_sends_interrupts_to_base_plus_four_times_cause() {
    let (m, base) = vectored(0, 1 << irq::MSI, true);
    assert_eq!(m.hart.s.csr.mcause, INTERRUPT | irq::MSI);
    assert_eq!(x(&m, T3), base + 4 * irq::MSI + 4);
    assert_eq!(x(&m, A7), 0);
    let (m, base) = vectored(1 << irq::SSI, 1 << irq::SSI, false);
    assert_eq!(m.hart.s.csr.mcause, INTERRUPT | irq::SSI);
    assert_eq!(x(&m, T3), base + 4 * irq::SSI + 4);
}

#[test]
fn interrupts_are_taken_in_priority_order() {
    // Whole machine: MSI (CLINT) beats SEI, SSI and STI (software-set mip bits).
    let soft = 1 << irq::SEI | 1 << irq::SSI | 1 << irq::STI;
    let (m, _) = vectored(soft, soft | 1 << irq::MSI, true);
    assert_eq!(m.hart.s.csr.mcause, INTERRUPT | irq::MSI);
    let (m, _) = vectored(soft, soft, false);
    assert_eq!(m.hart.s.csr.mcause, INTERRUPT | irq::SEI);
    let (m, _) = vectored(1 << irq::SSI | 1 << irq::STI, soft, false);
    assert_eq!(m.hart.s.csr.mcause, INTERRUPT | irq::SSI);
    // The full order, from the hart's selection logic (privileged spec 3.1.9).
    let mut h = Hart::new(0);
    h.s.csr.mie = u64::MAX;
    h.s.csr.mstatus |= mstatus::MIE;
    h.ext_mip = 1 << irq::MEI | 1 << irq::MSI | 1 << irq::MTI | 1 << irq::SEI;
    h.s.csr.mip = 1 << irq::SSI | 1 << irq::STI;
    let mut order = vec![];
    while let Some(i) = h.pending_interrupt() {
        order.push(i);
        h.ext_mip &= !(1 << i);
        h.s.csr.mip &= !(1 << i);
    }
    assert_eq!(
        order,
        [irq::MEI, irq::MSI, irq::MTI, irq::SEI, irq::SSI, irq::STI]
    );
}

#[test]
fn m_interrupts_need_mie_in_m_mode_but_not_below() {
    let mut a = Asm::with_trap_halt();
    let sup = a.label();
    a.li(T1, 1 << irq::SSI)
        .i(csrw(num::MIP, T1))
        .i(csrw(num::MIE, T1));
    for _ in 0..5 {
        a.i(addi(A7, A7, 1)); // MIE = 0 in M: not taken
    }
    a.enter(1, sup);
    a.bind(sup);
    let at = a.here();
    a.i(addi(A6, ZERO, 1)); // taken before this runs
    let m = a.run();
    let c = &m.hart.s.csr;
    assert_eq!(x(&m, A7), 5);
    assert_eq!(x(&m, A6), 0);
    assert_eq!((c.mcause, c.mepc), (INTERRUPT | irq::SSI, at));
    assert_eq!((c.mstatus & mstatus::MPP) >> mstatus::MPP_SHIFT, 1);
}

#[test]
fn s_interrupts_need_sie_in_s_mode_but_not_in_u() {
    let mut a = Asm::with_trap_halt();
    let (sup, user) = (a.label(), a.label());
    stvec_halt(&mut a);
    a.li(T1, 1 << irq::SSI)
        .i(csrw(num::MIDELEG, T1))
        .i(csrw(num::MIE, T1));
    a.i(csrw(num::MIP, T1));
    a.enter(1, sup);
    a.bind(sup);
    for _ in 0..5 {
        a.i(addi(A7, A7, 1)); // SIE = 0 in S: not taken
    }
    a.la(T1, user).i(csrw(num::SEPC, T1)).i(SRET);
    a.bind(user);
    let at = a.here();
    a.i(addi(A6, ZERO, 1));
    let m = a.run();
    let c = &m.hart.s.csr;
    assert_eq!(x(&m, A7), 5);
    assert_eq!(x(&m, A6), 0);
    assert_eq!((c.scause, c.sepc), (INTERRUPT | irq::SSI, at));
    assert_eq!(m.hart.s.prv, Priv::S);
    assert_eq!(c.mcause, 0);
}

#[test]
fn wfi_wakes_on_an_enabled_interrupt_even_with_mie_clear() {
    // mtimecmp = 100 ticks; MTIE set; mstatus.MIE = 0.
    let mut a = Asm::with_trap_halt();
    a.li(T1, CLINT_BASE + 0x4000).li(T2, 100).i(sd(T2, T1, 0));
    a.li(T1, 1 << irq::MTI).i(csrw(num::MIE, T1));
    a.i(WFI).i(addi(A7, ZERO, 1)).halt();
    let mut m = a.machine();
    assert_eq!(m.run(ICount(10_000)), Exit::Idle, "asleep, nothing pending");
    let asleep = m.icount();
    assert_eq!(m.run(ICount(10_000)), Exit::Idle);
    assert_eq!(m.icount(), asleep, "idle does not advance");
    let ticks = m.idle_ticks().expect("a timer is armed");
    assert_eq!(m.mtime() + ticks, 100);
    m.inject(&Event::ClockAdvance { ticks });
    run_to_halt(&mut m);
    assert_eq!(x(&m, A7), 1, "resumed after WFI");
    assert_eq!(m.hart.s.csr.mcause, 0, "no trap: MIE is clear");
}

#[test]
fn wfi_with_a_pending_enabled_interrupt_does_not_sleep() {
    let mut a = Asm::with_trap_halt();
    a.li(T1, 1 << irq::SSI)
        .i(csrw(num::MIP, T1))
        .i(csrw(num::MIE, T1));
    a.i(WFI).i(addi(A7, ZERO, 1)).halt();
    let m = a.run();
    assert_eq!(x(&m, A7), 1);
    assert_eq!(m.hart.s.csr.mcause, 0);
}
