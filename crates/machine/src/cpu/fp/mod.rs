//! The F and D extensions (unprivileged spec 20191213, ch. 11 "F" and 12 "D"), apart from
//! the loads and stores, which go through the CPU's memory path.
//!
//! Arithmetic is Berkeley SoftFloat with its RISC-V specialisation (canonical NaNs,
//! tininess after rounding), never host floating point, so results are bit-exact on
//! every host.

mod disasm;
mod exec;
#[cfg(test)]
mod tests;

pub use exec::execute;

/// Floating-point format of an operation (the `fmt` field; H and Q are not implemented).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    /// Single precision (`.s`), NaN-boxed in the 64-bit f registers.
    S,
    /// Double precision (`.d`).
    D,
}

/// Integer format of an FCVT (the `rs2` field of FCVT.int.fmt / FCVT.fmt.int).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntFmt {
    /// Signed 32-bit (`.w`); results are sign-extended to 64 bits.
    W,
    /// Unsigned 32-bit (`.wu`); results are sign-extended to 64 bits too (spec 11.7).
    Wu,
    /// Signed 64-bit (`.l`).
    L,
    /// Unsigned 64-bit (`.lu`).
    Lu,
}

/// FADD, FSUB, FMUL, FDIV.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    /// rs1 + rs2.
    Add,
    /// rs1 - rs2.
    Sub,
    /// rs1 * rs2.
    Mul,
    /// rs1 / rs2.
    Div,
}

/// The fused multiply-adds (one rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FmaOp {
    /// rs1 * rs2 + rs3.
    Madd,
    /// rs1 * rs2 - rs3.
    Msub,
    /// -(rs1 * rs2) + rs3.
    Nmsub,
    /// -(rs1 * rs2) - rs3.
    Nmadd,
}

/// Sign injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgnjOp {
    /// Sign of rs2.
    Sgnj,
    /// Opposite of the sign of rs2.
    Sgnjn,
    /// Sign of rs1 xor sign of rs2.
    Sgnjx,
}

/// Comparisons writing 0 or 1 to an x register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// Quiet equality: only signaling NaNs raise NV.
    Eq,
    /// Signaling less-than: any NaN raises NV.
    Lt,
    /// Signaling less-or-equal: any NaN raises NV.
    Le,
}

