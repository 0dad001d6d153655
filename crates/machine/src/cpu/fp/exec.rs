//! Execution of F/D instructions on SoftFloat.
//!
//! SoftFloat keeps its rounding mode and exception flags in thread-local globals. Every
//! call goes through [`Exec::soft`], which clears the flags first and collects them
//! after, and every call that rounds is given its rounding mode explicitly, so no state
//! leaks between instructions or harts.

use super::{
    flags, nan_box_s, unbox_s, ArithOp, CmpOp, FmaOp, Fmt, FpEffect, FpInsn, IllegalFp, IntFmt,
    SgnjOp,
};
use super::{CANONICAL_NAN_D, CANONICAL_NAN_S};
use softfloat_wrapper::{ExceptionFlags, Float, RoundingMode, F32, F64};

/// Execute `insn` on the x and f register files. `frm` is fcsr.frm; exceptions raised
/// are ORed into `fflags`. Nothing is written when the rounding mode is reserved.
pub fn execute(
    insn: FpInsn,
    x: &mut [u64; 32],
    f: &mut [u64; 32],
    frm: u8,
    fflags: &mut u8,
) -> Result<FpEffect, IllegalFp> {
    let mut e = Exec {
        x,
        f,
        frm,
        raised: 0,
        wrote_f: false,
    };
    match insn {
        FpInsn::CvtFmt {
            fmt: Fmt::S,
            rd,
            rs1,
            rm,
        } => {
            let rnd = e.rounding(rm)?;
            let a = F64::read(e.f[idx(rs1)]);
            let r = e.soft(|| a.to_f32(rnd));
            e.set_f(rd, r.reg());
        }
        FpInsn::CvtFmt {
            fmt: Fmt::D,
            rd,
            rs1,
            rm,
        } => {
            let rnd = e.rounding(rm)?;
            let a = F32::read(e.f[idx(rs1)]);
            let r = e.soft(|| a.to_f64(rnd));
            e.set_f(rd, r.reg());
        }
        // FMV moves raw bits: no unboxing on the way out, NaN-boxing on the way in.
        FpInsn::MvToInt { fmt, rd, rs1 } => {
            let v = e.f[idx(rs1)];
            e.set_x(rd, if fmt == Fmt::S { sext32(v) } else { v });
        }
        FpInsn::MvFromInt { fmt, rd, rs1 } => {
            let v = e.x[idx(rs1)];
            e.set_f(
                rd,
                if fmt == Fmt::S {
                    nan_box_s(v as u32)
                } else {
                    v
                },
            );
        }
        _ if fmt_of(insn) == Fmt::S => e.exec::<F32>(insn)?,
        _ => e.exec::<F64>(insn)?,
    }
    *fflags |= e.raised;
    Ok(FpEffect {
        wrote_f: e.wrote_f,
        wrote_fflags: e.raised != 0,
    })
}

/// A SoftFloat format as held in a 64-bit f register.
trait Prec: Float + Copy {
    /// The canonical NaN as a register value.
    const NAN: u64;
    /// The value of an f register in this format (unboxing singles, spec 12.2).
    fn read(reg: u64) -> Self;
    /// The f register value holding `self` (NaN-boxing singles).
    fn reg(self) -> u64;
}

impl Prec for F32 {
    const NAN: u64 = nan_box_s(CANONICAL_NAN_S);
    fn read(reg: u64) -> Self {
        F32::from_bits(unbox_s(reg))
    }
    fn reg(self) -> u64 {
        nan_box_s(self.to_bits())
    }
}

impl Prec for F64 {
    const NAN: u64 = CANONICAL_NAN_D;
    fn read(reg: u64) -> Self {
        F64::from_bits(reg)
    }
    fn reg(self) -> u64 {
        self.to_bits()
    }
}

struct Exec<'a> {
    x: &'a mut [u64; 32],
    f: &'a mut [u64; 32],
    frm: u8,
    /// Exception flags raised by this instruction, in fflags layout.
    raised: u8,
    wrote_f: bool,
}

