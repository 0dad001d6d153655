//! The CSR file (privileged spec ch. 2, 3.1, 4.1; Zicntr).

use crate::cpu::csr::{mstatus, num};
use crate::cpu::trap::{cause, Priv};
use crate::machine::Machine;
use crate::testutil::reg::*;
use crate::testutil::*;

/// Run `insn` at privilege `prv` (0 = U, 1 = S, 3 = M) after `setup` in M-mode;
/// traps go to M and halt. Returns the machine and the instruction's address.
fn at_priv(prv: u64, setup: &[u32], insn: u32) -> (Machine, u64) {
    let mut a = Asm::with_trap_halt();
    let body = a.label();
    a.all(setup);
    if prv == 3 {
        a.j(body);
    } else {
        a.enter(prv, body);
    }
    a.bind(body);
    let at = a.here();
    a.i(insn).li(A7, 1).halt();
    (a.run(), at)
}

fn assert_illegal(m: &Machine, at: u64, insn: u32) {
    let c = &m.hart.s.csr;
    assert_eq!(c.mcause, cause::ILLEGAL_INSN, "{insn:#010x}");
    assert_eq!(c.mepc, at);
    assert_eq!(c.mtval, insn as u64, "mtval holds the instruction bits");
    assert_eq!(x(m, A7), 0, "did not complete");
}

#[test]
fn csrs_of_a_higher_privilege_are_illegal() {
    for (prv, insn) in [
        (1, csrr(A0, num::MSTATUS)),
        (1, csrw(num::MSCRATCH, A0)),
        (0, csrr(A0, num::SSTATUS)),
        (0, csrr(A0, num::SATP)),
        (0, csrr(A0, num::MEPC)),
    ] {
        let (m, at) = at_priv(prv, &[], insn);
        assert_illegal(&m, at, insn);
        let mpp = (m.hart.s.csr.mstatus & mstatus::MPP) >> mstatus::MPP_SHIFT;
        assert_eq!(mpp, prv, "trapped from the lower privilege");
    }
    // The same reads are fine from M.
    let (m, _) = at_priv(1, &[], csrr(A0, num::SSCRATCH));
    assert_eq!(x(&m, A7), 1);
}

#[test]
fn writing_a_read_only_csr_is_illegal() {
    for insn in [
        csrw(num::CYCLE, A0),
        csrrwi(A0, num::INSTRET, 1),
        csrw(num::MVENDORID, A0),
        csrrs(A0, num::MHARTID, A1),
    ] {
        let (m, at) = at_priv(3, &[addi(A1, ZERO, 1)], insn);
        assert_illegal(&m, at, insn);
    }
    // Reading them (CSRRS/CSRRC with x0, CSRRSI with 0) never counts as a write.
    for insn in [
        csrr(A0, num::MVENDORID),
        csrrsi(A0, num::CYCLE, 0),
        csrrc(A0, num::MHARTID, ZERO),
    ] {
        let (m, _) = at_priv(3, &[], insn);
        assert_eq!(x(&m, A7), 1, "{insn:#010x} completed");
        assert_eq!(m.hart.s.csr.mcause, 0);
    }
}

#[test]
fn mstatus_mpp_never_holds_the_reserved_value() {
    let mut a = Asm::new();
    a.li(T1, mstatus::MPP).i(csrrc(ZERO, num::MSTATUS, T1));
    a.li(T1, 1 << mstatus::MPP_SHIFT)
        .i(csrrs(ZERO, num::MSTATUS, T1)); // MPP = S
    a.i(csrr(A0, num::MSTATUS));
    a.li(T1, mstatus::MPP).i(csrrc(ZERO, num::MSTATUS, T1));
    a.li(T1, 2 << mstatus::MPP_SHIFT)
        .i(csrrs(ZERO, num::MSTATUS, T1)); // MPP = 0 | 2 = 2
    a.i(csrr(A1, num::MSTATUS));
    a.halt();
    let m = a.run();
    let mpp = |v: u64| (v & mstatus::MPP) >> mstatus::MPP_SHIFT;
    assert_eq!(mpp(x(&m, A0)), 1);
    assert_ne!(mpp(x(&m, A1)), 2);
    assert_eq!(
        mpp(x(&m, A1)),
        0,
        "the write of 2 kept the previous legal value (U)"
    );
}

#[test]
fn sd_summarises_a_dirty_fs() {
    let mut a = Asm::new();
    a.li(T1, 1 << mstatus::FS_SHIFT)
        .i(csrrs(ZERO, num::MSTATUS, T1)); // FS = Initial
    a.i(csrr(A0, num::MSTATUS)).i(csrr(A1, num::SSTATUS));
    a.i(fmv_d_x(1, ZERO)); // writes an f register: FS = Dirty
    a.i(csrr(A2, num::MSTATUS)).i(csrr(A3, num::SSTATUS));
    a.halt();
    let m = a.run();
    assert_eq!(
        x(&m, A0) & (mstatus::SD | mstatus::FS),
        1 << mstatus::FS_SHIFT
    );
    assert_eq!(x(&m, A1) & mstatus::SD, 0);
    assert_eq!(
        x(&m, A2) & (mstatus::SD | mstatus::FS),
        mstatus::SD | mstatus::FS
    );
    assert_eq!(x(&m, A3) & mstatus::SD, mstatus::SD);
}

#[test]
fn satp_ignores_unsupported_modes() {
    let sv39 = (8 << 60) | (0x1234 << 44) | 0x80200;
    let mut a = Asm::new();
    a.li(T1, sv39).i(csrw(num::SATP, T1)).i(csrr(S0, num::SATP));
    for (k, mode) in [9u64, 10, 1, 15].iter().enumerate() {
        a.li(T1, (mode << 60) | 0x80300).i(csrw(num::SATP, T1));
        a.i(csrr(S1 + k as u32, num::SATP));
    }
    a.i(csrw(num::SATP, ZERO)).i(csrr(A5, num::SATP));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S0), sv39);
    for k in 0..4 {
        assert_eq!(x(&m, S1 + k), sv39, "mode write {k} left satp unchanged");
    }
    assert_eq!(x(&m, A5), 0, "Bare is accepted");
}

