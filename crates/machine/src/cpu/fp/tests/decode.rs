//! Decoding and disassembly against binutils.

use super::*;

/// Words assembled by riscv64-linux-gnu-as 2.40 and the text objdump -d prints for them.
const OBJDUMP: &[(u32, &str)] = &[
    (0x00c5f553, "fadd.s fa0,fa1,fa2"),
    (0x02c58553, "fadd.d fa0,fa1,fa2,rne"),
    (0x0a209053, "fsub.d ft0,ft1,ft2,rtz"),
    (0x085271d3, "fsub.s ft3,ft4,ft5"),
    (0x1124a453, "fmul.s fs0,fs1,fs2,rdn"),
    (0x135a79d3, "fmul.d fs3,fs4,fs5"),
    (0x1b1dbfd3, "fdiv.d ft11,fs11,fa7,rup"),
    (0x19eece53, "fdiv.s ft8,ft9,ft10,rmm"),
    (0x5805c553, "fsqrt.s fa0,fa1,rmm"),
    (0x5a05f553, "fsqrt.d fa0,fa1"),
    (0x28c58553, "fmin.s fa0,fa1,fa2"),
    (0x2b8b8b53, "fmin.d fs6,fs7,fs8"),
    (0x28dd1cd3, "fmax.s fs9,fs10,fa3"),
    (0x2ac59553, "fmax.d fa0,fa1,fa2"),
    (0x20c58553, "fsgnj.s fa0,fa1,fa2"),
    (0x22c59553, "fsgnjn.d fa0,fa1,fa2"),
    (0x20c5a553, "fsgnjx.s fa0,fa1,fa2"),
    (0x22b58553, "fmv.d fa0,fa1"),
    (0x20b59553, "fneg.s fa0,fa1"),
    (0x22b5a553, "fabs.d fa0,fa1"),
    (0x20738353, "fmv.s ft6,ft7"),
    (0xa0c5a553, "feq.s a0,fa1,fa2"),
    (0xa2f72dd3, "feq.d s11,fa4,fa5"),
    (0xa2c59553, "flt.d a0,fa1,fa2"),
    (0xa0081e53, "flt.s t3,fa6,ft0"),
    (0xa0c58053, "fle.s zero,fa1,fa2"),
    (0xa2c580d3, "fle.d ra,fa1,fa2"),
    (0xe2051553, "fclass.d a0,fa0"),
    (0xe0001fd3, "fclass.s t6,ft0"),
    (0xc0051553, "fcvt.w.s a0,fa0,rtz"),
    (0xc2057153, "fcvt.w.d sp,fa0"),
    (0xc01521d3, "fcvt.wu.s gp,fa0,rdn"),
    (0xc2157553, "fcvt.wu.d a0,fa0"),
    (0xc0250553, "fcvt.l.s a0,fa0,rne"),
    (0xc2253253, "fcvt.l.d tp,fa0,rup"),
    (0xc03572d3, "fcvt.lu.s t0,fa0"),
    (0xc2354553, "fcvt.lu.d a0,fa0,rmm"),
    (0xd0057553, "fcvt.s.w fa0,a0"),
    (0xd0151553, "fcvt.s.wu fa0,a0,rtz"),
    (0xd0237553, "fcvt.s.l fa0,t1"),
    (0xd0357553, "fcvt.s.lu fa0,a0"),
    (0xd2050553, "fcvt.d.w fa0,a0"),
    (0xd2138553, "fcvt.d.wu fa0,t2"),
    (0xd2253553, "fcvt.d.l fa0,a0,rup"),
    (0xd2347553, "fcvt.d.lu fa0,s0"),
    (0x4015f553, "fcvt.s.d fa0,fa1"),
    (0x40159553, "fcvt.s.d fa0,fa1,rtz"),
    (0x42058553, "fcvt.d.s fa0,fa1"),
    (0xe0050553, "fmv.x.w a0,fa0"),
    (0xf0050553, "fmv.w.x fa0,a0"),
    (0xe20504d3, "fmv.x.d s1,fa0"),
    (0xf2050553, "fmv.d.x fa0,a0"),
    (0x68c5f543, "fmadd.s fa0,fa1,fa2,fa3"),
    (0x6ac58543, "fmadd.d fa0,fa1,fa2,fa3,rne"),
    (0x8907f747, "fmsub.s fa4,fa5,fa6,fa7"),
    (0x6ac59547, "fmsub.d fa0,fa1,fa2,fa3,rtz"),
    (0x68c5a54b, "fnmsub.s fa0,fa1,fa2,fa3,rdn"),
    (0x1a20f04b, "fnmsub.d ft0,ft1,ft2,ft3"),
    (0x9924b44f, "fnmadd.s fs0,fs1,fs2,fs3,rup"),
    (0x6ac5f54f, "fnmadd.d fa0,fa1,fa2,fa3"),
    (0x0205d553, "fadd.d fa0,fa1,ft0,unknown"),
    (0xc0055553, "fcvt.w.s a0,fa0,unknown"),
    (0x68c5e543, "fmadd.s fa0,fa1,fa2,fa3,unknown"),
];

