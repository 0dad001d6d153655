//! Sv39 translation (privileged spec 4.3-4.4): page sizes, A/D updates, permission
//! faults, malformed PTEs and addresses, SFENCE.VMA and MPRV.

use crate::cpu::csr::{mstatus, num};
use crate::cpu::trap::cause;
use crate::devices::layout::RAM_BASE;
use crate::machine::Machine;
use crate::testutil::pte::*;
use crate::testutil::reg::*;
use crate::testutil::*;

/// Page tables: the root, one level-1 table (for VA 1 GiB..2 GiB) and one level-0
/// table under its entry 1 (VA 0x4020_0000..0x4040_0000).
const ROOT: u64 = RAM_BASE + 0x20_0000;
const L1: u64 = ROOT + 0x1000;
const L0: u64 = ROOT + 0x2000;
/// Physical pages the 4 KiB mappings point at.
const PAGES: u64 = RAM_BASE + 0x30_0000;

/// Physical page `k`.
fn page(k: u64) -> u64 {
    PAGES + k * 0x1000
}
/// The virtual address mapped by level-0 entry `k`.
fn va(k: u64) -> u64 {
    0x4020_0000 + k * 0x1000
}
/// A level-0 entry `k` as a (PTE address, value) pair.
fn leaf(k: u64, flags: u64) -> (u64, u64) {
    (L0 + 8 * k, pte(page(k), flags))
}

/// Run `body` at `prv` (0 = U, 1 = S) under Sv39 with the extra PTEs `ptes`. RAM is
/// identity-mapped by a 1 GiB page (with U for a U-mode body), devices likewise; a
/// U-mode body must end with ECALL. Any trap goes to M and halts.
fn run_sv39(prv: u64, ptes: &[(u64, u64)], body: impl FnOnce(&mut Asm)) -> Machine {
    let mut a = Asm::with_trap_halt();
    let start = a.label();
    a.li(T1, 8 << 60 | ROOT >> 12).i(csrw(num::SATP, T1));
    a.enter(prv, start);
    a.bind(start);
    body(&mut a);
    a.halt();
    let mut m = a.machine();
    let user = if prv == 0 { U } else { 0 };
    poke64(&mut m, ROOT, pte(0, V | R | W | A | D));
    poke64(&mut m, ROOT + 8, pte(L1, V));
    poke64(
        &mut m,
        ROOT + 16,
        pte(RAM_BASE, V | R | W | X | A | D | user),
    );
    poke64(&mut m, L1 + 8, pte(L0, V));
    for &(addr, v) in ptes {
        poke64(&mut m, addr, v);
    }
    for k in 0..16 {
        poke64(&mut m, page(k), 0x1000 + k);
    }
    run_to_halt(&mut m);
    m
}

/// Expect a trap to M with `cause` and `mtval`.
fn assert_fault(m: &Machine, want_cause: u64, tval: u64) {
    let c = &m.hart.s.csr;
    assert_eq!(
        (c.mcause, c.mtval),
        (want_cause, tval),
        "mepc {:#x}",
        c.mepc
    );
}

#[test]
fn four_kib_two_mib_and_one_gib_pages_translate() {
    let big = RAM_BASE + 0x60_0000; // 2 MiB aligned
    let ptes = [
        leaf(3, V | R | W | A | D),
        (L1, pte(big, V | R | W | A | D)),
        (ROOT + 24, pte(RAM_BASE, V | R | W | A | D)),
    ];
    let m = run_sv39(1, &ptes, |a| {
        a.li(A0, va(3) + 8)
            .li(A1, 0x4000_0000 + 0x1_2348)
            .li(A2, 0xc000_0000 + 0x30_3000);
        a.li(T1, 0x55).i(sd(T1, A0, 0)).i(sd(T1, A1, 0));
        a.i(ld(S0, A0, -8)).i(ld(S1, A2, 0)).i(ld(S2, A1, 0));
    });
    assert_eq!(m.hart.s.csr.mcause, 0, "no fault");
    assert_eq!(x(&m, S0), 0x1003, "4 KiB page");
    assert_eq!(x(&m, S1), 0x1003, "1 GiB page reaches the same frame");
    assert_eq!(x(&m, S2), 0x55);
    assert_eq!(peek64(&m, page(3) + 8), 0x55);
    assert_eq!(
        peek64(&m, big + 0x1_2348),
        0x55,
        "2 MiB page keeps va[20:12]"
    );
}

