//! NaNs, NaN-boxing, min/max, compares, classification, fused multiply-add, sign injection.

use super::*;
use crate::cpu::fp::flags::{NV, NX};
#[test]
fn nan_results_are_canonical() {
    let add_s = arith(ArithOp::Add, Fmt::S, DYN);
    let add_d = arith(ArithOp::Add, Fmt::D, DYN);
    assert_eq!(
        run_f(add_s, &[s(S_QNAN_PAYLOAD), s(S_ONE)]),
        (BOXED_NAN_S, 0, 0)
    );
    assert_eq!(run_f(add_s, &[s(S_ONE), s(S_SNAN)]), (BOXED_NAN_S, 0, NV));
    assert_eq!(
        run_f(add_s, &[s(0xffc0_0001), s(S_ONE)]),
        (BOXED_NAN_S, 0, 0)
    );
    assert_eq!(
        run_f(add_d, &[D_QNAN_PAYLOAD, D_ONE]),
        (CANONICAL_NAN_D, 0, 0)
    );
    assert_eq!(
        run_f(add_d, &[D_SNAN, D_QNAN_PAYLOAD]),
        (CANONICAL_NAN_D, 0, NV)
    );
    let cvt_ds = FpInsn::CvtFmt {
        fmt: Fmt::D,
        rd: RD,
        rs1: A,
        rm: DYN,
    };
    let cvt_sd = FpInsn::CvtFmt {
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rm: DYN,
    };
    assert_eq!(run_f(cvt_ds, &[s(S_SNAN)]), (CANONICAL_NAN_D, 0, NV));
    assert_eq!(run_f(cvt_ds, &[s(S_QNAN_PAYLOAD)]), (CANONICAL_NAN_D, 0, 0));
    assert_eq!(run_f(cvt_sd, &[D_QNAN_PAYLOAD]), (BOXED_NAN_S, 0, 0));
    // Sign injection is a bit operation and keeps payloads (spec 11.6).
    let neg = FpInsn::Sgnj {
        op: SgnjOp::Sgnjn,
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rs2: A,
    };
    assert_eq!(run_f(neg, &[s(S_QNAN_PAYLOAD)]), (s(0xffc1_2345), 0, 0));
    let abs = FpInsn::Sgnj {
        op: SgnjOp::Sgnjx,
        fmt: Fmt::D,
        rd: RD,
        rs1: A,
        rs2: A,
    };
    assert_eq!(run_f(abs, &[D_SNAN | 1 << 63]), (D_SNAN, 0, 0));
}

#[test]
fn improperly_boxed_singles_read_as_canonical_nan() {
    let unboxed = 0x0000_0000_3f80_0000; // 1.0 without its box
    let half_boxed = 0xffff_fffe_3f80_0000;
    for bad in [unboxed, half_boxed] {
        // Quiet NaN operand: no NV.
        assert_eq!(
            run_f(arith(ArithOp::Add, Fmt::S, DYN), &[bad, s(S_ONE)]),
            (BOXED_NAN_S, 0, 0)
        );
        let class = FpInsn::Class {
            fmt: Fmt::S,
            rd: RD,
            rs1: A,
        };
        assert_eq!(run_f(class, &[bad]).1, 1 << 9);
        let sgnjn = FpInsn::Sgnj {
            op: SgnjOp::Sgnjn,
            fmt: Fmt::S,
            rd: RD,
            rs1: A,
            rs2: B,
        };
        assert_eq!(run_f(sgnjn, &[bad, s(S_ONE)]), (s(0xffc0_0000), 0, 0));
        let cvt = FpInsn::CvtFmt {
            fmt: Fmt::D,
            rd: RD,
            rs1: A,
            rm: DYN,
        };
        assert_eq!(run_f(cvt, &[bad]), (CANONICAL_NAN_D, 0, 0));
        // minNum ignores the (quiet) NaN.
        assert_eq!(
            run_f(minmax(false, Fmt::S), &[bad, s(S_TWO)]),
            (s(S_TWO), 0, 0)
        );
    }
    // FMV.X.W moves the raw low bits, box or no box.
    let mv = FpInsn::MvToInt {
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
    };
    assert_eq!(run_f(mv, &[unboxed]).1, 0x3f80_0000);
}