/// A decoded F/D instruction (loads and stores excluded). Register fields are indices
/// 0..32 into the x or f file as the instruction defines; `rm` is the raw 3-bit field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpInsn {
    /// FADD/FSUB/FMUL/FDIV.fmt f[rd], f[rs1], f[rs2].
    Arith {
        /// Which operation.
        op: ArithOp,
        /// Format of operands and result.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// First source f register.
        rs1: u8,
        /// Second source f register.
        rs2: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FSQRT.fmt f[rd], f[rs1].
    Sqrt {
        /// Format of operand and result.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// Source f register.
        rs1: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FMADD/FMSUB/FNMSUB/FNMADD.fmt f[rd], f[rs1], f[rs2], f[rs3].
    Fma {
        /// Which operation.
        op: FmaOp,
        /// Format of operands and result.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// Multiplicand f register.
        rs1: u8,
        /// Multiplier f register.
        rs2: u8,
        /// Addend f register.
        rs3: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FSGNJ/FSGNJN/FSGNJX.fmt f[rd], f[rs1], f[rs2].
    Sgnj {
        /// Which sign to inject.
        op: SgnjOp,
        /// Format of operands and result.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// Source of magnitude (f register).
        rs1: u8,
        /// Source of sign (f register).
        rs2: u8,
    },
    /// FMIN/FMAX.fmt f[rd], f[rs1], f[rs2] (IEEE 754-2008 minNum/maxNum, -0 < +0).
    MinMax {
        /// FMAX when true, FMIN when false.
        max: bool,
        /// Format of operands and result.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// First source f register.
        rs1: u8,
        /// Second source f register.
        rs2: u8,
    },
    /// FEQ/FLT/FLE.fmt x[rd], f[rs1], f[rs2].
    Cmp {
        /// Which comparison.
        op: CmpOp,
        /// Format of the operands.
        fmt: Fmt,
        /// Destination x register.
        rd: u8,
        /// First source f register.
        rs1: u8,
        /// Second source f register.
        rs2: u8,
    },
    /// FCLASS.fmt x[rd], f[rs1].
    Class {
        /// Format of the operand.
        fmt: Fmt,
        /// Destination x register.
        rd: u8,
        /// Source f register.
        rs1: u8,
    },
    /// FCVT.int.fmt x[rd], f[rs1]: float to integer, saturating.
    CvtToInt {
        /// Integer format of the result.
        int: IntFmt,
        /// Format of the operand.
        fmt: Fmt,
        /// Destination x register.
        rd: u8,
        /// Source f register.
        rs1: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FCVT.fmt.int f[rd], x[rs1]: integer to float.
    CvtFromInt {
        /// Format of the result.
        fmt: Fmt,
        /// Integer format of the operand.
        int: IntFmt,
        /// Destination f register.
        rd: u8,
        /// Source x register.
        rs1: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FCVT.S.D (`fmt` = S) or FCVT.D.S (`fmt` = D) f[rd], f[rs1].
    CvtFmt {
        /// Format of the result; the operand has the other format.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// Source f register.
        rs1: u8,
        /// Rounding mode field.
        rm: u8,
    },
    /// FMV.X.W (sign-extending) or FMV.X.D x[rd], f[rs1]: raw bits, no NaN unboxing.
    MvToInt {
        /// W when `S`, D when `D`.
        fmt: Fmt,
        /// Destination x register.
        rd: u8,
        /// Source f register.
        rs1: u8,
    },
    /// FMV.W.X (NaN-boxing) or FMV.D.X f[rd], x[rs1]: raw bits.
    MvFromInt {
        /// W when `S`, D when `D`.
        fmt: Fmt,
        /// Destination f register.
        rd: u8,
        /// Source x register.
        rs1: u8,
    },
}

/// What an executed instruction changed, so the CPU can set mstatus.FS to Dirty
/// (priv. spec 3.1.6.6) when either is true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpEffect {
    /// An f register was written.
    pub wrote_f: bool,
    /// New exception flags were raised into fflags.
    pub wrote_fflags: bool,
}

/// The instruction is illegal: its effective rounding mode is reserved (rm 5 or 6, or
/// rm 7 (dynamic) with frm >= 5; spec 11.2). The CPU raises an illegal-instruction trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reserved rounding mode (rm {rm}, frm {frm})")]
pub struct IllegalFp {
    /// The instruction's rm field.
    pub rm: u8,
    /// fcsr.frm at the time.
    pub frm: u8,
}

/// fflags bits (spec 11.2, fig. 11.3).
pub mod flags {
    /// Invalid operation.
    pub const NV: u8 = 0x10;
    /// Divide by zero.
    pub const DZ: u8 = 0x08;
    /// Overflow.
    pub const OF: u8 = 0x04;
    /// Underflow.
    pub const UF: u8 = 0x02;
    /// Inexact.
    pub const NX: u8 = 0x01;
}

/// Canonical single-precision NaN (spec 11.3).
pub const CANONICAL_NAN_S: u32 = 0x7fc0_0000;
/// Canonical double-precision NaN (spec 12.3).
pub const CANONICAL_NAN_D: u64 = 0x7ff8_0000_0000_0000;

/// NaN-box a single for an f register: upper 32 bits all ones (spec 12.2). Used by FLW.
pub const fn nan_box_s(bits: u32) -> u64 {
    0xffff_ffff_0000_0000 | bits as u64
}

/// The single held in an f register; an improperly NaN-boxed value reads as the
/// canonical NaN (spec 12.2).
pub fn unbox_s(reg: u64) -> u32 {
    if reg >> 32 == 0xffff_ffff {
        reg as u32
    } else {
        CANONICAL_NAN_S
    }
}

const OP_FP: u32 = 0x53;
const OP_FMADD: u32 = 0x43;
const OP_FMSUB: u32 = 0x47;
const OP_FNMSUB: u32 = 0x4b;
const OP_FNMADD: u32 = 0x4f;

/// Decode a 32-bit instruction word with major opcode OP-FP, FMADD, FMSUB, FNMSUB or
/// FNMADD (spec ch. 24 tables). `None` for reserved encodings, including the H and Q
/// formats. The rm field is not checked here: rm 7 depends on frm at execute time.
pub fn decode(raw: u32) -> Option<FpInsn> {
    let field = |lo: u32, bits: u32| ((raw >> lo) & ((1 << bits) - 1)) as u8;
    let (rd, rm, rs1, rs2, rs3) = (
        field(7, 5),
        field(12, 3),
        field(15, 5),
        field(20, 5),
        field(27, 5),
    );
    let fmt = match field(25, 2) {
        0 => Fmt::S,
        1 => Fmt::D,
        _ => return None,
    };
    let fma = |op| {
        Some(FpInsn::Fma {
            op,
            fmt,
            rd,
            rs1,
            rs2,
            rs3,
            rm,
        })
    };
    match raw & 0x7f {
        OP_FMADD => return fma(FmaOp::Madd),
        OP_FMSUB => return fma(FmaOp::Msub),
        OP_FNMSUB => return fma(FmaOp::Nmsub),
        OP_FNMADD => return fma(FmaOp::Nmadd),
        OP_FP => {}
        _ => return None,
    }
    let arith = |op| {
        Some(FpInsn::Arith {
            op,
            fmt,
            rd,
            rs1,
            rs2,
            rm,
        })
    };
    let int = |sel| match sel {
        0 => Some(IntFmt::W),
        1 => Some(IntFmt::Wu),
        2 => Some(IntFmt::L),
        3 => Some(IntFmt::Lu),
        _ => None,
    };
    // funct3 doubles as a minor opcode for the instructions without rounding.
    let funct3 = rm;
    match (field(27, 5), rs2, funct3) {
        (0b00000, _, _) => arith(ArithOp::Add),
        (0b00001, _, _) => arith(ArithOp::Sub),
        (0b00010, _, _) => arith(ArithOp::Mul),
        (0b00011, _, _) => arith(ArithOp::Div),
        (0b01011, 0, _) => Some(FpInsn::Sqrt { fmt, rd, rs1, rm }),
        (0b00100, _, 0..=2) => {
            let op = [SgnjOp::Sgnj, SgnjOp::Sgnjn, SgnjOp::Sgnjx][usize::from(funct3)];
            Some(FpInsn::Sgnj {
                op,
                fmt,
                rd,
                rs1,
                rs2,
            })
        }
        (0b00101, _, 0..=1) => Some(FpInsn::MinMax {
            max: funct3 == 1,
            fmt,
            rd,
            rs1,
            rs2,
        }),
        (0b10100, _, 0..=2) => {
            let op = [CmpOp::Le, CmpOp::Lt, CmpOp::Eq][usize::from(funct3)];
            Some(FpInsn::Cmp {
                op,
                fmt,
                rd,
                rs1,
                rs2,
            })
        }
        // FCVT.S.D has fmt S and source format D in rs2, and vice versa.
        (0b01000, 1, _) if fmt == Fmt::S => Some(FpInsn::CvtFmt { fmt, rd, rs1, rm }),
        (0b01000, 0, _) if fmt == Fmt::D => Some(FpInsn::CvtFmt { fmt, rd, rs1, rm }),
        (0b11000, _, _) => Some(FpInsn::CvtToInt {
            int: int(rs2)?,
            fmt,
            rd,
            rs1,
            rm,
        }),
        (0b11010, _, _) => Some(FpInsn::CvtFromInt {
            fmt,
            int: int(rs2)?,
            rd,
            rs1,
            rm,
        }),
        (0b11100, 0, 0) => Some(FpInsn::MvToInt { fmt, rd, rs1 }),
        (0b11100, 0, 1) => Some(FpInsn::Class { fmt, rd, rs1 }),
        (0b11110, 0, 0) => Some(FpInsn::MvFromInt { fmt, rd, rs1 }),
        _ => None,
    }
}