#[test]
fn hardware_sets_accessed_and_dirty() {
    let ptes = [leaf(1, V | R | W), leaf(2, V | R | W), leaf(3, V | R | W)];
    let m = run_sv39(1, &ptes, |a| {
        a.li(A0, va(1)).i(ld(S0, A0, 0));
        a.li(A0, va(2)).i(sd(ZERO, A0, 0));
        a.li(A0, va(3)).i(ld(S1, A0, 0)).i(sd(ZERO, A0, 0));
    });
    assert_eq!(m.hart.s.csr.mcause, 0);
    assert_eq!(peek64(&m, L0 + 8) & (A | D), A, "load: A only");
    assert_eq!(peek64(&m, L0 + 16) & (A | D), A | D, "store: A and D");
    assert_eq!(
        peek64(&m, L0 + 24) & (A | D),
        A | D,
        "load then store: D on the store"
    );
}

#[test]
fn permission_faults_have_the_right_cause_and_tval() {
    let m = run_sv39(1, &[leaf(1, V | R | A | D)], |a| {
        a.li(A0, va(1) + 8).i(sd(ZERO, A0, 0));
    });
    assert_fault(&m, cause::STORE_PAGE_FAULT, va(1) + 8);
    let m = run_sv39(1, &[leaf(1, V | X | A)], |a| {
        a.li(A0, va(1) + 4).i(lw(S0, A0, 0));
    });
    assert_fault(&m, cause::LOAD_PAGE_FAULT, va(1) + 4);
    let m = run_sv39(1, &[leaf(1, V | R | W | A | D)], |a| {
        a.li(A0, va(1) + 0x10).i(jalr(ZERO, A0, 0));
    });
    assert_fault(&m, cause::INSN_PAGE_FAULT, va(1) + 0x10);
    assert_eq!(m.hart.s.csr.mepc, va(1) + 0x10);
}

#[test]
fn mxr_makes_execute_only_pages_readable() {
    let m = run_sv39(1, &[leaf(1, V | X | A)], |a| {
        a.li(T1, mstatus::MXR).i(csrrs(ZERO, num::SSTATUS, T1));
        a.li(A0, va(1)).i(ld(S0, A0, 0));
    });
    assert_eq!(m.hart.s.csr.mcause, 0);
    assert_eq!(x(&m, S0), 0x1001);
}

#[test]
fn supervisor_access_to_user_pages_needs_sum_and_never_executes() {
    let user_page = [leaf(1, V | R | W | X | U | A | D)];
    let m = run_sv39(1, &user_page, |a| {
        a.li(A0, va(1)).i(ld(S0, A0, 0));
    });
    assert_fault(&m, cause::LOAD_PAGE_FAULT, va(1));
    let m = run_sv39(1, &user_page, |a| {
        a.li(T1, mstatus::SUM).i(csrrs(ZERO, num::SSTATUS, T1));
        a.li(A0, va(1)).i(ld(S0, A0, 0)).i(sd(S0, A0, 8));
    });
    assert_eq!(m.hart.s.csr.mcause, 0);
    assert_eq!(x(&m, S0), 0x1001);
    let m = run_sv39(1, &user_page, |a| {
        a.li(T1, mstatus::SUM).i(csrrs(ZERO, num::SSTATUS, T1));
        a.li(A0, va(1)).i(jalr(ZERO, A0, 0));
    });
    assert_fault(&m, cause::INSN_PAGE_FAULT, va(1));
}

#[test]
fn user_access_to_supervisor_pages_faults() {
    let m = run_sv39(
        0,
        &[leaf(1, V | R | W | U | A | D), leaf(2, V | R | W | A | D)],
        |a| {
            a.li(A0, va(1)).i(ld(S0, A0, 0));
            a.li(A0, va(2)).i(ld(S1, A0, 0)).i(ECALL);
        },
    );
    assert_eq!(x(&m, S0), 0x1001, "U page readable from U");
    assert_fault(&m, cause::LOAD_PAGE_FAULT, va(2));
}

#[test]
fn malformed_ptes_fault() {
    let cases = [
        (leaf(1, R | W | A | D), "not valid"),
        (leaf(1, V | W | A | D), "W without R"),
        (leaf(1, V | R | A | D | 1 << 60), "reserved bit 60"),
        (leaf(1, V | R | A | D | 1 << 54), "reserved bit 54"),
        (leaf(1, V), "pointer at level 0"),
        ((L1 + 8, pte(L0, V | A)), "non-leaf with A set"),
    ];
    for (p, what) in cases {
        let m = run_sv39(1, &[p], |a| {
            a.li(A0, va(1)).i(ld(S0, A0, 0));
        });
        assert_eq!(m.hart.s.csr.mcause, cause::LOAD_PAGE_FAULT, "{what}");
        assert_eq!(m.hart.s.csr.mtval, va(1), "{what}");
    }
}

