//! The compiling engine: hot decoded blocks are translated to host code with
//! Cranelift and run in place of the interpreter, with the same results at the same
//! instruction counts.
//!
//! Why it is exact:
//! - It runs the interpreter's blocks (same start, same end, same instructions) and
//!   only whole: a block that does not fit before `until` is interpreted.
//! - Each instruction does what `Hart::execute` does; whatever is not compiled
//!   natively (CSRs, system instructions, atomics, floating point) calls
//!   `Hart::execute` itself through a helper.
//! - A block leaves early exactly where the interpreter's loop leaves it: after a
//!   trap (the trapping instruction counted), or after an access that raised the bus's
//!   attention flag (MMIO, a write to a page holding cached code).
//! - Memory accesses take an inline fast path only where the interpreter's result is
//!   known without side effects: aligned, a software-TLB hit with no SUM/MXR flag
//!   (privileged spec 4.3.1), RAM, and for stores a page already dirty and holding no
//!   cached code. Everything else calls the interpreter's own `load`/`store`.
//! - Compiled code depends on the data-translation mode (bare, U, S), which is fixed
//!   while a batch runs: every change of privilege, `mstatus.MPRV` or `satp` raises
//!   the hart's attention flag and ends the batch. Addresses that depend on the pc are
//!   computed from the pc at entry, so a physical block runs at any virtual address.
//! - Nothing it keeps is guest state: the machine state hash and snapshots are the
//!   same under both engines, and they can be switched between any two runs.

// The only unsafe code outside guest RAM: calling generated code, and the helpers it
// calls back (STYLE.md convention 1).
#![allow(unsafe_code)]

mod arena;
mod helpers;
#[cfg(test)]
mod tests;
mod translate;

use super::decode::Insn;
use super::Hart;
use crate::bus::Bus;
use arena::{AddError, Arena};
use cranelift_codegen::settings::{self, Configurable};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// An exit's unfilled link slot (null: none).
#[derive(Clone, Copy)]
pub(crate) struct LinkSlot(*const Cell<usize>);

impl LinkSlot {
    /// No slot.
    pub const NONE: LinkSlot = LinkSlot(std::ptr::null());
}

/// Which engine runs guest code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Decode once, interpret: the reference.
    Interp,
    /// Compile hot blocks to host code (falls back to `Interp` where the host has no
    /// code generator).
    #[default]
    Jit,
}

impl std::str::FromStr for Engine {
    type Err = String;
    fn from_str(s: &str) -> Result<Engine, String> {
        match s {
            "jit" => Ok(Engine::Jit),
            "interp" => Ok(Engine::Interp),
            _ => Err(format!("unknown engine '{s}' (expected jit or interp)")),
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Interp => "interp",
            Engine::Jit => "jit",
        })
    }
}

/// Default code-cache limit.
pub const DEFAULT_CODE_CACHE: usize = 64 << 20;

/// Default number of interpreted runs of a block before it is compiled: compiling
/// costs as much as interpreting a short block some hundreds of times, and most code
/// a boot runs never gets that hot (BENCHMARKS.md, engine tuning).
pub const DEFAULT_HOT: u32 = 1000;

/// The data-address translation compiled code assumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataMode {
    /// Physical addresses (M-mode without MPRV, or `satp.MODE` = Bare).
    Bare,
    /// Sv39 through the U-mode TLB.
    User,
    /// Sv39 through the S-mode TLB.
    Super,
}

/// What compiled code and its helpers share with the dispatcher, for one call.
#[repr(C)]
pub(crate) struct JitCtx {
    hart: *mut Hart,
    bus: *mut Bus,
    ram: *mut u8,
    page_flags: *const u8,
    tlb: *const u8,
    /// A helper's second result (a loaded value).
    scratch: u64,
    /// The instruction count compiled code must not pass (a block checks that it fits).
    until: u64,
    /// Set by a block that left through an unfilled link slot: the slot's address.
    link: *const Cell<usize>,
    /// A panic caught in a helper, resumed by the dispatcher once the generated
    /// frames are gone (they have no unwind information).
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// A compiled block's entry point (in Cranelift's tail-call convention: called only
/// through the trampoline or from another block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockFn(*const u8);

/// The entry from Rust into compiled code: calls the block `f` with `ctx`.
type Trampoline = unsafe extern "C" fn(ctx: *mut JitCtx, f: *const u8);

/// Link slots of a compiled block: the entry points of the blocks its same-page
/// exits jump to, once known (0 until then).
type Links = Box<[Cell<usize>; 2]>;

/// Code-cache figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    /// Blocks compiled since the machine started.
    pub compiled: u64,
    /// Guest instructions in them.
    pub compiled_insns: u64,
    /// Bytes of host code in the cache now.
    pub code_bytes: u64,
    /// The cache's size limit.
    pub code_limit: u64,
    /// Times the cache was emptied because it was full.
    pub flushes: u64,
    /// Blocks the code generator refused (they stay interpreted).
    pub refused: u64,
    /// Host time spent translating and compiling (a statistic for benchmarks; it
    /// never reaches guest state).
    pub compile_time: std::time::Duration,
}

