//! Conversions, moves and fflags accumulation.

use super::*;
use crate::cpu::fp::flags::{DZ, NV, NX, OF};
#[test]
fn fcvt_to_int_saturates() {
    use IntFmt::*;
    let cvt = |int, fmt, rm, v| {
        let (_, x, fl) = run_f(to_int(int, fmt, rm), &[v]);
        (x, fl)
    };
    const W_MAX: u64 = 0x7fff_ffff;
    const W_MIN: u64 = 0xffff_ffff_8000_0000;
    const ALL: u64 = u64::MAX;
    const L_MAX: u64 = 0x7fff_ffff_ffff_ffff;
    const L_MIN: u64 = 1 << 63;
    let (s3e9, sm3e9, s1e19) = (s(0x4f32_d05e), s(0xcf32_d05e), s(0x5f0a_c723));
    let d_m_half = 0xbfe0_0000_0000_0000;
    let cases = [
        // fcvt.w.s / fcvt.w.d: NaN and +inf/too large give the max, -inf/too small the min.
        (W, Fmt::S, RNE, s3e9, (W_MAX, NV)),
        (W, Fmt::S, RNE, sm3e9, (W_MIN, NV)),
        (W, Fmt::S, RNE, s(S_QNAN_PAYLOAD), (W_MAX, NV)),
        (W, Fmt::S, RNE, s(0xff80_0001), (W_MAX, NV)),
        (W, Fmt::D, RNE, D_INF, (W_MAX, NV)),
        (W, Fmt::D, RNE, D_NINF, (W_MIN, NV)),
        (W, Fmt::S, RNE, s(0xbfc0_0000), (ALL - 1, NX)), // -1.5 -> -2
        (W, Fmt::D, RNE, 0xc1e0_0000_0000_0000, (W_MIN, 0)), // -2^31 exactly
        (W, Fmt::D, RTZ, 0x41df_ffff_ffe0_0000, (W_MAX, NX)), // 2^31 - 0.5
        (W, Fmt::D, RNE, 0x41df_ffff_ffe0_0000, (W_MAX, NV)), // rounds to 2^31
        // fcvt.wu: negative gives 0; results are sign-extended.
        (Wu, Fmt::S, RNE, s3e9, (0xffff_ffff_b2d0_5e00, 0)),
        (Wu, Fmt::S, RNE, s(S_QNAN_PAYLOAD), (ALL, NV)),
        (Wu, Fmt::S, RNE, s(S_INF), (ALL, NV)),
        (Wu, Fmt::S, RNE, s(S_NINF), (0, NV)),
        (Wu, Fmt::D, RNE, D_NONE, (0, NV)),
        (Wu, Fmt::D, RTZ, d_m_half, (0, NX)),
        (Wu, Fmt::D, RDN, d_m_half, (0, NV)),
        (Wu, Fmt::D, RNE, 0x41f0_0000_0000_0000, (ALL, NV)), // 2^32
        // fcvt.l
        (L, Fmt::D, RNE, 0x43e0_0000_0000_0000, (L_MAX, NV)), // 2^63
        (L, Fmt::D, RNE, 0xc3e0_0000_0000_0000, (L_MIN, 0)),  // -2^63
        (L, Fmt::D, RNE, D_QNAN_PAYLOAD, (L_MAX, NV)),
        (L, Fmt::D, RNE, D_NINF, (L_MIN, NV)),
        (L, Fmt::S, RNE, s1e19, (L_MAX, NV)),
        (L, Fmt::S, RNE, s(S_SNAN), (L_MAX, NV)),
        (L, Fmt::S, RUP, s(0xbfc0_0000), (ALL, NX)), // -1.5 -> -1
        // fcvt.lu
        (Lu, Fmt::D, RNE, D_SNAN, (ALL, NV)),
        (Lu, Fmt::D, RNE, D_NONE, (0, NV)),
        (Lu, Fmt::D, RNE, 0x43f0_0000_0000_0000, (ALL, NV)), // 2^64
        (
            Lu,
            Fmt::D,
            RNE,
            0x43ef_ffff_ffff_ffff,
            (0xffff_ffff_ffff_f800, 0),
        ),
        (Lu, Fmt::S, RNE, s(S_NINF), (0, NV)),
        (Lu, Fmt::S, RNE, s1e19, (9_999_999_980_506_447_872, 0)),
    ];
    for (int, fmt, rm, v, want) in cases {
        assert_eq!(cvt(int, fmt, rm, v), want, "{}", to_int(int, fmt, rm));
    }
    // 2.5 in every rounding mode.
    let two_half = 0x4004_0000_0000_0000;
    for (rm, want) in [(RNE, 2), (RTZ, 2), (RDN, 2), (RUP, 3), (RMM, 3)] {
        assert_eq!(cvt(L, Fmt::D, rm, two_half), (want, NX), "rm {rm}");
    }
    // -0.0 converts to 0 exactly, even unsigned.
    assert_eq!(cvt(Wu, Fmt::S, RNE, s(0x8000_0000)), (0, 0));
    // x0 is never written.
    let mut h = Hart::new();
    h.f[usize::from(A)] = s(S_ONE);
    h.run(FpInsn::CvtToInt {
        int: L,
        fmt: Fmt::S,
        rd: 0,
        rs1: A,
        rm: RNE,
    })
    .unwrap();
    assert_eq!(h.x[0], 0);
}