#[test]
fn min_max() {
    let (min_s, max_s, min_d, max_d) = (
        minmax(false, Fmt::S),
        minmax(true, Fmt::S),
        minmax(false, Fmt::D),
        minmax(true, Fmt::D),
    );
    let (pz, nz) = (s(0), s(0x8000_0000));
    // -0.0 < +0.0 in either operand order.
    assert_eq!(run_f(min_s, &[pz, nz]).0, nz);
    assert_eq!(run_f(min_s, &[nz, pz]).0, nz);
    assert_eq!(run_f(max_s, &[pz, nz]).0, pz);
    assert_eq!(run_f(max_s, &[nz, pz]).0, pz);
    assert_eq!(run_f(min_d, &[0, 1 << 63]).0, 1 << 63);
    assert_eq!(run_f(max_d, &[1 << 63, 0]).0, 0);
    // Ordinary values.
    assert_eq!(run_f(min_s, &[s(S_TWO), s(S_ONE)]), (s(S_ONE), 0, 0));
    assert_eq!(
        run_f(max_d, &[D_NONE, 0xc000_0000_0000_0000]),
        (D_NONE, 0, 0)
    );
    assert_eq!(run_f(max_s, &[s(S_NINF), s(S_INF)]), (s(S_INF), 0, 0));
    // One NaN: the other operand; NV only if that NaN signals.
    assert_eq!(
        run_f(min_s, &[s(S_QNAN_PAYLOAD), s(S_ONE)]),
        (s(S_ONE), 0, 0)
    );
    assert_eq!(run_f(max_s, &[s(S_ONE), s(S_SNAN)]), (s(S_ONE), 0, NV));
    assert_eq!(run_f(min_d, &[D_SNAN, D_NONE]), (D_NONE, 0, NV));
    // Both NaN: the canonical NaN.
    assert_eq!(
        run_f(max_s, &[s(S_QNAN_PAYLOAD), s(S_QNAN_PAYLOAD)]),
        (BOXED_NAN_S, 0, 0)
    );
    assert_eq!(
        run_f(min_d, &[D_QNAN_PAYLOAD, D_SNAN]),
        (CANONICAL_NAN_D, 0, NV)
    );
}

#[test]
fn compares() {
    use CmpOp::*;
    let r = |op, fmt, a, b| {
        let (_, x, fl) = run_f(cmp(op, fmt), &[a, b]);
        (x, fl)
    };
    assert_eq!(r(Lt, Fmt::S, s(S_ONE), s(S_TWO)), (1, 0));
    assert_eq!(r(Lt, Fmt::S, s(S_TWO), s(S_ONE)), (0, 0));
    assert_eq!(r(Le, Fmt::D, D_ONE, D_ONE), (1, 0));
    // +0 == -0.
    assert_eq!(r(Eq, Fmt::S, s(0), s(0x8000_0000)), (1, 0));
    assert_eq!(r(Lt, Fmt::D, 1 << 63, 0), (0, 0));
    assert_eq!(r(Le, Fmt::D, 1 << 63, 0), (1, 0));
    // FEQ is quiet: NV only for signaling NaNs. FLT/FLE signal on any NaN (spec 11.8).
    assert_eq!(r(Eq, Fmt::S, s(S_QNAN_PAYLOAD), s(S_QNAN_PAYLOAD)), (0, 0));
    assert_eq!(r(Eq, Fmt::S, s(S_ONE), s(S_SNAN)), (0, NV));
    assert_eq!(r(Eq, Fmt::D, D_QNAN_PAYLOAD, D_ONE), (0, 0));
    assert_eq!(r(Lt, Fmt::S, s(S_QNAN_PAYLOAD), s(S_ONE)), (0, NV));
    assert_eq!(r(Le, Fmt::D, D_ONE, D_QNAN_PAYLOAD), (0, NV));
    assert_eq!(r(Lt, Fmt::D, D_SNAN, D_ONE), (0, NV));
    // Results go to x registers; x0 stays zero.
    let mut h = Hart::new();
    h.f[usize::from(A)] = D_ONE;
    h.f[usize::from(B)] = D_ONE;
    let eff = h
        .run(FpInsn::Cmp {
            op: Eq,
            fmt: Fmt::D,
            rd: 0,
            rs1: A,
            rs2: B,
        })
        .unwrap();
    assert_eq!((h.x[0], eff), (0, FpEffect::default()));
}

#[test]
fn fclass_all_ten_classes() {
    let singles = [
        S_NINF,
        0xbf80_0000,
        0x8000_0001,
        0x8000_0000,
        0x0000_0000,
        0x0000_0001,
        S_ONE,
        S_INF,
        S_SNAN,
        0x7fc0_0000,
    ];
    let doubles = [
        D_NINF,
        D_NONE,
        0x800f_ffff_ffff_ffff,
        1 << 63,
        0,
        0x0000_0000_0000_0001,
        0x7fef_ffff_ffff_ffff,
        D_INF,
        0x7ff7_ffff_ffff_ffff,
        D_QNAN_PAYLOAD,
    ];
    for (bit, (sv, dv)) in singles.into_iter().zip(doubles).enumerate() {
        let class = |fmt| FpInsn::Class {
            fmt,
            rd: RD,
            rs1: A,
        };
        assert_eq!(
            run_f(class(Fmt::S), &[s(sv)]),
            (0, 1 << bit, 0),
            "single {sv:#x}"
        );
        assert_eq!(
            run_f(class(Fmt::D), &[dv]),
            (0, 1 << bit, 0),
            "double {dv:#x}"
        );
    }
}

