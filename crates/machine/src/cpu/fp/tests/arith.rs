//! Arithmetic, rounding modes, overflow and underflow.

use super::*;
use crate::cpu::fp::flags::{DZ, NV, NX, OF, UF};
#[test]
fn arithmetic_basics() {
    use ArithOp::*;
    assert_eq!(
        run_f(arith(Add, Fmt::S, DYN), &[s(S_ONE), s(S_TWO)]),
        (s(0x4040_0000), 0, 0)
    );
    assert_eq!(
        run_f(arith(Sub, Fmt::D, DYN), &[D_ONE, 0x4000_0000_0000_0000]),
        (D_NONE, 0, 0)
    );
    assert_eq!(
        run_f(arith(Mul, Fmt::S, DYN), &[s(0x4040_0000), s(S_TWO)]),
        (s(0x40c0_0000), 0, 0)
    );
    // x / 0 is DZ with a signed infinity; 0 / 0 is NV with the canonical NaN.
    assert_eq!(
        run_f(arith(Div, Fmt::S, DYN), &[s(S_ONE), s(0)]),
        (s(S_INF), 0, DZ)
    );
    assert_eq!(
        run_f(arith(Div, Fmt::D, DYN), &[D_NONE, 0]),
        (D_NINF, 0, DZ)
    );
    assert_eq!(
        run_f(arith(Div, Fmt::D, DYN), &[0, 0]),
        (CANONICAL_NAN_D, 0, NV)
    );
    // inf - inf.
    assert_eq!(
        run_f(arith(Sub, Fmt::S, DYN), &[s(S_INF), s(S_INF)]),
        (BOXED_NAN_S, 0, NV)
    );
    // x - x is +0 except when rounding down (IEEE 754 6.3).
    assert_eq!(run_f(arith(Sub, Fmt::D, RNE), &[D_ONE, D_ONE]), (0, 0, 0));
    assert_eq!(
        run_f(arith(Sub, Fmt::D, RDN), &[D_ONE, D_ONE]),
        (1 << 63, 0, 0)
    );
}

#[test]
fn sqrt() {
    let sqrt = |fmt| FpInsn::Sqrt {
        fmt,
        rd: RD,
        rs1: A,
        rm: DYN,
    };
    assert_eq!(run_f(sqrt(Fmt::S), &[s(S_TWO)]), (s(0x3fb5_04f3), 0, NX));
    assert_eq!(
        run_f(sqrt(Fmt::D), &[0x4010_0000_0000_0000]),
        (0x4000_0000_0000_0000, 0, 0)
    );
    assert_eq!(
        run_f(sqrt(Fmt::S), &[s(0x8000_0000)]),
        (s(0x8000_0000), 0, 0)
    );
    assert_eq!(run_f(sqrt(Fmt::D), &[D_NONE]), (CANONICAL_NAN_D, 0, NV));
}

#[test]
fn all_rounding_modes_on_thirds() {
    let third_s = |rm, num| run_f(arith(ArithOp::Div, Fmt::S, rm), &[s(num), s(0x4040_0000)]);
    // 1/3 = 0x3eaaaaaa + 2/3 ulp.
    let expect = [
        (RNE, 0x3eaa_aaab),
        (RTZ, 0x3eaa_aaaa),
        (RDN, 0x3eaa_aaaa),
        (RUP, 0x3eaa_aaab),
        (RMM, 0x3eaa_aaab),
    ];
    for (rm, bits) in expect {
        assert_eq!(third_s(rm, S_ONE), (s(bits), 0, NX), "1/3 rm {rm}");
    }
    let expect = [
        (RNE, 0xbeaa_aaab),
        (RTZ, 0xbeaa_aaaa),
        (RDN, 0xbeaa_aaab),
        (RUP, 0xbeaa_aaaa),
        (RMM, 0xbeaa_aaab),
    ];
    for (rm, bits) in expect {
        assert_eq!(third_s(rm, 0xbf80_0000), (s(bits), 0, NX), "-1/3 rm {rm}");
    }
    // Double 1/3 = 0x3fd5555555555555 + 1/3 ulp.
    let lo = 0x3fd5_5555_5555_5555;
    for (rm, bits) in [(RNE, lo), (RTZ, lo), (RDN, lo), (RUP, lo + 1), (RMM, lo)] {
        let r = run_f(
            arith(ArithOp::Div, Fmt::D, rm),
            &[D_ONE, 0x4008_0000_0000_0000],
        );
        assert_eq!(r, (bits, 0, NX), "1/3 rm {rm}");
    }
}

#[test]
fn ties() {
    // 1 + 2^-24 is exactly halfway between 1.0 and its successor: RNE keeps the even
    // 1.0, RMM goes away from zero.
    let half_ulp = s(0x3380_0000);
    let expect = [
        (RNE, S_ONE),
        (RTZ, S_ONE),
        (RDN, S_ONE),
        (RUP, S_ONE + 1),
        (RMM, S_ONE + 1),
    ];
    for (rm, bits) in expect {
        let r = run_f(arith(ArithOp::Add, Fmt::S, rm), &[s(S_ONE), half_ulp]);
        assert_eq!(r, (s(bits), 0, NX), "1+2^-24 rm {rm}");
    }
    let neg_one = 0xbf80_0000;
    let expect = [
        (RNE, neg_one),
        (RTZ, neg_one),
        (RDN, neg_one + 1),
        (RUP, neg_one),
        (RMM, neg_one + 1),
    ];
    for (rm, bits) in expect {
        let r = run_f(arith(ArithOp::Sub, Fmt::S, rm), &[s(neg_one), half_ulp]);
        assert_eq!(r, (s(bits), 0, NX), "-1-2^-24 rm {rm}");
    }
}

