//! F and D extensions. (Placeholder until the SoftFloat-based implementation lands:
//! every F/D computational instruction decodes as illegal.)

use std::fmt;

/// A decoded F/D computational instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpInsn {
    raw: u32,
}

impl fmt::Display for FpInsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fp {:#010x}", self.raw)
    }
}

/// Decode an OP-FP / FMA instruction word.
pub fn decode(_raw: u32) -> Option<FpInsn> {
    None
}

/// What an executed instruction changed.
pub struct FpEffect {
    /// An f register was written.
    pub wrote_f: bool,
    /// fflags was written.
    pub wrote_fflags: bool,
}

/// A reserved rounding mode.
#[derive(Debug)]
pub struct IllegalFp;

/// Execute an F/D instruction.
pub fn execute(
    _i: FpInsn,
    _x: &mut [u64; 33],
    _f: &mut [u64; 32],
    _frm: u8,
    _fflags: &mut u8,
) -> Result<FpEffect, IllegalFp> {
    Err(IllegalFp)
}

/// NaN-box a single (unprivileged spec 12.2).
pub fn nan_box_s(bits: u32) -> u64 {
    0xffff_ffff_0000_0000 | bits as u64
}