#[test]
fn fused_multiply_add() {
    use FmaOp::*;
    let (one, two, three) = (s(S_ONE), s(S_TWO), s(0x4040_0000));
    assert_eq!(
        run_f(fma(Madd, Fmt::S, DYN), &[one, two, three]).0,
        s(0x40a0_0000)
    ); // 5
    assert_eq!(
        run_f(fma(Msub, Fmt::S, DYN), &[one, two, three]).0,
        s(0xbf80_0000)
    ); // -1
    assert_eq!(
        run_f(fma(Nmsub, Fmt::S, DYN), &[one, two, three]).0,
        s(S_ONE)
    ); // 1
    assert_eq!(
        run_f(fma(Nmadd, Fmt::S, DYN), &[one, two, three]).0,
        s(0xc0a0_0000)
    ); // -5
       // -(+0 * 1) - (+0) is -0; (+0 * 1) - (+0) is +0, or -0 rounding down.
    assert_eq!(run_f(fma(Nmadd, Fmt::D, RNE), &[0, D_ONE, 0]).0, 1 << 63);
    assert_eq!(run_f(fma(Msub, Fmt::D, RNE), &[0, D_ONE, 0]).0, 0);
    assert_eq!(run_f(fma(Msub, Fmt::D, RDN), &[0, D_ONE, 0]).0, 1 << 63);
    // One rounding: (1 + 2^-12)^2 - (1 + 2^-11) = 2^-24 exactly, whereas a separate
    // multiply rounds the 2^-24 away (a tie to even) and the add then gives 0.
    let (a, c) = (s(0x3f80_0800), s(0xbf80_1000));
    assert_eq!(
        run_f(fma(Madd, Fmt::S, RNE), &[a, a, c]),
        (s(0x3380_0000), 0, 0)
    );
    let mut h = Hart::new();
    h.f[usize::from(A)] = a;
    h.f[usize::from(B)] = c;
    h.run(FpInsn::Arith {
        op: ArithOp::Mul,
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rs2: A,
        rm: RNE,
    })
    .unwrap();
    h.run(FpInsn::Arith {
        op: ArithOp::Add,
        fmt: Fmt::S,
        rd: RD,
        rs1: RD,
        rs2: B,
        rm: RNE,
    })
    .unwrap();
    assert_eq!((h.f[usize::from(RD)], h.fflags), (s(0), NX));
    // 0 * inf + qNaN is invalid even though c is a quiet NaN (spec 11.6).
    assert_eq!(
        run_f(fma(Madd, Fmt::S, DYN), &[s(0), s(S_INF), s(S_QNAN_PAYLOAD)]),
        (BOXED_NAN_S, 0, NV)
    );
    assert_eq!(
        run_f(fma(Nmadd, Fmt::D, DYN), &[D_INF, 0, D_QNAN_PAYLOAD]),
        (CANONICAL_NAN_D, 0, NV)
    );
    // Otherwise a quiet NaN propagates quietly, a signaling one raises NV.
    assert_eq!(
        run_f(fma(Madd, Fmt::D, DYN), &[D_ONE, D_ONE, D_QNAN_PAYLOAD]),
        (CANONICAL_NAN_D, 0, 0)
    );
    assert_eq!(
        run_f(fma(Msub, Fmt::D, DYN), &[D_ONE, D_ONE, D_SNAN]),
        (CANONICAL_NAN_D, 0, NV)
    );
    // inf - inf inside the fused operation.
    assert_eq!(
        run_f(fma(Msub, Fmt::S, DYN), &[s(S_INF), one, s(S_INF)]),
        (BOXED_NAN_S, 0, NV)
    );
}

#[test]
fn sign_injection() {
    use SgnjOp::*;
    let sgnj = |op| FpInsn::Sgnj {
        op,
        fmt: Fmt::D,
        rd: RD,
        rs1: A,
        rs2: B,
    };
    let neg_two = 0xc000_0000_0000_0000;
    assert_eq!(run_f(sgnj(Sgnj), &[D_ONE, neg_two]).0, D_NONE);
    assert_eq!(run_f(sgnj(Sgnjn), &[D_ONE, neg_two]).0, D_ONE);
    assert_eq!(run_f(sgnj(Sgnjx), &[D_NONE, neg_two]).0, D_ONE);
    assert_eq!(run_f(sgnj(Sgnjx), &[D_NONE, D_ONE]).0, D_NONE);
    let sgnj_s = FpInsn::Sgnj {
        op: Sgnj,
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rs2: B,
    };
    assert_eq!(
        run_f(sgnj_s, &[s(S_ONE), s(0x8000_0000)]),
        (s(0xbf80_0000), 0, 0)
    );
}