#[test]
fn static_rm_overrides_frm_and_dyn_uses_it() {
    let mut h = Hart::new();
    h.f[usize::from(A)] = s(S_ONE);
    h.f[usize::from(B)] = s(0x4040_0000);
    h.frm = RUP;
    h.run(arith(ArithOp::Div, Fmt::S, RTZ)).unwrap();
    assert_eq!(h.f[usize::from(RD)], s(0x3eaa_aaaa));
    h.frm = RTZ;
    h.run(arith(ArithOp::Div, Fmt::S, DYN)).unwrap();
    assert_eq!(h.f[usize::from(RD)], s(0x3eaa_aaaa));
    h.frm = RUP;
    h.run(arith(ArithOp::Div, Fmt::S, DYN)).unwrap();
    assert_eq!(h.f[usize::from(RD)], s(0x3eaa_aaab));
}

#[test]
fn reserved_rounding_modes_are_illegal() {
    let insns = [
        arith(ArithOp::Add, Fmt::S, 5),
        FpInsn::Sqrt {
            fmt: Fmt::D,
            rd: RD,
            rs1: A,
            rm: 6,
        },
        fma(FmaOp::Madd, Fmt::D, 5),
        to_int(IntFmt::W, Fmt::S, 6),
        // Exact conversions still check rm, as Spike does.
        FpInsn::CvtFromInt {
            fmt: Fmt::D,
            int: IntFmt::W,
            rd: RD,
            rs1: A,
            rm: 5,
        },
        FpInsn::CvtFmt {
            fmt: Fmt::D,
            rd: RD,
            rs1: A,
            rm: 6,
        },
    ];
    for insn in insns {
        let mut h = Hart::new();
        h.f[usize::from(A)] = s(S_ONE);
        let before = h.f;
        assert!(h.run(insn).is_err(), "{insn}");
        assert_eq!((h.f, h.fflags), (before, 0), "{insn} changed state");
    }
    for frm in [5, 6, 7] {
        let mut h = Hart::new();
        h.frm = frm;
        assert_eq!(
            h.run(arith(ArithOp::Mul, Fmt::D, DYN)),
            Err(IllegalFp { rm: DYN, frm })
        );
        // A static rm does not look at frm.
        assert!(h.run(arith(ArithOp::Mul, Fmt::D, RNE)).is_ok());
    }
    // Instructions without an rm field never trap on frm.
    let mut h = Hart::new();
    h.frm = 5;
    assert!(h.run(minmax(false, Fmt::S)).is_ok());
    assert!(h
        .run(FpInsn::Sgnj {
            op: SgnjOp::Sgnj,
            fmt: Fmt::D,
            rd: RD,
            rs1: A,
            rs2: B
        })
        .is_ok());
}

#[test]
fn overflow_depends_on_rounding_mode() {
    // max * 2 overflows: to infinity when rounding away from zero in that direction,
    // to the largest finite value otherwise (IEEE 754 7.4).
    let flags = OF | NX;
    let expect = [
        (RNE, S_INF),
        (RTZ, S_MAX),
        (RDN, S_MAX),
        (RUP, S_INF),
        (RMM, S_INF),
    ];
    for (rm, bits) in expect {
        let r = run_f(arith(ArithOp::Mul, Fmt::S, rm), &[s(S_MAX), s(S_TWO)]);
        assert_eq!(r, (s(bits), 0, flags), "max*2 rm {rm}");
    }
    let neg_max = S_MAX | 0x8000_0000;
    let expect = [
        (RNE, S_NINF),
        (RTZ, neg_max),
        (RDN, S_NINF),
        (RUP, neg_max),
        (RMM, S_NINF),
    ];
    for (rm, bits) in expect {
        let r = run_f(arith(ArithOp::Mul, Fmt::S, rm), &[s(neg_max), s(S_TWO)]);
        assert_eq!(r, (s(bits), 0, flags), "-max*2 rm {rm}");
    }
    let d_max = 0x7fef_ffff_ffff_ffff;
    assert_eq!(
        run_f(arith(ArithOp::Add, Fmt::D, RNE), &[d_max, d_max]),
        (D_INF, 0, flags)
    );
    assert_eq!(
        run_f(arith(ArithOp::Add, Fmt::D, RTZ), &[d_max, d_max]),
        (d_max, 0, flags)
    );
}

#[test]
fn underflow() {
    let mul = |rm, a, b| run_f(arith(ArithOp::Mul, Fmt::S, rm), &[s(a), s(b)]);
    // An exact subnormal result is not an underflow: min normal * 0.5.
    assert_eq!(mul(RNE, 0x0080_0000, 0x3f00_0000), (s(0x0040_0000), 0, 0));
    // Half the smallest subnormal: a tie, to 0 (even) or up to the subnormal.
    assert_eq!(mul(RNE, 0x0000_0001, 0x3f00_0000), (s(0), 0, UF | NX));
    assert_eq!(mul(RUP, 0x0000_0001, 0x3f00_0000), (s(1), 0, UF | NX));
    // RISC-V detects tininess after rounding (spec 11.2): 2^-126 * (1 - 2^-25) rounds to
    // the smallest normal even with an unbounded exponent, so it is inexact but not tiny.
    let cvt = FpInsn::CvtFmt {
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rm: RNE,
    };
    assert_eq!(
        run_f(cvt, &[0x380f_ffff_f000_0000]),
        (s(0x0080_0000), 0, NX)
    );
    // ... while 2^-126 * (1 - 2^-24) is tiny after rounding too.
    let d = 0x380f_ffff_e000_0000;
    assert_eq!(run_f(cvt, &[d]), (s(0x0080_0000), 0, UF | NX));
}