#[test]
fn decode_and_disassemble_match_objdump() {
    for &(raw, text) in OBJDUMP {
        let insn = decode(raw).unwrap_or_else(|| panic!("{raw:#010x} ({text}) did not decode"));
        assert_eq!(insn.to_string(), text, "{raw:#010x}");
    }
}

#[test]
fn widening_conversions_print_rm_unless_rne() {
    // binutils 2.40 refuses these; newer binutils print the rm (riscv-opc.c "D,s,m").
    let cases = [
        (0xd205_7553, "fcvt.d.w fa0,a0,dyn"),
        (0xd215_1553, "fcvt.d.wu fa0,a0,rtz"),
        (0x4205_f553, "fcvt.d.s fa0,fa1,dyn"),
    ];
    for (raw, text) in cases {
        assert_eq!(
            decode(raw).map(|i| i.to_string()).as_deref(),
            Some(text),
            "{raw:#010x}"
        );
    }
}

#[test]
fn decode_rejects_reserved_encodings() {
    let bad = [
        0x04b5_7553, // fadd.h (fmt 2)
        0x06b5_7553, // fadd.q (fmt 3)
        0x6cc5_f543, // fmadd.h
        0x28c5_a553, // fmin with funct3 2
        0x20c5_b553, // fsgnj with funct3 3
        0xa0c5_b553, // fcompare with funct3 3
        0x58b5_f553, // fsqrt with rs2 != 0
        0xe015_1553, // fclass with rs2 != 0
        0xe015_0553, // fmv.x.w with rs2 != 0
        0xe005_2553, // funct5 11100 with funct3 2
        0xf005_1553, // fmv.w.x with funct3 1
        0xd255_0553, // fcvt.d.<int> with rs2 5
        0xc245_0553, // fcvt.<int>.d with rs2 4
        0x4025_f553, // fcvt.s.<fmt 2>
        0x4005_f553, // fcvt.s.s
        0x4215_f553, // fcvt.d.d
        0x3005_f553, // funct5 00110
        0x0000_0013, // addi, not FP at all
        0x0005_3507, // fld: loads are not ours
    ];
    for raw in bad {
        assert_eq!(decode(raw), None, "{raw:#010x}");
    }
}

#[test]
fn decode_fields() {
    // fmsub.s fa4,fa5,fa6,fa7 (dyn)
    let want = FpInsn::Fma {
        op: FmaOp::Msub,
        fmt: Fmt::S,
        rd: 14,
        rs1: 15,
        rs2: 16,
        rs3: 17,
        rm: DYN,
    };
    assert_eq!(decode(0x8907_f747), Some(want));
    // fcvt.lu.d a0,fa0,rmm
    let want = FpInsn::CvtToInt {
        int: IntFmt::Lu,
        fmt: Fmt::D,
        rd: 10,
        rs1: 10,
        rm: RMM,
    };
    assert_eq!(decode(0xc235_4553), Some(want));
    // fle.s zero,fa1,fa2
    let want = FpInsn::Cmp {
        op: CmpOp::Le,
        fmt: Fmt::S,
        rd: 0,
        rs1: 11,
        rs2: 12,
    };
    assert_eq!(decode(0xa0c5_8053), Some(want));
}

#[test]
fn nan_box_helpers() {
    assert_eq!(nan_box_s(0x3f80_0000), 0xffff_ffff_3f80_0000);
    assert_eq!(unbox_s(0xffff_ffff_3f80_0000), 0x3f80_0000);
    assert_eq!(unbox_s(0x7fff_ffff_3f80_0000), CANONICAL_NAN_S);
}
