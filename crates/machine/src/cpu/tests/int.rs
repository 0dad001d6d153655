//! Integer computation: RV64I and M (unprivileged spec ch. 2, 5, 7).

use crate::testutil::reg::*;
use crate::testutil::*;

const MIN: u64 = 1 << 63;
const MAX: u64 = MIN - 1;

/// Run `op rd=a0, rs1=a1, rs2=a2` on each pair and return the results.
fn binop(op: fn(u32, u32, u32) -> u32, pairs: &[(u64, u64)]) -> Vec<u64> {
    pairs
        .iter()
        .map(|&(l, r)| {
            let mut a = Asm::new();
            a.li(A1, l).li(A2, r).i(op(A0, A1, A2)).halt();
            x(&a.run(), A0)
        })
        .collect()
}

fn check(name: &str, op: fn(u32, u32, u32) -> u32, cases: &[(u64, u64, u64)]) {
    let pairs: Vec<_> = cases.iter().map(|&(l, r, _)| (l, r)).collect();
    for (&(l, r, want), got) in cases.iter().zip(binop(op, &pairs)) {
        assert_eq!(got, want, "{name} {l:#x}, {r:#x}");
    }
}

#[test]
fn add_and_sub_wrap() {
    check(
        "add",
        add,
        &[(MAX, 1, MIN), (u64::MAX, 1, 0), (MIN, MIN, 0)],
    );
    check(
        "sub",
        sub,
        &[(MIN, 1, MAX), (0, 1, u64::MAX), (5, 7, (-2i64) as u64)],
    );
}

#[test]
fn register_shifts_use_the_low_six_bits() {
    let v = 0x8000_0000_0000_0001;
    check(
        "sll",
        sll,
        &[
            (v, 63, 1 << 63),
            (v, 64, v),
            (v, 65, 2),
            (1, u64::MAX, 1 << 63),
        ],
    );
    check("srl", srl, &[(v, 63, 1), (v, 64, v), (v, 0x7f, 1)]);
    check(
        "sra",
        sra,
        &[
            (v, 63, u64::MAX),
            (v, 64, v),
            (MIN, 1, 0xc000_0000_0000_0000),
        ],
    );
}

#[test]
fn word_forms_sign_extend_and_mask_shifts_to_five_bits() {
    let sx = |v: u32| v as i32 as i64 as u64;
    check(
        "addw",
        addw,
        &[
            (0x7fff_ffff, 1, sx(0x8000_0000)),
            (0xffff_ffff_0000_0001, 0, 1),
        ],
    );
    check(
        "subw",
        subw,
        &[(0, 1, u64::MAX), (0x1_8000_0000, 1, 0x7fff_ffff)],
    );
    check(
        "sllw",
        sllw,
        &[
            (1, 31, sx(0x8000_0000)),
            (1, 32, 1),
            (3, 63, sx(0x8000_0000)),
        ],
    );
    check(
        "srlw",
        srlw,
        &[
            (0xffff_ffff_8000_0000, 31, 1),
            (0x8000_0000, 0, sx(0x8000_0000)),
        ],
    );
    check(
        "sraw",
        sraw,
        &[
            (0x8000_0000, 31, u64::MAX),
            (0x8000_0000, 32, sx(0x8000_0000)),
        ],
    );
    check(
        "mulw",
        mulw,
        &[(0x10000, 0x10000, 0), (0x7fff_ffff, 2, u64::MAX - 1)],
    );

    let mut a = Asm::new();
    a.li(A1, 0x7fff_ffff).i(addiw(A0, A1, 1));
    a.li(A2, 0x1_0000_0001)
        .i(slliw(A3, A2, 31))
        .i(srliw(A4, A2, 0))
        .i(sraiw(A5, A3, 31));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, A0), sx(0x8000_0000));
    assert_eq!(x(&m, A3), sx(0x8000_0000));
    assert_eq!(x(&m, A4), 1);
    assert_eq!(x(&m, A5), u64::MAX);
}

#[test]
fn immediate_shifts_reach_63() {
    let mut a = Asm::new();
    a.li(A1, 0x8000_0000_0000_0001);
    a.i(slli(A2, A1, 63))
        .i(srli(A3, A1, 63))
        .i(srai(A4, A1, 63))
        .i(srai(A5, A1, 0));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, A2), 1 << 63);
    assert_eq!(x(&m, A3), 1);
    assert_eq!(x(&m, A4), u64::MAX);
    assert_eq!(x(&m, A5), 0x8000_0000_0000_0001);
}

