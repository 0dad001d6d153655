//! Disassembly in GNU objdump syntax (binutils riscv-opc.c), aliases included:
//! `fmv`/`fneg`/`fabs` for sign injection with rs1 == rs2.

use super::{ArithOp, CmpOp, FmaOp, Fmt, FpInsn, IntFmt, SgnjOp};
use std::fmt;

const X_NAMES: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4",
    "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4",
    "t5", "t6",
];

const F_NAMES: [&str; 32] = [
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2",
    "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9",
    "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
];

const RM_NAMES: [&str; 8] = [
    "rne", "rtz", "rdn", "rup", "rmm", "unknown", "unknown", "dyn",
];

fn xr(r: u8) -> &'static str {
    X_NAMES[usize::from(r & 31)]
}

fn fr(r: u8) -> &'static str {
    F_NAMES[usize::from(r & 31)]
}

fn fmt_suffix(fmt: Fmt) -> &'static str {
    match fmt {
        Fmt::S => "s",
        Fmt::D => "d",
    }
}

fn int_suffix(int: IntFmt) -> &'static str {
    match int {
        IntFmt::W => "w",
        IntFmt::Wu => "wu",
        IntFmt::L => "l",
        IntFmt::Lu => "lu",
    }
}

/// The trailing rounding-mode operand: omitted when it is the one the assembler
/// defaults to (dyn, or rne for the exact widening conversions).
fn rm_operand(rm: u8, default: u8) -> String {
    if rm == default {
        String::new()
    } else {
        format!(",{}", RM_NAMES[usize::from(rm & 7)])
    }
}

const DYN: u8 = 7;
const RNE: u8 = 0;

impl fmt::Display for FpInsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FpInsn::Arith {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rm,
            } => {
                let name = match op {
                    ArithOp::Add => "fadd",
                    ArithOp::Sub => "fsub",
                    ArithOp::Mul => "fmul",
                    ArithOp::Div => "fdiv",
                };
                let (s, rm) = (fmt_suffix(fmt), rm_operand(rm, DYN));
                write!(f, "{name}.{s} {},{},{}{rm}", fr(rd), fr(rs1), fr(rs2))
            }
            FpInsn::Sqrt { fmt, rd, rs1, rm } => {
                let (s, rm) = (fmt_suffix(fmt), rm_operand(rm, DYN));
                write!(f, "fsqrt.{s} {},{}{rm}", fr(rd), fr(rs1))
            }
            FpInsn::Fma {
                op,
                fmt,
                rd,
                rs1,
                rs2,
                rs3,
                rm,
            } => {
                let name = match op {
                    FmaOp::Madd => "fmadd",
                    FmaOp::Msub => "fmsub",
                    FmaOp::Nmsub => "fnmsub",
                    FmaOp::Nmadd => "fnmadd",
                };
                let (s, rm) = (fmt_suffix(fmt), rm_operand(rm, DYN));
                write!(
                    f,
                    "{name}.{s} {},{},{},{}{rm}",
                    fr(rd),
                    fr(rs1),
                    fr(rs2),
                    fr(rs3)
                )
            }
            FpInsn::Sgnj {
                op,
                fmt,
                rd,
                rs1,
                rs2,
            } => {
                let s = fmt_suffix(fmt);
                if rs1 == rs2 {
                    let alias = match op {
                        SgnjOp::Sgnj => "fmv",
                        SgnjOp::Sgnjn => "fneg",
                        SgnjOp::Sgnjx => "fabs",
                    };
                    return write!(f, "{alias}.{s} {},{}", fr(rd), fr(rs1));
                }
                let name = match op {
                    SgnjOp::Sgnj => "fsgnj",
                    SgnjOp::Sgnjn => "fsgnjn",
                    SgnjOp::Sgnjx => "fsgnjx",
                };
                write!(f, "{name}.{s} {},{},{}", fr(rd), fr(rs1), fr(rs2))
            }
            FpInsn::MinMax {
                max,
                fmt,
                rd,
                rs1,
                rs2,
            } => {
                let name = if max { "fmax" } else { "fmin" };
                write!(
                    f,
                    "{name}.{} {},{},{}",
                    fmt_suffix(fmt),
                    fr(rd),
                    fr(rs1),
                    fr(rs2)
                )
            }
            FpInsn::Cmp {
                op,
                fmt,
                rd,
                rs1,
                rs2,
            } => {
                let name = match op {
                    CmpOp::Eq => "feq",
                    CmpOp::Lt => "flt",
                    CmpOp::Le => "fle",
                };
                write!(
                    f,
                    "{name}.{} {},{},{}",
                    fmt_suffix(fmt),
                    xr(rd),
                    fr(rs1),
                    fr(rs2)
                )
            }
            FpInsn::Class { fmt, rd, rs1 } => {
                write!(f, "fclass.{} {},{}", fmt_suffix(fmt), xr(rd), fr(rs1))
            }
            FpInsn::CvtToInt {
                int,
                fmt,
                rd,
                rs1,
                rm,
            } => {
                let (i, s, rm) = (int_suffix(int), fmt_suffix(fmt), rm_operand(rm, DYN));
                write!(f, "fcvt.{i}.{s} {},{}{rm}", xr(rd), fr(rs1))
            }
            FpInsn::CvtFromInt {
                fmt,
                int,
                rd,
                rs1,
                rm,
            } => {
                // Every 32-bit integer is exact as a double: the assembler encodes rne.
                let exact = fmt == Fmt::D && matches!(int, IntFmt::W | IntFmt::Wu);
                let rm = rm_operand(rm, if exact { RNE } else { DYN });
                let (s, i) = (fmt_suffix(fmt), int_suffix(int));
                write!(f, "fcvt.{s}.{i} {},{}{rm}", fr(rd), xr(rs1))
            }
            FpInsn::CvtFmt {
                fmt: Fmt::S,
                rd,
                rs1,
                rm,
            } => {
                write!(f, "fcvt.s.d {},{}{}", fr(rd), fr(rs1), rm_operand(rm, DYN))
            }
            FpInsn::CvtFmt {
                fmt: Fmt::D,
                rd,
                rs1,
                rm,
            } => {
                write!(f, "fcvt.d.s {},{}{}", fr(rd), fr(rs1), rm_operand(rm, RNE))
            }
            FpInsn::MvToInt { fmt, rd, rs1 } => {
                let w = if fmt == Fmt::S { "w" } else { "d" };
                write!(f, "fmv.x.{w} {},{}", xr(rd), fr(rs1))
            }
            FpInsn::MvFromInt { fmt, rd, rs1 } => {
                let w = if fmt == Fmt::S { "w" } else { "d" };
                write!(f, "fmv.{w}.x {},{}", fr(rd), xr(rs1))
            }
        }
    }
}