#[test]
fn fcvt_from_int() {
    use IntFmt::*;
    assert_eq!(from_int(Fmt::S, W, DYN, u64::MAX), (s(0xbf80_0000), 0));
    // Only the low 32 bits count for .w/.wu.
    assert_eq!(from_int(Fmt::D, W, RNE, 0x1234_5678_ffff_ffff), (D_NONE, 0));
    assert_eq!(
        from_int(Fmt::S, Wu, DYN, 0xffff_ffff_0000_0001),
        (s(S_ONE), 0)
    );
    // 2^32 - 1 is not a single.
    assert_eq!(from_int(Fmt::S, Wu, RNE, u64::MAX), (s(0x4f80_0000), NX));
    assert_eq!(from_int(Fmt::S, Wu, RTZ, u64::MAX), (s(0x4f7f_ffff), NX));
    assert_eq!(
        from_int(Fmt::D, Wu, RNE, u64::MAX),
        (0x41ef_ffff_ffe0_0000, 0)
    );
    assert_eq!(from_int(Fmt::S, L, DYN, 1 << 63), (s(0xdf00_0000), 0));
    assert_eq!(from_int(Fmt::D, L, DYN, u64::MAX), (D_NONE, 0));
    assert_eq!(
        from_int(Fmt::D, Lu, RNE, u64::MAX),
        (0x43f0_0000_0000_0000, NX)
    );
    assert_eq!(
        from_int(Fmt::D, Lu, RTZ, u64::MAX),
        (0x43ef_ffff_ffff_ffff, NX)
    );
    assert_eq!(from_int(Fmt::D, Lu, DYN, 0), (0, 0));
}

#[test]
fn fcvt_between_formats() {
    let to_s = |rm| FpInsn::CvtFmt {
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rm,
    };
    let to_d = FpInsn::CvtFmt {
        fmt: Fmt::D,
        rd: RD,
        rs1: A,
        rm: DYN,
    };
    let third = 0x3fd5_5555_5555_5555;
    assert_eq!(run_f(to_s(RNE), &[third]), (s(0x3eaa_aaab), 0, NX));
    assert_eq!(run_f(to_s(RTZ), &[third]), (s(0x3eaa_aaaa), 0, NX));
    let big = 0x7e37_e43c_8800_759c; // 1e300
    assert_eq!(run_f(to_s(RNE), &[big]), (s(S_INF), 0, OF | NX));
    assert_eq!(run_f(to_s(RTZ), &[big]), (s(S_MAX), 0, OF | NX));
    assert_eq!(run_f(to_s(RNE), &[D_NINF]), (s(S_NINF), 0, 0));
    assert_eq!(
        run_f(to_d, &[s(0x3fc0_0000)]),
        (0x3ff8_0000_0000_0000, 0, 0)
    ); // 1.5
    assert_eq!(
        run_f(to_d, &[s(0x8000_0001)]),
        (0xb6a0_0000_0000_0000, 0, 0)
    ); // -2^-149
}

