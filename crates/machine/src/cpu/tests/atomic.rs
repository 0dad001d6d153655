//! The A extension (unprivileged spec ch. 8): LR/SC reservations and AMOs.

use crate::cpu::trap::cause;
use crate::testutil::reg::*;
use crate::testutil::*;

#[test]
fn lr_sc_succeeds_with_a_reservation() {
    let mut a = Asm::new();
    a.li(A0, DATA).li(A1, 41).i(sd(A1, A0, 0));
    a.i(lr_d(S0, A0)).i(addi(S0, S0, 1)).i(sc_d(S1, S0, A0));
    a.i(lr_w(S2, A0))
        .li(A2, 0x8000_0000)
        .i(sc_w(S3, A2, A0))
        .i(ld(S4, A0, 0));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S1), 0, "sc.d succeeded");
    assert_eq!(x(&m, S2), 42);
    assert_eq!(x(&m, S3), 0, "sc.w succeeded");
    assert_eq!(x(&m, S4), 0x8000_0000, "sc.w wrote only the low word");
}

#[test]
fn sc_fails_without_a_reservation() {
    let mut a = Asm::new();
    a.li(A0, DATA).li(A1, 5).i(sd(A1, A0, 0)).li(A2, 9);
    a.i(sc_d(S0, A2, A0));
    // A reservation is used up by the first SC, successful or not.
    a.i(lr_d(S1, A0)).i(sc_d(S2, A2, A0)).i(sc_d(S3, A1, A0));
    // An SC to another address than the reserved one fails.
    a.i(lr_d(S4, A0)).i(addi(A3, A0, 8)).i(sc_d(S5, A2, A3));
    a.i(ld(A4, A0, 0)).i(ld(A5, A0, 8));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S0), 1);
    assert_eq!((x(&m, S2), x(&m, S3)), (0, 1));
    assert_eq!(x(&m, S5), 1);
    assert_eq!(x(&m, A4), 9, "only the reserved SC wrote");
    assert_eq!(x(&m, A5), 0);
}

#[test]
fn a_trap_clears_the_reservation() {
    let mut a = Asm::with_trap_skip();
    a.li(A0, DATA).li(A2, 9);
    a.i(lr_d(S0, A0))
        .i(ECALL)
        .i(sc_d(S1, A2, A0))
        .i(ld(S2, A0, 0));
    a.halt();
    let m = a.run();
    assert_eq!(m.hart.s.csr.mcause, cause::ECALL_M, "the ecall trapped");
    assert_eq!(x(&m, S1), 1, "sc failed");
    assert_eq!(x(&m, S2), 0, "memory unchanged");
}

#[test]
fn word_amo_min_max_signed_unsigned_and_sign_extension() {
    // Memory holds -16 as a word; rs2 is 5 with junk above bit 31.
    let run = |op: fn(u32, u32, u32) -> u32| {
        let mut a = Asm::new();
        a.li(A0, DATA)
            .li(A1, 0x5555_5555_ffff_fff0)
            .i(sd(A1, A0, 0));
        a.li(A2, 0x1234_5678_0000_0005)
            .i(op(S0, A2, A0))
            .i(ld(S1, A0, 0));
        a.halt();
        let m = a.run();
        (x(&m, S0), x(&m, S1))
    };
    let old = 0xffff_ffff_ffff_fff0;
    let high = 0x5555_5555_0000_0000;
    assert_eq!(run(amomin_w), (old, high | 0xffff_fff0));
    assert_eq!(run(amomax_w), (old, high | 5));
    assert_eq!(run(amominu_w), (old, high | 5));
    assert_eq!(run(amomaxu_w), (old, high | 0xffff_fff0));
    assert_eq!(run(amoadd_w), (old, high | 0xffff_fff5));
    assert_eq!(run(amoswap_w), (old, high | 5));
    assert_eq!(run(amoxor_w), (old, high | 0xffff_fff5));
    assert_eq!(run(amoand_w), (old, high));
    assert_eq!(run(amoor_w), (old, high | 0xffff_fff5));
}

#[test]
fn doubleword_amos() {
    let mut a = Asm::new();
    a.li(A0, DATA).li(A1, u64::MAX).i(sd(A1, A0, 0)).li(A2, 1);
    a.i(amoadd_d(S0, A2, A0)).i(ld(S1, A0, 0));
    a.i(amomin_d(S2, A1, A0)).i(ld(S3, A0, 0));
    a.i(amomaxu_d(S4, A1, A0)).i(ld(S5, A0, 0));
    a.i(amoswap_d(A3, A2, A0)).i(ld(A4, A0, 0));
    a.halt();
    let m = a.run();
    assert_eq!((x(&m, S0), x(&m, S1)), (u64::MAX, 0));
    assert_eq!((x(&m, S2), x(&m, S3)), (0, u64::MAX));
    assert_eq!((x(&m, S4), x(&m, S5)), (u64::MAX, u64::MAX));
    assert_eq!((x(&m, A3), x(&m, A4)), (u64::MAX, 1));
}

fn trap_of(insn: u32, addr: u64) -> (u64, u64) {
    let mut a = Asm::with_trap_halt();
    a.li(A0, addr).li(A2, 1).i(insn).halt();
    let m = a.run();
    (m.hart.s.csr.mcause, m.hart.s.csr.mtval)
}

#[test]
fn misaligned_atomics_trap() {
    let addr = DATA + 4;
    assert_eq!(
        trap_of(amoadd_d(S0, A2, A0), addr),
        (cause::STORE_MISALIGNED, addr)
    );
    assert_eq!(
        trap_of(amoswap_w(S0, A2, A0), addr + 2),
        (cause::STORE_MISALIGNED, addr + 2)
    );
    assert_eq!(
        trap_of(sc_d(S0, A2, A0), addr),
        (cause::STORE_MISALIGNED, addr)
    );
    assert_eq!(trap_of(lr_d(S0, A0), addr), (cause::LOAD_MISALIGNED, addr));
    assert_eq!(
        trap_of(lr_w(S0, A0), addr + 1),
        (cause::LOAD_MISALIGNED, addr + 1)
    );
}

#[test]
fn amo_outside_ram_is_a_store_access_fault() {
    let uart = crate::devices::layout::UART_BASE;
    assert_eq!(
        trap_of(amoadd_w(S0, A2, A0), uart),
        (cause::STORE_ACCESS, uart)
    );
    assert_eq!(
        trap_of(lr_w(S0, A0), 0x4000_0000),
        (cause::LOAD_ACCESS, 0x4000_0000)
    );
}