#[test]
fn sstatus_is_a_view_of_mstatus() {
    let mut a = Asm::new();
    a.li(T1, u64::MAX).i(csrw(num::SSTATUS, T1));
    a.i(csrr(A0, num::MSTATUS)).i(csrr(A1, num::SSTATUS));
    a.li(
        T1,
        mstatus::MIE | mstatus::MPIE | mstatus::MPRV | mstatus::TVM,
    );
    a.i(csrw(num::MSTATUS, T1))
        .i(csrr(A2, num::SSTATUS))
        .i(csrr(A3, num::MSTATUS));
    a.halt();
    let m = a.run();
    let s_bits =
        mstatus::SIE | mstatus::SPIE | mstatus::SPP | mstatus::FS | mstatus::SUM | mstatus::MXR;
    let m_only = mstatus::MIE
        | mstatus::MPIE
        | mstatus::MPP
        | mstatus::MPRV
        | mstatus::TVM
        | mstatus::TW
        | mstatus::TSR;
    assert_eq!(x(&m, A0) & s_bits, s_bits, "sstatus writes land in mstatus");
    assert_eq!(x(&m, A0) & m_only, 0, "sstatus cannot write M-only fields");
    assert_eq!(x(&m, A1) & m_only, 0);
    assert_eq!(
        x(&m, A2) & (m_only | s_bits),
        0,
        "M-only bits are invisible in sstatus"
    );
    assert_eq!(x(&m, A2) >> 32 & 3, 2, "UXL = 64");
    assert_eq!(
        x(&m, A3) & m_only,
        mstatus::MIE | mstatus::MPIE | mstatus::MPRV | mstatus::TVM
    );
}

#[test]
fn sie_and_sip_are_masked_by_mideleg() {
    let mut a = Asm::new();
    a.li(T1, u64::MAX);
    a.i(csrw(num::SIE, T1))
        .i(csrw(num::SIP, T1))
        .i(csrr(A0, num::MIE))
        .i(csrr(A1, num::MIP));
    a.li(T2, 1 << 1 | 1 << 5).i(csrw(num::MIDELEG, T2)); // delegate SSI, STI
    a.i(csrw(num::SIE, T1)).i(csrw(num::SIP, T1));
    a.all(&[
        csrr(A2, num::MIE),
        csrr(A3, num::SIE),
        csrr(A4, num::SIP),
        csrr(A5, num::MIP),
    ]);
    a.li(T2, 1 << 9 | 1 << 1).i(csrw(num::MIP, T2)); // SEIP and SSIP from M
    a.i(csrr(A6, num::SIP));
    a.halt();
    let m = a.run();
    assert_eq!(
        (x(&m, A0), x(&m, A1)),
        (0, 0),
        "nothing delegated: sie/sip write nothing"
    );
    assert_eq!(x(&m, A2), 1 << 1 | 1 << 5);
    assert_eq!(x(&m, A3), 1 << 1 | 1 << 5);
    assert_eq!(x(&m, A4), 1 << 1, "only SSIP is writable through sip");
    assert_eq!(x(&m, A5), 1 << 1);
    assert_eq!(
        x(&m, A6),
        1 << 1,
        "SEIP is pending in mip but not delegated"
    );
}

#[test]
fn counters_follow_the_instruction_count() {
    const NOPS: u64 = 95;
    let mut a = Asm::new();
    a.i(csrr(S0, num::INSTRET));
    for _ in 0..NOPS {
        a.i(addi(ZERO, ZERO, 0));
    }
    a.all(&[
        csrr(S1, num::INSTRET),
        csrr(S2, num::CYCLE),
        csrr(S3, num::TIME),
    ]);
    a.all(&[csrr(S4, num::MINSTRET), csrr(S5, num::MCYCLE)]);
    a.li(T1, 1000)
        .i(csrw(num::MINSTRET, T1))
        .i(csrr(A0, num::INSTRET));
    a.halt();
    let m = a.run();
    // ftvm counts the reading instruction itself: the first instruction reads 1.
    assert_eq!(x(&m, S0), 1);
    assert_eq!(x(&m, S1), NOPS + 2);
    assert_eq!(x(&m, S2), NOPS + 3, "cycle = instret");
    assert_eq!(x(&m, S3), (NOPS + 4) / 10, "time = icount / insns_per_tick");
    assert_eq!((x(&m, S4), x(&m, S5)), (NOPS + 5, NOPS + 6));
    assert_eq!(x(&m, A0), 1001, "counting resumes from the written value");
}

#[test]
fn user_counter_access_needs_mcounteren_and_scounteren() {
    let (m, at) = at_priv(0, &[], csrr(A0, num::CYCLE));
    assert_illegal(&m, at, csrr(A0, num::CYCLE));
    let allow = [addi(T1, ZERO, 7), csrw(num::MCOUNTEREN, T1)];
    let (m, at) = at_priv(0, &allow, csrr(A0, num::TIME));
    assert_illegal(&m, at, csrr(A0, num::TIME));
    let allow = [
        addi(T1, ZERO, 7),
        csrw(num::MCOUNTEREN, T1),
        csrw(num::SCOUNTEREN, T1),
    ];
    let (m, _) = at_priv(0, &allow, csrr(A0, num::TIME));
    assert_eq!(x(&m, A7), 1);
    assert_eq!(m.hart.s.prv, Priv::U);
}