#[test]
fn moves() {
    let mut h = Hart::new();
    let mv_x = |fmt| FpInsn::MvToInt {
        fmt,
        rd: RD,
        rs1: A,
    };
    let mv_f = |fmt| FpInsn::MvFromInt {
        fmt,
        rd: RD,
        rs1: A,
    };
    // FMV.X.W sign-extends bit 31 whatever the upper half holds.
    h.f[usize::from(A)] = 0x1234_5678_8000_0000;
    assert_eq!(h.run(mv_x(Fmt::S)), Ok(FpEffect::default()));
    assert_eq!(h.x[usize::from(RD)], 0xffff_ffff_8000_0000);
    h.f[usize::from(A)] = s(S_SNAN);
    h.run(mv_x(Fmt::S)).unwrap();
    assert_eq!(h.x[usize::from(RD)], u64::from(S_SNAN));
    h.f[usize::from(A)] = D_SNAN;
    h.run(mv_x(Fmt::D)).unwrap();
    assert_eq!(h.x[usize::from(RD)], D_SNAN);
    // FMV.W.X NaN-boxes the low 32 bits; FMV.D.X copies.
    h.x[usize::from(A)] = 0x1234_5678_7f80_0001;
    let eff = h.run(mv_f(Fmt::S)).unwrap();
    assert_eq!(
        (h.f[usize::from(RD)], eff.wrote_f, eff.wrote_fflags),
        (s(S_SNAN), true, false)
    );
    h.run(mv_f(Fmt::D)).unwrap();
    assert_eq!(h.f[usize::from(RD)], 0x1234_5678_7f80_0001);
    assert_eq!(h.fflags, 0);
    h.run(FpInsn::MvToInt {
        fmt: Fmt::D,
        rd: 0,
        rs1: A,
    })
    .unwrap();
    assert_eq!(h.x[0], 0);
}

#[test]
fn fflags_accumulate_and_effects_report_writes() {
    let mut h = Hart::new();
    h.f[usize::from(A)] = s(S_ONE);
    h.f[usize::from(B)] = s(0x4040_0000);
    let div = arith(ArithOp::Div, Fmt::S, DYN);
    assert_eq!(
        h.run(div).unwrap(),
        FpEffect {
            wrote_f: true,
            wrote_fflags: true
        }
    );
    assert_eq!(h.fflags, NX);
    h.f[usize::from(B)] = s(0);
    h.run(div).unwrap();
    assert_eq!(h.fflags, NX | DZ);
    h.f[usize::from(A)] = s(0xbf80_0000);
    h.run(FpInsn::Sqrt {
        fmt: Fmt::S,
        rd: RD,
        rs1: A,
        rm: DYN,
    })
    .unwrap();
    assert_eq!(
        (h.f[usize::from(RD)], h.fflags),
        (BOXED_NAN_S, NX | DZ | NV)
    );
    // An exact operation leaves the flags alone and reports no fflags write.
    h.f[usize::from(B)] = s(S_ONE);
    let eff = h.run(arith(ArithOp::Mul, Fmt::S, DYN)).unwrap();
    assert_eq!(
        (eff, h.fflags),
        (
            FpEffect {
                wrote_f: true,
                wrote_fflags: false
            },
            NX | DZ | NV
        )
    );
    // A compare writes no f register, but can raise flags.
    h.fflags = 0;
    h.f[usize::from(B)] = s(S_QNAN_PAYLOAD);
    let eff = h.run(cmp(CmpOp::Lt, Fmt::S)).unwrap();
    assert_eq!(
        (eff, h.fflags),
        (
            FpEffect {
                wrote_f: false,
                wrote_fflags: true
            },
            NV
        )
    );
}
