//! What compiled code calls for the rare paths: the interpreter's own loads, stores
//! and instructions, so that their effects are exactly the interpreter's.
//!
//! Before a call the generated code has stored the instruction's pc and the
//! instruction count including it (device time reads it), and for [`interp`] every
//! register it changed. Results: [`CONTINUE`], [`STOP`] (the bus raised its attention
//! flag: leave the block after this instruction), [`TRAPPED`] (an exception was taken;
//! pc is the handler's).

use super::JitCtx;
use crate::bus::Bus;
use crate::cpu::decode::Insn;
use crate::cpu::trap::Exception;
use crate::cpu::Hart;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Carry on with the block.
pub(super) const CONTINUE: u64 = 0;
/// The access succeeded and the bus wants attention: leave after this instruction.
pub(super) const STOP: u64 = 1;
/// The instruction trapped; the trap has been taken.
pub(super) const TRAPPED: u64 = 2;

/// Run `f` on the hart and bus behind `ctx`; a panic is kept for the dispatcher to
/// resume (unwinding cannot cross generated frames) and ends the block.
#[inline(always)]
unsafe fn with(ctx: *mut JitCtx, f: impl FnOnce(&mut Hart, &mut Bus, &mut u64) -> u64) -> u64 {
    // SAFETY: the dispatcher built `ctx` from live references for this call
    // (`Hart::run_compiled`), and nothing else uses them while the helper runs.
    let ctx = unsafe { &mut *ctx };
    let (hart, bus) = unsafe { (&mut *ctx.hart, &mut *ctx.bus) };
    let scratch = &mut ctx.scratch;
    match catch_unwind(AssertUnwindSafe(|| f(hart, bus, scratch))) {
        Ok(r) => r,
        Err(p) => {
            ctx.panic = Some(p);
            TRAPPED
        }
    }
}

/// The helper's result for an interpreter step that returned `r`.
#[inline(always)]
fn status(hart: &mut Hart, bus: &mut Bus, r: Result<(), Exception>) -> u64 {
    match r {
        Ok(()) if bus.attention => STOP,
        Ok(()) => CONTINUE,
        Err(e) => {
            hart.take_exception(bus, e);
            TRAPPED
        }
    }
}

/// A load of `N` bytes at `va` (value, zero-extended, in `scratch`).
pub(super) unsafe extern "C" fn load<const N: usize>(ctx: *mut JitCtx, va: u64) -> u64 {
    unsafe {
        with(ctx, |hart, bus, scratch| {
            let r = hart.load::<N>(bus, va).map(|v| *scratch = v);
            status(hart, bus, r)
        })
    }
}

/// A store of the low `N` bytes of `v` at `va`.
pub(super) unsafe extern "C" fn store<const N: usize>(ctx: *mut JitCtx, va: u64, v: u64) -> u64 {
    unsafe {
        with(ctx, |hart, bus, _| {
            let r = hart.store::<N>(bus, va, v);
            status(hart, bus, r)
        })
    }
}

/// Execute one instruction with the interpreter at the hart's pc, which this sets to
/// the next instruction's (or the trap handler's).
pub(super) unsafe extern "C" fn interp(ctx: *mut JitCtx, insn: *const (Insn, u8)) -> u64 {
    // SAFETY: `insn` points into a block the JIT keeps alive as long as this code.
    let (insn, len) = unsafe { *insn };
    unsafe {
        with(ctx, |hart, bus, _| {
            let pc = hart.s.pc;
            let r = hart
                .execute(bus, insn, pc, len as u64)
                .map(|next| hart.s.pc = next);
            status(hart, bus, r)
        })
    }
}