/// A block's decoded instructions with their lengths.
type BlockInsns = Rc<[(Insn, u8)]>;

/// The compiler and its code cache.
pub(crate) struct Jit {
    isa: cranelift_codegen::isa::OwnedTargetIsa,
    fctx: cranelift_frontend::FunctionBuilderContext,
    ctx: cranelift_codegen::Context,
    arena: Arena,
    /// What the compiled code points at, kept until the arena is emptied: the
    /// instructions (for helper calls) and the link slots.
    keep: Vec<(BlockInsns, Links)>,
    /// Calls compiled code from Rust (in the arena; rebuilt after it is emptied).
    trampoline: Option<Trampoline>,
    /// Interpreted runs of a block before it is compiled.
    pub hot: u32,
    stats: JitStats,
    /// When the current [`crate::Machine::run`] call began, and the compile time spent
    /// in it (see [`Jit::may_compile`]).
    call: (Instant, Duration),
}

/// Compile time a single run call may always spend; beyond it, compiling may take
/// at most as long as the call has spent executing. A burst of cold code (a new
/// backup, a fresh process, a new program) is then spread over several calls instead
/// of holding one for hundreds of milliseconds, so the caller still services its
/// world between calls: a primary's heartbeats and acks keep flowing (a 400 ms burst
/// once made a healthy primary look dead to its backup). Host time decides only which
/// engine runs a block, never what the block does.
const COMPILE_ALLOWANCE: Duration = Duration::from_millis(5);

/// The result of [`Jit::compile`].
pub(crate) enum Compiled {
    /// Ready to run.
    Code(BlockFn),
    /// The cache was full and has been emptied: every earlier entry point is gone.
    Flushed,
    /// The block stays interpreted.
    Refused,
}

impl Jit {
    /// A compiler for this host, or `None` if Cranelift has no backend for it.
    pub fn new(code_limit: usize, hot: u32) -> Option<Jit> {
        let mut flags = settings::builder();
        // Measured on Linux boot and benchmarks (BENCHMARKS.md): Cranelift's
        // optimizer costs more compile time than it saves on blocks this short; its
        // single-pass register allocator compiles faster but runs markedly slower.
        flags.set("opt_level", "none").ok()?;
        flags.set("regalloc_algorithm", "backtracking").ok()?;
        let verify = if cfg!(debug_assertions) {
            "true"
        } else {
            "false"
        };
        flags.set("enable_verifier", verify).ok()?;
        // Tail calls (chained blocks) need frame pointers in this backend.
        flags.set("preserve_frame_pointers", "true").ok()?;
        let isa = cranelift_native::builder()
            .ok()?
            .finish(settings::Flags::new(flags))
            .ok()?;
        Some(Jit {
            isa,
            fctx: cranelift_frontend::FunctionBuilderContext::new(),
            ctx: cranelift_codegen::Context::new(),
            arena: Arena::new(code_limit),
            keep: Vec::new(),
            trampoline: None,
            hot,
            stats: JitStats {
                code_limit: code_limit as u64,
                ..JitStats::default()
            },
            call: (Instant::now(), Duration::ZERO),
        })
    }

    /// Figures for reports.
    pub fn stats(&self) -> JitStats {
        JitStats {
            code_bytes: self.arena.used() as u64,
            code_limit: self.arena.capacity() as u64,
            ..self.stats
        }
    }

    /// A run call begins: its compile budget starts afresh.
    pub fn begin_call(&mut self) {
        self.call = (Instant::now(), Duration::ZERO);
    }

    /// Whether a hot block may be compiled now: within the allowance, or while the
    /// call's compile time stays below its execution time.
    pub fn may_compile(&self) -> bool {
        let (started, compiling) = self.call;
        compiling <= COMPILE_ALLOWANCE || compiling <= started.elapsed().saturating_sub(compiling)
    }

    /// Compile `insns` (a block starting at physical address `paddr` in RAM) for
    /// `mode`.
    pub fn compile(
        &mut self,
        insns: &BlockInsns,
        paddr: u64,
        mode: DataMode,
        ram_size: u64,
    ) -> Compiled {
        let started = Instant::now();
        let done = self.translate_and_emit(insns, paddr, mode, ram_size);
        let took = started.elapsed();
        self.stats.compile_time += took;
        self.call.1 += took;
        done
    }