impl Exec<'_> {
    /// The effective rounding mode: rm, or frm when rm is 7 (dyn); spec 11.2 table 11.1.
    fn rounding(&self, rm: u8) -> Result<RoundingMode, IllegalFp> {
        let eff = if rm == 7 { self.frm } else { rm };
        Ok(match eff {
            0 => RoundingMode::TiesToEven,
            1 => RoundingMode::TowardZero,
            2 => RoundingMode::TowardNegative,
            3 => RoundingMode::TowardPositive,
            4 => RoundingMode::TiesToAway,
            _ => return Err(IllegalFp { rm, frm: self.frm }),
        })
    }

    /// Run one SoftFloat operation with fresh exception flags and keep what it raised.
    fn soft<R>(&mut self, op: impl FnOnce() -> R) -> R {
        ExceptionFlags::default().set();
        let r = op();
        let mut e = ExceptionFlags::default();
        e.get();
        for (raised, bit) in [
            (e.is_invalid(), flags::NV),
            (e.is_infinite(), flags::DZ),
            (e.is_overflow(), flags::OF),
            (e.is_underflow(), flags::UF),
            (e.is_inexact(), flags::NX),
        ] {
            if raised {
                self.raised |= bit;
            }
        }
        r
    }

    fn set_f(&mut self, rd: u8, v: u64) {
        self.f[idx(rd)] = v;
        self.wrote_f = true;
    }

    /// Writes to x0 are discarded.
    fn set_x(&mut self, rd: u8, v: u64) {
        if rd != 0 {
            self.x[idx(rd)] = v;
        }
    }

    fn get<T: Prec>(&self, rs: u8) -> T {
        T::read(self.f[idx(rs)])
    }

    /// The instructions whose operands (or result) all have format `T`.
    fn exec<T: Prec>(&mut self, insn: FpInsn) -> Result<(), IllegalFp> {
        match insn {
            FpInsn::Arith {
                op,
                rd,
                rs1,
                rs2,
                rm,
                ..
            } => {
                let rnd = self.rounding(rm)?;
                let (a, b) = (self.get::<T>(rs1), self.get::<T>(rs2));
                let r = self.soft(|| match op {
                    ArithOp::Add => a.add(b, rnd),
                    ArithOp::Sub => a.sub(b, rnd),
                    ArithOp::Mul => a.mul(b, rnd),
                    ArithOp::Div => a.div(b, rnd),
                });
                self.set_f(rd, r.reg());
            }
            FpInsn::Sqrt { rd, rs1, rm, .. } => {
                let rnd = self.rounding(rm)?;
                let a = self.get::<T>(rs1);
                let r = self.soft(|| a.sqrt(rnd));
                self.set_f(rd, r.reg());
            }
            FpInsn::Fma {
                op,
                rd,
                rs1,
                rs2,
                rs3,
                rm,
                ..
            } => {
                let rnd = self.rounding(rm)?;
                let (mut a, b, mut c) =
                    (self.get::<T>(rs1), self.get::<T>(rs2), self.get::<T>(rs3));
                // Negating an input is exact, so -(a*b)±c is (-a)*b±c with one rounding
                // (spec 11.6); NaN results are canonical whatever their input signs.
                if matches!(op, FmaOp::Nmsub | FmaOp::Nmadd) {
                    a = a.neg();
                }
                if matches!(op, FmaOp::Msub | FmaOp::Nmadd) {
                    c = c.neg();
                }
                let r = self.soft(|| a.fused_mul_add(b, c, rnd));
                self.set_f(rd, r.reg());
            }
            FpInsn::Sgnj {
                op, rd, rs1, rs2, ..
            } => {
                // Bit operations on the (unboxed, then re-boxed) values; spec 11.6.
                let (a, b) = (self.get::<T>(rs1).reg(), self.get::<T>(rs2).reg());
                let s = 1u64 << T::SIGN_POS;
                let sign = match op {
                    SgnjOp::Sgnj => b & s,
                    SgnjOp::Sgnjn => !b & s,
                    SgnjOp::Sgnjx => (a ^ b) & s,
                };
                self.set_f(rd, (a & !s) | sign);
            }
            FpInsn::MinMax {
                max, rd, rs1, rs2, ..
            } => {
                let (a, b) = (self.get::<T>(rs1), self.get::<T>(rs2));
                // The quiet compare raises NV exactly when an input is a signaling NaN.
                let lt = self.soft(|| a.lt_quiet(b));
                let r = match (a.is_nan(), b.is_nan()) {
                    (true, true) => T::NAN,
                    (true, false) => b.reg(),
                    (false, true) => a.reg(),
                    _ => {
                        // -0.0 is less than +0.0 here (spec 11.6).
                        let lt = lt || (a.is_negative_zero() && b.is_positive_zero());
                        if lt == max {
                            b.reg()
                        } else {
                            a.reg()
                        }
                    }
                };
                self.set_f(rd, r);
            }
            FpInsn::Cmp {
                op, rd, rs1, rs2, ..
            } => {
                let (a, b) = (self.get::<T>(rs1), self.get::<T>(rs2));
                let r = self.soft(|| match op {
                    CmpOp::Eq => a.eq(b),
                    CmpOp::Lt => a.lt(b),
                    CmpOp::Le => a.le(b),
                });
                self.set_x(rd, u64::from(r));
            }
            FpInsn::Class { rd, rs1, .. } => {
                let a = self.get::<T>(rs1);
                self.set_x(rd, 1 << class_bit(a));
            }
            FpInsn::CvtToInt {
                int, rd, rs1, rm, ..
            } => {
                let rnd = self.rounding(rm)?;
                let a = self.get::<T>(rs1);
                // SoftFloat's RISC-V specialisation saturates per spec table 11.4.
                let v = self.soft(|| match int {
                    IntFmt::W => a.to_i32(rnd, true) as u64,
                    IntFmt::Wu => sext32(u64::from(a.to_u32(rnd, true))),
                    IntFmt::L => a.to_i64(rnd, true) as u64,
                    IntFmt::Lu => a.to_u64(rnd, true),
                });
                self.set_x(rd, v);
            }
            FpInsn::CvtFromInt {
                int, rd, rs1, rm, ..
            } => {
                let rnd = self.rounding(rm)?;
                let v = self.x[idx(rs1)];
                let r = self.soft(|| match int {
                    IntFmt::W => T::from_i32(v as i32, rnd),
                    IntFmt::Wu => T::from_u32(v as u32, rnd),
                    IntFmt::L => T::from_i64(v as i64, rnd),
                    IntFmt::Lu => T::from_u64(v, rnd),
                });
                self.set_f(rd, r.reg());
            }
            FpInsn::CvtFmt { .. } | FpInsn::MvToInt { .. } | FpInsn::MvFromInt { .. } => {
                unreachable!("handled by execute")
            }
        }
        Ok(())
    }
}