#[test]
fn misaligned_superpage_faults() {
    // A 2 MiB leaf whose PPN is only 4 KiB aligned.
    let m = run_sv39(
        1,
        &[(L1 + 16, pte(RAM_BASE + 0x60_1000, V | R | A | D))],
        |a| {
            a.li(A0, 0x4040_0000).i(ld(S0, A0, 0));
        },
    );
    assert_fault(&m, cause::LOAD_PAGE_FAULT, 0x4040_0000);
}

#[test]
fn non_canonical_addresses_fault() {
    for addr in [
        0x0000_0080_0000_0000,
        0xffff_ff7f_ffff_f000,
        0x8000_0000_8000_0000,
    ] {
        let m = run_sv39(1, &[], |a| {
            a.li(A0, addr).i(sd(ZERO, A0, 0));
        });
        assert_fault(&m, cause::STORE_PAGE_FAULT, addr);
    }
}

#[test]
fn misaligned_access_into_an_unmapped_page_faults_without_writing() {
    let m = run_sv39(
        1,
        &[leaf(1, V | R | W | A | D), leaf(2, V | R | A | D)],
        |a| {
            a.li(A0, va(2) - 4).li(T1, -1i64 as u64).i(sd(T1, A0, 0));
        },
    );
    assert_eq!(m.hart.s.csr.mcause, cause::STORE_PAGE_FAULT);
    let tval = m.hart.s.csr.mtval;
    assert!((va(2) - 4..va(2) + 4).contains(&tval), "mtval {tval:#x}");
    assert_eq!(peek64(&m, page(1) + 0xff8), 0, "no partial store");
}

#[test]
fn sfence_vma_makes_a_changed_pte_take_effect() {
    let m = run_sv39(1, &[leaf(1, V | R | A | D)], |a| {
        a.li(A0, va(1)).i(ld(S0, A0, 0));
        // Point the entry at page 5 (the tables are identity-mapped in RAM).
        a.li(A1, L0 + 8)
            .li(T1, pte(page(5), V | R | A | D))
            .i(sd(T1, A1, 0));
        a.i(sfence_vma(ZERO, ZERO)).i(ld(S1, A0, 0));
        a.li(T1, pte(page(6), V | R | A | D)).i(sd(T1, A1, 0));
        a.i(sfence_vma(A0, ZERO)).i(ld(S2, A0, 0));
    });
    assert_eq!(m.hart.s.csr.mcause, 0);
    assert_eq!(x(&m, S0), 0x1001);
    assert_eq!(x(&m, S1), 0x1005, "after sfence.vma zero,zero");
    assert_eq!(x(&m, S2), 0x1006, "after sfence.vma va");
}

#[test]
fn mprv_translates_m_mode_data_accesses_with_mpp() {
    let mut a = Asm::with_trap_halt();
    a.li(T1, 8 << 60 | ROOT >> 12).i(csrw(num::SATP, T1));
    a.li(T1, mstatus::MPRV | 1 << mstatus::MPP_SHIFT)
        .i(csrrs(ZERO, num::MSTATUS, T1));
    a.li(A0, va(1)).i(ld(S0, A0, 0)); // as S: mapped
    a.li(T1, mstatus::MPP).i(csrrc(ZERO, num::MSTATUS, T1)); // MPP = U
    let at = a.here();
    a.i(ld(S1, A0, 0)); // as U: S page, faults
    a.halt();
    let mut m = a.machine();
    poke64(&mut m, ROOT + 8, pte(L1, V));
    poke64(&mut m, L1 + 8, pte(L0, V));
    let (addr, v) = leaf(1, V | R | A | D);
    poke64(&mut m, addr, v);
    poke64(&mut m, page(1), 0xabcd);
    run_to_halt(&mut m);
    assert_eq!(
        x(&m, S0),
        0xabcd,
        "fetches stay untranslated, the load is translated"
    );
    assert_fault(&m, cause::LOAD_PAGE_FAULT, va(1));
    assert_eq!(m.hart.s.csr.mepc, at);
}