    fn translate_and_emit(
        &mut self,
        insns: &BlockInsns,
        paddr: u64,
        mode: DataMode,
        ram_size: u64,
    ) -> Compiled {
        if self.trampoline.is_none() && !self.add_trampoline() {
            return self.failed();
        }
        let links: Links = Box::new([Cell::new(0), Cell::new(0)]);
        let mut next = 0;
        let mut slot = || {
            let s = links[next.min(1)].as_ptr() as usize;
            next += 1;
            s
        };
        self.ctx.clear();
        translate::block(
            &mut self.ctx.func,
            &mut self.fctx,
            self.isa.as_ref(),
            insns,
            mode,
            ram_size,
            paddr & 0xfff,
            &mut slot,
        );
        debug_assert!(next <= 2, "a block has at most two same-page exits");
        let addr = match self.emit() {
            Ok(a) => a,
            Err(c) => return c,
        };
        self.keep.push((insns.clone(), links));
        self.stats.compiled += 1;
        self.stats.compiled_insns += insns.len() as u64;
        Compiled::Code(BlockFn(addr))
    }

    /// Compile the function in `self.ctx` into the arena.
    fn emit(&mut self) -> Result<*const u8, Compiled> {
        let mut ctrl = cranelift_codegen::control::ControlPlane::default();
        let code = match self.ctx.compile(self.isa.as_ref(), &mut ctrl) {
            Ok(c) if c.buffer.relocs().is_empty() => c.code_buffer(),
            _ => {
                self.stats.refused += 1;
                return Err(Compiled::Refused);
            }
        };
        match self.arena.add(code) {
            Ok(addr) => Ok(addr),
            Err(AddError::Full) => {
                self.flush();
                self.stats.flushes += 1;
                Err(Compiled::Flushed)
            }
            Err(AddError::Refused) => Err(self.failed()),
        }
    }

    /// The host refused memory or code: empty the cache; blocks stay interpreted.
    fn failed(&mut self) -> Compiled {
        self.flush();
        self.stats.refused += 1;
        Compiled::Flushed
    }

    /// Compile the trampoline into the (empty) arena.
    fn add_trampoline(&mut self) -> bool {
        self.ctx.clear();
        translate::trampoline(&mut self.ctx.func, &mut self.fctx, self.isa.as_ref());
        match self.emit() {
            Ok(addr) => {
                // SAFETY: `addr` holds the trampoline Cranelift generated with the
                // `Trampoline` signature in the host's C calling convention, in
                // executable memory mapped until the arena is emptied (which also
                // drops this pointer).
                self.trampoline =
                    Some(unsafe { std::mem::transmute::<*const u8, Trampoline>(addr) });
                true
            }
            Err(_) => false,
        }
    }

    /// Empty the cache (the caller forgets every entry point).
    fn flush(&mut self) {
        self.arena.clear();
        self.keep.clear();
        self.trampoline = None;
    }
}

impl Hart {
    /// The data-translation mode for the current privilege, MPRV and satp.
    pub(crate) fn data_mode(&self) -> DataMode {
        use super::trap::Priv;
        let prv = self.data_priv();
        if prv == Priv::M || self.s.csr.satp >> 60 == 0 {
            DataMode::Bare
        } else if prv == Priv::U {
            DataMode::User
        } else {
            DataMode::Super
        }
    }

    /// Run the compiled block `f` (and the blocks it chains to) from the current pc,
    /// never past `until`. Returns the link slot the last block left through
    /// unfilled, if any: [`Hart::link`] it to the next block if that is compiled.
    #[inline]
    pub(crate) fn run_compiled(&mut self, bus: &mut Bus, f: BlockFn, until: u64) -> LinkSlot {
        let Some(trampoline) = self.jit.as_ref().and_then(|j| j.trampoline) else {
            return LinkSlot(std::ptr::null());
        };
        let (ram, page_flags) = bus.ram.raw_parts();
        let mut ctx = JitCtx {
            tlb: self.tlb.raw_base(),
            hart: self,
            bus,
            ram,
            page_flags,
            scratch: 0,
            until,
            link: std::ptr::null(),
            panic: None,
        };
        // SAFETY: `f` and the trampoline came from `Jit::compile` and the arena has
        // not been emptied since (emptying it drops every entry point and link). The
        // generated code accesses only `ctx`, the hart's registers, pc, icount and
        // attention flag, the bus's attention flag, the TLB, guest RAM within its size,
        // the page flags and link slots, through the pointers set just above, while
        // this function holds the only references to them; helpers it calls turn the
        // pointers back into references one at a time.
        unsafe { trampoline(&mut ctx, f.0) };
        if let Some(p) = ctx.panic.take() {
            std::panic::resume_unwind(p);
        }
        LinkSlot(ctx.link)
    }

    /// Make the exit behind `slot` jump to `f` from now on. The exit's target is the
    /// block `f` was compiled from (same page, so same translation; the page's code
    /// generation is the same while either runs), for the same data mode.
    #[inline]
    pub(crate) fn link(slot: LinkSlot, f: BlockFn) {
        // SAFETY: a non-null slot points into a `Links` the JIT keeps until the arena
        // is emptied, which also drops `f`; the dispatcher links only within a batch.
        if let Some(cell) = unsafe { slot.0.as_ref() } {
            cell.set(f.0 as usize);
        }
    }
}
