//! Loads and stores (unprivileged spec 2.6): extension, misaligned accesses emulated
//! without a trap, access faults (privileged spec 3.7, table 3.6).

use crate::cpu::trap::cause;
use crate::testutil::reg::*;
use crate::testutil::*;

#[test]
fn loads_sign_and_zero_extend() {
    let mut a = Asm::new();
    a.li(A0, DATA)
        .li(A1, 0x8081_8283_8485_8687)
        .i(sd(A1, A0, 0));
    a.all(&[lb(S0, A0, 0), lbu(S1, A0, 0), lh(S2, A0, 0), lhu(S3, A0, 0)]);
    a.all(&[lw(S4, A0, 0), lwu(S5, A0, 0), ld(A2, A0, 0), lb(A3, A0, 7)]);
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S0), 0xffff_ffff_ffff_ff87);
    assert_eq!(x(&m, S1), 0x87);
    assert_eq!(x(&m, S2), 0xffff_ffff_ffff_8687);
    assert_eq!(x(&m, S3), 0x8687);
    assert_eq!(x(&m, S4), 0xffff_ffff_8485_8687);
    assert_eq!(x(&m, S5), 0x8485_8687);
    assert_eq!(x(&m, A2), 0x8081_8283_8485_8687);
    assert_eq!(x(&m, A3), 0xffff_ffff_ffff_ff80);
}

#[test]
fn stores_write_only_their_width() {
    let mut a = Asm::new();
    a.li(A0, DATA)
        .li(A1, u64::MAX)
        .i(sd(A1, A0, 0))
        .i(sd(A1, A0, 8));
    a.li(A2, 0x1122_3344_5566_7788);
    a.i(sb(A2, A0, 1))
        .i(sh(A2, A0, 4))
        .i(sw(A2, A0, 8))
        .i(sd(A2, A0, 16));
    a.halt();
    let m = a.run();
    assert_eq!(peek64(&m, DATA), 0xffff_7788_ffff_88ff);
    assert_eq!(peek64(&m, DATA + 8), 0xffff_ffff_5566_7788);
    assert_eq!(peek64(&m, DATA + 16), 0x1122_3344_5566_7788);
}

#[test]
fn misaligned_accesses_are_emulated_without_trapping() {
    let mut a = Asm::with_trap_halt();
    a.li(A0, DATA).li(A1, 0x0102_0304_0506_0708);
    a.i(sd(A1, A0, 1)).i(sw(A1, A0, 13)).i(sh(A1, A0, 19));
    a.all(&[
        ld(S0, A0, 1),
        lw(S1, A0, 13),
        lhu(S2, A0, 19),
        lh(S3, A0, 3),
        lwu(S4, A0, 2),
    ]);
    a.li(A7, 1).halt();
    let m = a.run();
    assert_eq!(m.hart.s.csr.mcause, 0, "no trap");
    assert_eq!(x(&m, A7), 1, "reached the end");
    assert_eq!(x(&m, S0), 0x0102_0304_0506_0708);
    assert_eq!(x(&m, S1), 0x0506_0708);
    assert_eq!(x(&m, S2), 0x0708);
    assert_eq!(x(&m, S3), 0x0506, "bytes 3..5 of the doubleword at +1");
    assert_eq!(x(&m, S4), 0x0405_0607);
    assert_eq!(peek64(&m, DATA), 0x0203_0405_0607_0800);
}