#[test]
fn set_less_than_signed_and_unsigned() {
    check(
        "slt",
        slt,
        &[(u64::MAX, 0, 1), (0, u64::MAX, 0), (MIN, MAX, 1), (5, 5, 0)],
    );
    check(
        "sltu",
        sltu,
        &[(u64::MAX, 0, 0), (0, u64::MAX, 1), (MIN, MAX, 0), (5, 5, 0)],
    );
    let mut a = Asm::new();
    a.li(A1, u64::MAX);
    a.i(slti(A2, A1, 0))
        .i(sltiu(A3, A1, -1))
        .i(sltiu(A4, ZERO, -1))
        .i(sltiu(A5, A1, 1));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, A2), 1, "-1 < 0");
    assert_eq!(
        x(&m, A3),
        0,
        "sltiu compares against the sign-extended immediate"
    );
    assert_eq!(x(&m, A4), 1, "0 <u 0xffff...");
    assert_eq!(x(&m, A5), 0);
}

#[test]
fn multiply_high_on_signed_extremes() {
    check("mul", mul, &[(MIN, u64::MAX, MIN), (MAX, 2, u64::MAX - 1)]);
    check(
        "mulh",
        mulh,
        &[
            (MIN, MIN, 1 << 62),
            (MIN, u64::MAX, 0),
            (MAX, MAX, 0x3fff_ffff_ffff_ffff),
            (u64::MAX, 1, u64::MAX),
        ],
    );
    // rs1 signed, rs2 unsigned: -1 * (2^64 - 1) = -(2^64) + 1 -> high word -1;
    // -2^63 * (2^64 - 1) = -2^127 + 2^63 -> high word 0x8000...
    check(
        "mulhsu",
        mulhsu,
        &[
            (u64::MAX, u64::MAX, u64::MAX),
            (MIN, u64::MAX, MIN),
            (1, u64::MAX, 0),
            (MAX, 2, 0),
        ],
    );
    check(
        "mulhu",
        mulhu,
        &[
            (u64::MAX, u64::MAX, u64::MAX - 1),
            (MIN, 2, 1),
            (MIN, MIN, 1 << 62),
        ],
    );
}

#[test]
fn division_by_zero_and_overflow() {
    check(
        "div",
        div,
        &[
            (7, 0, u64::MAX),
            (MIN, u64::MAX, MIN),
            ((-7i64) as u64, 2, (-3i64) as u64),
        ],
    );
    check("divu", divu, &[(7, 0, u64::MAX), (u64::MAX, 2, MAX)]);
    check(
        "rem",
        rem,
        &[(7, 0, 7), (MIN, u64::MAX, 0), ((-7i64) as u64, 2, u64::MAX)],
    );
    check("remu", remu, &[(7, 0, 7), (u64::MAX, 10, 5)]);
    let sx = |v: u32| v as i32 as i64 as u64;
    check(
        "divw",
        divw,
        &[(7, 0, u64::MAX), (0x8000_0000, u64::MAX, sx(0x8000_0000))],
    );
    check(
        "divuw",
        divuw,
        &[(7, 0, u64::MAX), (0x1_ffff_fffe, 1, u64::MAX - 1)],
    );
    check(
        "remw",
        remw,
        &[(0x1_0000_0007, 0, 7), (0x8000_0000, u64::MAX, 0)],
    );
    check(
        "remuw",
        remuw,
        &[(0xffff_ffff, 0, u64::MAX), (0x1_0000_0007, 4, 3)],
    );
}

#[test]
fn x0_is_never_written() {
    let mut a = Asm::new();
    let next = a.label();
    a.li(A1, 5).li(A2, crate::devices::layout::RAM_BASE);
    a.i(addi(ZERO, A1, 1))
        .i(add(ZERO, A1, A1))
        .i(lui(ZERO, 0x12345));
    a.i(mul(ZERO, A1, A1))
        .i(csrr(ZERO, 0xc00))
        .i(auipc(ZERO, 1));
    a.i(ld(ZERO, A2, 0)).j(next);
    a.bind(next);
    a.i(add(A3, ZERO, ZERO)).i(addi(A4, ZERO, 0));
    a.halt();
    let m = a.run();
    assert_eq!(m.hart.s.x[0], 0);
    assert_eq!(x(&m, A3), 0);
    assert_eq!(x(&m, A4), 0);
}

#[test]
fn jumps_link_and_clear_bit_zero() {
    let mut a = Asm::new();
    let (f, after) = (a.label(), a.label());
    a.la(A1, f);
    a.i(addi(A1, A1, 1)); // odd target: JALR clears bit 0
    a.i(jalr(RA, A1, 0));
    let ret = a.here();
    a.j(after);
    a.bind(f);
    a.i(addi(A0, ZERO, 42)).i(jalr(ZERO, RA, 0));
    a.bind(after);
    a.i(auipc(A2, 0));
    let auipc_at = a.here() - 4;
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, A0), 42);
    assert_eq!(x(&m, RA), ret);
    assert_eq!(x(&m, A2), auipc_at);
}