/// The FCLASS result bit (spec 11.9 table 11.5).
fn class_bit<T: Prec>(a: T) -> u32 {
    if a.is_nan() {
        return if a.is_signaling_nan() { 8 } else { 9 };
    }
    let neg = a.is_negative();
    let k = if a.is_positive_infinity() || a.is_negative_infinity() {
        0
    } else if a.is_zero() {
        3
    } else if a.is_subnormal() {
        2
    } else {
        1
    };
    // Negative classes count up from -inf (bit 0), positive ones down from +inf (bit 7).
    if neg {
        k
    } else {
        7 - k
    }
}

/// The format that decides how `insn`'s operands are read.
fn fmt_of(insn: FpInsn) -> Fmt {
    match insn {
        FpInsn::Arith { fmt, .. }
        | FpInsn::Sqrt { fmt, .. }
        | FpInsn::Fma { fmt, .. }
        | FpInsn::Sgnj { fmt, .. }
        | FpInsn::MinMax { fmt, .. }
        | FpInsn::Cmp { fmt, .. }
        | FpInsn::Class { fmt, .. }
        | FpInsn::CvtToInt { fmt, .. }
        | FpInsn::CvtFromInt { fmt, .. }
        | FpInsn::CvtFmt { fmt, .. }
        | FpInsn::MvToInt { fmt, .. }
        | FpInsn::MvFromInt { fmt, .. } => fmt,
    }
}

/// Sign-extend the low 32 bits: how RV64 holds 32-bit results (spec 5.3, 11.7).
fn sext32(v: u64) -> u64 {
    v as u32 as i32 as i64 as u64
}

/// Register index; decode guarantees < 32, the mask keeps a hand-built insn from panicking.
fn idx(r: u8) -> usize {
    usize::from(r & 31)
}