#[test]
fn misaligned_access_across_a_page_boundary() {
    let edge = DATA + 0x1000 - 3; // 3 bytes in one page, 5 in the next
    let mut a = Asm::with_trap_halt();
    a.li(A0, edge).li(A1, 0xa1a2_a3a4_a5a6_a7a8);
    a.i(sd(A1, A0, 0))
        .i(ld(S0, A0, 0))
        .i(lw(S1, A0, 1))
        .i(lh(S2, A0, 2));
    a.li(A7, 1).halt();
    let m = a.run();
    assert_eq!(x(&m, A7), 1, "no trap");
    assert_eq!(x(&m, S0), 0xa1a2_a3a4_a5a6_a7a8);
    assert_eq!(x(&m, S1), 0xffff_ffff_a4a5_a6a7);
    assert_eq!(x(&m, S2), 0xffff_ffff_ffff_a5a6);
    assert_eq!(peek64(&m, DATA + 0x1000 - 8) >> 40, 0xa6a7a8);
    assert_eq!(peek64(&m, DATA + 0x1000) & 0xff_ffff_ffff, 0xa1_a2a3_a4a5);
}

#[test]
fn store_then_load_round_trips_every_width() {
    let mut a = Asm::new();
    a.li(A0, DATA).li(A1, 0xdead_beef_cafe_f00d);
    a.all(&[sd(A1, A0, 0), ld(S0, A0, 0), sw(A1, A0, 8), lwu(S1, A0, 8)]);
    a.all(&[
        sh(A1, A0, 16),
        lhu(S2, A0, 16),
        sb(A1, A0, 24),
        lbu(S3, A0, 24),
    ]);
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S0), 0xdead_beef_cafe_f00d);
    assert_eq!(x(&m, S1), 0xcafe_f00d);
    assert_eq!(x(&m, S2), 0xf00d);
    assert_eq!(x(&m, S3), 0x0d);
}

fn fault(insn: u32, addr: u64) -> crate::machine::Machine {
    let mut a = Asm::with_trap_halt();
    a.li(A0, addr).li(A1, 7);
    let at = a.here();
    a.i(insn).li(A7, 1).halt();
    let m = a.run();
    assert_eq!(m.hart.s.csr.mepc, at);
    assert_eq!(x(&m, A7), 0, "the faulting instruction did not complete");
    m
}

#[test]
fn unmapped_physical_addresses_raise_access_faults() {
    let hole = 0x4000_0000; // between the devices and RAM
    let m = fault(ld(A2, A0, 8), hole);
    assert_eq!(m.hart.s.csr.mcause, cause::LOAD_ACCESS);
    assert_eq!(m.hart.s.csr.mtval, hole + 8);
    let m = fault(sw(A1, A0, 0), hole);
    assert_eq!(m.hart.s.csr.mcause, cause::STORE_ACCESS);
    assert_eq!(m.hart.s.csr.mtval, hole);
    // Past the end of 16 MiB of RAM.
    let end = crate::devices::layout::RAM_BASE + (16 << 20);
    let m = fault(lb(A2, A0, 0), end);
    assert_eq!(m.hart.s.csr.mcause, cause::LOAD_ACCESS);
    assert_eq!(m.hart.s.csr.mtval, end);
}

#[test]
fn misaligned_load_straddling_the_end_of_ram_faults() {
    let end = crate::devices::layout::RAM_BASE + (16 << 20);
    let m = fault(ld(A2, A0, 0), end - 4);
    assert_eq!(m.hart.s.csr.mcause, cause::LOAD_ACCESS);
    // The address of the part that faulted (privileged spec 3.1.16 allows either).
    let tval = m.hart.s.csr.mtval;
    assert!((end - 4..end + 4).contains(&tval), "mtval {tval:#x}");
}

#[test]
fn access_fault_tval_near_the_top_of_the_address_space() {
    // u64::MAX - 1 must not be mistaken for an internal marker.
    for addr in [u64::MAX - 1, u64::MAX - 7, u64::MAX] {
        let m = fault(lb(A2, A0, 0), addr);
        assert_eq!(m.hart.s.csr.mcause, cause::LOAD_ACCESS);
        assert_eq!(m.hart.s.csr.mtval, addr, "{addr:#x}");
        let m = fault(sb(A1, A0, 0), addr);
        assert_eq!(m.hart.s.csr.mcause, cause::STORE_ACCESS);
        assert_eq!(m.hart.s.csr.mtval, addr, "{addr:#x}");
    }
}
