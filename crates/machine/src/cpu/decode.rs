//! Instruction decoding: 32-bit and compressed (RVC) encodings into one [`Insn`] enum
//! (unprivileged spec ch. 2, 7, 8, 16; privileged spec 3.3 and 4.2.1).
//!
//! Decoding happens once per instruction word; the CPU caches decoded instructions.
//! Register numbers are 0..=31 except destination registers: a write to `x0` is
//! decoded to [`X0_SINK`], a scratch slot nobody reads, so execution never tests `rd`.

use super::fp::{self, FpInsn};

/// Register-file index that writes to `x0` are redirected to.
pub const X0_SINK: u8 = 32;

/// The operation of an AMO instruction (A extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum AmoOp {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    Minu,
    Maxu,
}

/// CSR access kind (Zicsr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum CsrOp {
    Rw,
    Rs,
    Rc,
}

/// A decoded RV64GC instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Insn {
    Lui {
        rd: u8,
        imm: i32,
    },
    Auipc {
        rd: u8,
        imm: i32,
    },
    Jal {
        rd: u8,
        imm: i32,
    },
    Jalr {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Beq {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bne {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Blt {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bge {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bltu {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Bgeu {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Lb {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lh {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lw {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Ld {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lbu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lhu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Lwu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Sb {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Sh {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Sw {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Sd {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Addi {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Slti {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Sltiu {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Xori {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Ori {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Andi {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Slli {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srli {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srai {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Addiw {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Slliw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Srliw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Sraiw {
        rd: u8,
        rs1: u8,
        sh: u8,
    },
    Add {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sub {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sll {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Slt {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sltu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Xor {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Srl {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sra {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Or {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    And {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Addw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Subw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sllw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Srlw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Sraw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Mul {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Mulh {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Mulhsu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Mulhu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Div {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Divu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Rem {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Remu {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Mulw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Divw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Divuw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Remw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    Remuw {
        rd: u8,
        rs1: u8,
        rs2: u8,
    },
    /// LR.W / LR.D (`double` selects .D).
    Lr {
        rd: u8,
        rs1: u8,
        double: bool,
    },
    /// SC.W / SC.D.
    Sc {
        rd: u8,
        rs1: u8,
        rs2: u8,
        double: bool,
    },
    /// AMO*.W / AMO*.D.
    Amo {
        op: AmoOp,
        rd: u8,
        rs1: u8,
        rs2: u8,
        double: bool,
    },
    Fence,
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Sret,
    Wfi,
    SfenceVma {
        rs1: u8,
        rs2: u8,
    },
    /// CSRRW/CSRRS/CSRRC; `rs1` is the source register.
    Csr {
        op: CsrOp,
        rd: u8,
        rs1: u8,
        csr: u16,
    },
    /// CSRRWI/CSRRSI/CSRRCI; `uimm` is the 5-bit immediate.
    CsrI {
        op: CsrOp,
        rd: u8,
        uimm: u8,
        csr: u16,
    },
    Flw {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Fld {
        rd: u8,
        rs1: u8,
        imm: i32,
    },
    Fsw {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    Fsd {
        rs1: u8,
        rs2: u8,
        imm: i32,
    },
    /// Any other F/D instruction.
    Fp(FpInsn),
    /// An encoding this machine does not implement: raises illegal instruction.
    Illegal,
}

#[inline]
fn rd(raw: u32) -> u8 {
    dest(((raw >> 7) & 31) as u8)
}
#[inline]
fn dest(r: u8) -> u8 {
    if r == 0 {
        X0_SINK
    } else {
        r
    }
}
#[inline]
fn rs1(raw: u32) -> u8 {
    ((raw >> 15) & 31) as u8
}
#[inline]
fn rs2(raw: u32) -> u8 {
    ((raw >> 20) & 31) as u8
}
#[inline]
fn imm_i(raw: u32) -> i32 {
    (raw as i32) >> 20
}
#[inline]
fn imm_s(raw: u32) -> i32 {
    ((raw as i32) >> 25 << 5) | ((raw >> 7) & 31) as i32
}
#[inline]
fn imm_b(raw: u32) -> i32 {
    ((raw as i32) >> 31 << 12)
        | (((raw >> 7) & 1) << 11) as i32
        | (((raw >> 25) & 0x3f) << 5) as i32
        | (((raw >> 8) & 0xf) << 1) as i32
}
#[inline]
fn imm_u(raw: u32) -> i32 {
    (raw & 0xffff_f000) as i32
}
#[inline]
fn imm_j(raw: u32) -> i32 {
    ((raw as i32) >> 31 << 20)
        | (raw & 0x000f_f000) as i32
        | (((raw >> 20) & 1) << 11) as i32
        | (((raw >> 21) & 0x3ff) << 1) as i32
}

/// Decode a 32-bit instruction word (low two bits `11`).
pub fn decode32(raw: u32) -> Insn {
    use Insn::*;
    let (rd, rs1, rs2) = (rd(raw), rs1(raw), rs2(raw));
    let f3 = (raw >> 12) & 7;
    let f7 = raw >> 25;
    match raw & 0x7f {
        0x37 => Lui {
            rd,
            imm: imm_u(raw),
        },
        0x17 => Auipc {
            rd,
            imm: imm_u(raw),
        },
        0x6f => Jal {
            rd,
            imm: imm_j(raw),
        },
        0x67 if f3 == 0 => Jalr {
            rd,
            rs1,
            imm: imm_i(raw),
        },
        0x63 => {
            let imm = imm_b(raw);
            match f3 {
                0 => Beq { rs1, rs2, imm },
                1 => Bne { rs1, rs2, imm },
                4 => Blt { rs1, rs2, imm },
                5 => Bge { rs1, rs2, imm },
                6 => Bltu { rs1, rs2, imm },
                7 => Bgeu { rs1, rs2, imm },
                _ => Illegal,
            }
        }
        0x03 => {
            let imm = imm_i(raw);
            match f3 {
                0 => Lb { rd, rs1, imm },
                1 => Lh { rd, rs1, imm },
                2 => Lw { rd, rs1, imm },
                3 => Ld { rd, rs1, imm },
                4 => Lbu { rd, rs1, imm },
                5 => Lhu { rd, rs1, imm },
                6 => Lwu { rd, rs1, imm },
                _ => Illegal,
            }
        }
        0x23 => {
            let imm = imm_s(raw);
            match f3 {
                0 => Sb { rs1, rs2, imm },
                1 => Sh { rs1, rs2, imm },
                2 => Sw { rs1, rs2, imm },
                3 => Sd { rs1, rs2, imm },
                _ => Illegal,
            }
        }
        0x13 => {
            let imm = imm_i(raw);
            let sh = ((raw >> 20) & 0x3f) as u8;
            match f3 {
                0 => Addi { rd, rs1, imm },
                2 => Slti { rd, rs1, imm },
                3 => Sltiu { rd, rs1, imm },
                4 => Xori { rd, rs1, imm },
                6 => Ori { rd, rs1, imm },
                7 => Andi { rd, rs1, imm },
                1 if raw >> 26 == 0 => Slli { rd, rs1, sh },
                5 if raw >> 26 == 0 => Srli { rd, rs1, sh },
                5 if raw >> 26 == 0x10 => Srai { rd, rs1, sh },
                _ => Illegal,
            }
        }
        0x1b => {
            let sh = ((raw >> 20) & 0x1f) as u8;
            match (f3, f7) {
                (0, _) => Addiw {
                    rd,
                    rs1,
                    imm: imm_i(raw),
                },
                (1, 0) => Slliw { rd, rs1, sh },
                (5, 0) => Srliw { rd, rs1, sh },
                (5, 0x20) => Sraiw { rd, rs1, sh },
                _ => Illegal,
            }
        }
        0x33 => match (f7, f3) {
            (0, 0) => Add { rd, rs1, rs2 },
            (0x20, 0) => Sub { rd, rs1, rs2 },
            (0, 1) => Sll { rd, rs1, rs2 },
            (0, 2) => Slt { rd, rs1, rs2 },
            (0, 3) => Sltu { rd, rs1, rs2 },
            (0, 4) => Xor { rd, rs1, rs2 },
            (0, 5) => Srl { rd, rs1, rs2 },
            (0x20, 5) => Sra { rd, rs1, rs2 },
            (0, 6) => Or { rd, rs1, rs2 },
            (0, 7) => And { rd, rs1, rs2 },
            (1, 0) => Mul { rd, rs1, rs2 },
            (1, 1) => Mulh { rd, rs1, rs2 },
            (1, 2) => Mulhsu { rd, rs1, rs2 },
            (1, 3) => Mulhu { rd, rs1, rs2 },
            (1, 4) => Div { rd, rs1, rs2 },
            (1, 5) => Divu { rd, rs1, rs2 },
            (1, 6) => Rem { rd, rs1, rs2 },
            (1, 7) => Remu { rd, rs1, rs2 },
            _ => Illegal,
        },
        0x3b => match (f7, f3) {
            (0, 0) => Addw { rd, rs1, rs2 },
            (0x20, 0) => Subw { rd, rs1, rs2 },
            (0, 1) => Sllw { rd, rs1, rs2 },
            (0, 5) => Srlw { rd, rs1, rs2 },
            (0x20, 5) => Sraw { rd, rs1, rs2 },
            (1, 0) => Mulw { rd, rs1, rs2 },
            (1, 4) => Divw { rd, rs1, rs2 },
            (1, 5) => Divuw { rd, rs1, rs2 },
            (1, 6) => Remw { rd, rs1, rs2 },
            (1, 7) => Remuw { rd, rs1, rs2 },
            _ => Illegal,
        },
        0x2f => decode_amo(raw, rd, rs1, rs2),
        0x0f => match f3 {
            0 => Fence,
            1 => FenceI,
            _ => Illegal,
        },
        0x73 => decode_system(raw, rd, rs1, rs2),
        0x07 => match f3 {
            2 => Flw {
                rd: rd_f(raw),
                rs1,
                imm: imm_i(raw),
            },
            3 => Fld {
                rd: rd_f(raw),
                rs1,
                imm: imm_i(raw),
            },
            _ => Illegal,
        },
        0x27 => match f3 {
            2 => Fsw {
                rs1,
                rs2,
                imm: imm_s(raw),
            },
            3 => Fsd {
                rs1,
                rs2,
                imm: imm_s(raw),
            },
            _ => Illegal,
        },
        0x43 | 0x47 | 0x4b | 0x4f | 0x53 => fp::decode(raw).map_or(Illegal, Fp),
        _ => Illegal,
    }
}

/// FP destination registers are never redirected (f0 is an ordinary register).
#[inline]
fn rd_f(raw: u32) -> u8 {
    ((raw >> 7) & 31) as u8
}

fn decode_amo(raw: u32, rd: u8, rs1: u8, rs2: u8) -> Insn {
    let double = match (raw >> 12) & 7 {
        2 => false,
        3 => true,
        _ => return Insn::Illegal,
    };
    let op = match raw >> 27 {
        0x02 if rs2 == 0 => return Insn::Lr { rd, rs1, double },
        0x03 => {
            return Insn::Sc {
                rd,
                rs1,
                rs2,
                double,
            }
        }
        0x01 => AmoOp::Swap,
        0x00 => AmoOp::Add,
        0x04 => AmoOp::Xor,
        0x0c => AmoOp::And,
        0x08 => AmoOp::Or,
        0x10 => AmoOp::Min,
        0x14 => AmoOp::Max,
        0x18 => AmoOp::Minu,
        0x1c => AmoOp::Maxu,
        _ => return Insn::Illegal,
    };
    Insn::Amo {
        op,
        rd,
        rs1,
        rs2,
        double,
    }
}

fn decode_system(raw: u32, rd: u8, rs1: u8, rs2: u8) -> Insn {
    let csr = (raw >> 20) as u16;
    let op = match (raw >> 12) & 3 {
        1 => CsrOp::Rw,
        2 => CsrOp::Rs,
        3 => CsrOp::Rc,
        _ => {
            // funct3 == 0 (or 4, reserved): privileged instructions.
            if (raw >> 12) & 7 != 0 {
                return Insn::Illegal;
            }
            return match raw {
                0x0000_0073 => Insn::Ecall,
                0x0010_0073 => Insn::Ebreak,
                0x3020_0073 => Insn::Mret,
                0x1020_0073 => Insn::Sret,
                0x1050_0073 => Insn::Wfi,
                _ if raw >> 25 == 0x09 && rd == X0_SINK => Insn::SfenceVma { rs1, rs2 },
                _ => Insn::Illegal,
            };
        }
    };
    if (raw >> 14) & 1 == 1 {
        Insn::CsrI {
            op,
            rd,
            uimm: rs1,
            csr,
        }
    } else {
        Insn::Csr { op, rd, rs1, csr }
    }
}

/// Decode a 16-bit compressed instruction (unprivileged spec ch. 16, RV64C).
pub fn decode16(raw: u16) -> Insn {
    use Insn::*;
    let r = raw as u32;
    let bits = |hi: u32, lo: u32| (r >> lo) & ((1 << (hi - lo + 1)) - 1);
    // Registers x8..x15 in the 3-bit fields.
    let rdp = (bits(4, 2) + 8) as u8;
    let rs1p = (bits(9, 7) + 8) as u8;
    let rd_full = bits(11, 7) as u8;
    let rs2_full = bits(6, 2) as u8;
    let sext = |v: u32, width: u32| ((v << (32 - width)) as i32) >> (32 - width);
    match (bits(1, 0), bits(15, 13)) {
        (0, 0) => {
            // C.ADDI4SPN
            let imm =
                (bits(12, 11) << 4) | (bits(10, 7) << 6) | (bits(6, 6) << 2) | (bits(5, 5) << 3);
            if imm == 0 {
                return Illegal;
            }
            Addi {
                rd: rdp,
                rs1: 2,
                imm: imm as i32,
            }
        }
        (0, 1) => Fld {
            rd: rdp,
            rs1: rs1p,
            imm: cld_imm(r),
        },
        (0, 2) => Lw {
            rd: rdp,
            rs1: rs1p,
            imm: clw_imm(r),
        },
        (0, 3) => Ld {
            rd: rdp,
            rs1: rs1p,
            imm: cld_imm(r),
        },
        (0, 5) => Fsd {
            rs1: rs1p,
            rs2: rdp,
            imm: cld_imm(r),
        },
        (0, 6) => Sw {
            rs1: rs1p,
            rs2: rdp,
            imm: clw_imm(r),
        },
        (0, 7) => Sd {
            rs1: rs1p,
            rs2: rdp,
            imm: cld_imm(r),
        },
        (1, 0) => {
            let imm = sext((bits(12, 12) << 5) | bits(6, 2), 6);
            Addi {
                rd: dest(rd_full),
                rs1: rd_full,
                imm,
            }
        }
        (1, 1) => {
            if rd_full == 0 {
                return Illegal;
            }
            let imm = sext((bits(12, 12) << 5) | bits(6, 2), 6);
            Addiw {
                rd: rd_full,
                rs1: rd_full,
                imm,
            }
        }
        (1, 2) => Addi {
            rd: dest(rd_full),
            rs1: 0,
            imm: sext((bits(12, 12) << 5) | bits(6, 2), 6),
        },
        (1, 3) => {
            if rd_full == 2 {
                let imm = (bits(12, 12) << 9)
                    | (bits(4, 3) << 7)
                    | (bits(5, 5) << 6)
                    | (bits(2, 2) << 5)
                    | (bits(6, 6) << 4);
                let imm = sext(imm, 10);
                if imm == 0 {
                    return Illegal;
                }
                Addi { rd: 2, rs1: 2, imm }
            } else {
                let imm = sext((bits(12, 12) << 17) | (bits(6, 2) << 12), 18);
                if imm == 0 {
                    return Illegal;
                }
                Lui {
                    rd: dest(rd_full),
                    imm,
                }
            }
        }
        (1, 4) => {
            let sh = ((bits(12, 12) << 5) | bits(6, 2)) as u8;
            match bits(11, 10) {
                0 => Srli {
                    rd: rs1p,
                    rs1: rs1p,
                    sh,
                },
                1 => Srai {
                    rd: rs1p,
                    rs1: rs1p,
                    sh,
                },
                2 => Andi {
                    rd: rs1p,
                    rs1: rs1p,
                    imm: sext((bits(12, 12) << 5) | bits(6, 2), 6),
                },
                _ => {
                    let (rd, rs1, rs2) = (rs1p, rs1p, rdp);
                    match (bits(12, 12), bits(6, 5)) {
                        (0, 0) => Sub { rd, rs1, rs2 },
                        (0, 1) => Xor { rd, rs1, rs2 },
                        (0, 2) => Or { rd, rs1, rs2 },
                        (0, 3) => And { rd, rs1, rs2 },
                        (1, 0) => Subw { rd, rs1, rs2 },
                        (1, 1) => Addw { rd, rs1, rs2 },
                        _ => Illegal,
                    }
                }
            }
        }
        (1, 5) => Jal {
            rd: X0_SINK,
            imm: cj_imm(r),
        },
        (1, 6) => Beq {
            rs1: rs1p,
            rs2: 0,
            imm: cb_imm(r),
        },
        (1, 7) => Bne {
            rs1: rs1p,
            rs2: 0,
            imm: cb_imm(r),
        },
        (2, 0) => {
            let sh = ((bits(12, 12) << 5) | bits(6, 2)) as u8;
            Slli {
                rd: dest(rd_full),
                rs1: rd_full,
                sh,
            }
        }
        (2, 1) => {
            let imm = (bits(12, 12) << 5) | (bits(6, 5) << 3) | (bits(4, 2) << 6);
            Fld {
                rd: rd_full,
                rs1: 2,
                imm: imm as i32,
            }
        }
        (2, 2) => {
            if rd_full == 0 {
                return Illegal;
            }
            let imm = (bits(12, 12) << 5) | (bits(6, 4) << 2) | (bits(3, 2) << 6);
            Lw {
                rd: rd_full,
                rs1: 2,
                imm: imm as i32,
            }
        }
        (2, 3) => {
            if rd_full == 0 {
                return Illegal;
            }
            let imm = (bits(12, 12) << 5) | (bits(6, 5) << 3) | (bits(4, 2) << 6);
            Ld {
                rd: rd_full,
                rs1: 2,
                imm: imm as i32,
            }
        }
        (2, 4) => match (bits(12, 12), rd_full, rs2_full) {
            // C.JR with rs1 = 0 is reserved; C.MV with rd = 0 is a HINT (an add to x0).
            (0, 0, 0) => Illegal,
            (0, rs1, 0) => Jalr {
                rd: X0_SINK,
                rs1,
                imm: 0,
            },
            (0, rd, rs2) => Add {
                rd: dest(rd),
                rs1: 0,
                rs2,
            },
            (1, 0, 0) => Ebreak,
            (1, rs1, 0) => Jalr { rd: 1, rs1, imm: 0 },
            (1, rd, rs2) => Add {
                rd: dest(rd),
                rs1: rd,
                rs2,
            },
            _ => Illegal,
        },
        (2, 5) => {
            let imm = (bits(12, 10) << 3) | (bits(9, 7) << 6);
            Fsd {
                rs1: 2,
                rs2: rs2_full,
                imm: imm as i32,
            }
        }
        (2, 6) => {
            let imm = (bits(12, 9) << 2) | (bits(8, 7) << 6);
            Sw {
                rs1: 2,
                rs2: rs2_full,
                imm: imm as i32,
            }
        }
        (2, 7) => {
            let imm = (bits(12, 10) << 3) | (bits(9, 7) << 6);
            Sd {
                rs1: 2,
                rs2: rs2_full,
                imm: imm as i32,
            }
        }
        _ => Illegal,
    }
}

fn clw_imm(r: u32) -> i32 {
    ((((r >> 10) & 7) << 3) | (((r >> 6) & 1) << 2) | (((r >> 5) & 1) << 6)) as i32
}
fn cld_imm(r: u32) -> i32 {
    ((((r >> 10) & 7) << 3) | (((r >> 5) & 3) << 6)) as i32
}
fn cj_imm(r: u32) -> i32 {
    let v = (((r >> 12) & 1) << 11)
        | (((r >> 11) & 1) << 4)
        | (((r >> 9) & 3) << 8)
        | (((r >> 8) & 1) << 10)
        | (((r >> 7) & 1) << 6)
        | (((r >> 6) & 1) << 7)
        | (((r >> 3) & 7) << 1)
        | (((r >> 2) & 1) << 5);
    ((v << 20) as i32) >> 20
}
fn cb_imm(r: u32) -> i32 {
    let v = (((r >> 12) & 1) << 8)
        | (((r >> 10) & 3) << 3)
        | (((r >> 5) & 3) << 6)
        | (((r >> 3) & 3) << 1)
        | (((r >> 2) & 1) << 5);
    ((v << 23) as i32) >> 23
}
