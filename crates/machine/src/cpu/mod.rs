//! One RV64GC hart: architectural state, the fetch/decode cache and the interpreter
//! loop. Execution is split by extension: `exec` (I, M, A, Zicsr, system), `fp` (F, D),
//! `csr` (the CSR file), `mmu` (Sv39 and the software TLB), `trap` (causes, trap entry).

pub mod csr;
pub mod decode;
mod disasm;
mod exec;
pub mod fp;
pub mod jit;
pub mod mmu;
#[cfg(test)]
mod tests;
pub mod trap;

use crate::bus::Bus;
use decode::Insn;
use serde::{Deserialize, Serialize};
pub use trap::{Exception, Priv};

/// Blocks in the decoded-code cache (direct-mapped by physical address).
const BLOCK_SLOTS: usize = 1 << 16;
/// Longest block, in instructions.
const MAX_BLOCK: usize = 64;

/// A run of decoded instructions from one physical page, ending at the first
/// instruction that may change control flow or translation. Valid while its page's
/// generation is unchanged (every RAM write to a page holding cached code bumps it),
/// so the cache never changes guest-visible behaviour.
struct Block {
    paddr: u64,
    gen: u32,
    /// Shared so the run loop holds a handle (a non-atomic count: the machine is
    /// single-threaded) while executing.
    insns: std::rc::Rc<[(Insn, u8)]>,
    /// Times run by the interpreter while a JIT is attached ([`NEVER`]: not compilable).
    hits: u32,
    /// Compiled code and the data mode it was compiled for.
    code: Option<(jit::BlockFn, jit::DataMode)>,
}

/// [`Block::hits`] of a block the JIT refused.
const NEVER: u32 = u32::MAX;

/// Architectural state of a hart: everything guest-visible, nothing cached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    /// Integer registers; index 32 is the sink for writes to x0.
    pub x: Regs,
    /// FP registers (singles NaN-boxed).
    pub f: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// Current privilege level.
    pub prv: Priv,
    /// Instructions executed since reset.
    pub icount: u64,
    /// Sleeping in WFI.
    pub wfi: bool,
    /// LR reservation address.
    pub reservation: Option<u64>,
    /// Built-in SBI: an intercepted `ecall` from S-mode waits for the machine to handle
    /// it (state: a run may stop, and a snapshot be taken, between the two).
    pub sbi_pending: bool,
    /// Control and status registers.
    pub csr: csr::Csrs,
}

/// A hart: state plus host-side caches that never affect guest-visible behaviour.
pub struct Hart {
    /// Architectural state.
    pub s: HartState,
    pub(crate) tlb: Box<mmu::Tlb>,
    blocks: Vec<Option<Block>>,
    /// Interrupt inputs driven by devices: MSIP, MTIP, MEIP, SEIP (PLIC), STIP (Sstc).
    pub ext_mip: u64,
    /// Set when state changed so that the machine must re-check interrupts, timers or
    /// devices before the next instruction.
    pub attention: bool,
    /// Built-in SBI: an `ecall` from S-mode is handled by the machine, not trapped.
    pub sbi_intercept: bool,
    /// The hart is stuck: its trap handler's own address cannot be fetched.
    pub trap_loop: bool,
    /// The compiler, when the JIT engine is chosen.
    jit: Option<Box<jit::Jit>>,
}

impl Hart {
    /// A hart at reset: M-mode at `pc`.
    pub fn new(pc: u64) -> Hart {
        Hart::from_state(HartState {
            x: Regs::zero(),
            f: [0; 32],
            pc,
            prv: Priv::M,
            icount: 0,
            wfi: false,
            reservation: None,
            sbi_pending: false,
            csr: csr::Csrs::reset(),
        })
    }

    /// A hart with the given architectural state and empty caches.
    pub fn from_state(s: HartState) -> Hart {
        Hart {
            s,
            tlb: Box::default(),
            blocks: (0..BLOCK_SLOTS).map(|_| None).collect(),
            ext_mip: 0,
            attention: true,
            sbi_intercept: false,
            trap_loop: false,
            jit: None,
        }
    }

    /// Choose the engine; [`jit::Engine::Jit`] falls back to the interpreter where
    /// the host has no code generator. Results never depend on the choice.
    pub fn set_engine(&mut self, engine: jit::Engine, code_limit: usize, hot: u32) {
        self.drop_code();
        self.jit = match engine {
            jit::Engine::Interp => None,
            jit::Engine::Jit => jit::Jit::new(code_limit, hot).map(Box::new),
        };
    }

    /// The engine in use.
    pub fn engine(&self) -> jit::Engine {
        match self.jit {
            Some(_) => jit::Engine::Jit,
            None => jit::Engine::Interp,
        }
    }

    /// The JIT's code-cache figures, if it is in use.
    pub fn jit_stats(&self) -> Option<jit::JitStats> {
        self.jit.as_ref().map(|j| j.stats())
    }

    /// Forget every compiled entry point (before the code cache is emptied).
    fn drop_code(&mut self) {
        for b in self.blocks.iter_mut().flatten() {
            b.code = None;
        }
    }

    /// A run call begins (the JIT's compile budget is per call).
    pub fn begin_run(&mut self) {
        if let Some(j) = &mut self.jit {
            j.begin_call();
        }
    }

    /// Drop cached translations (satp write, SFENCE.VMA, restore).
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// Execute instructions until `icount` reaches `until` or something needs the
    /// machine's attention (an interrupt may have become pending, a device was
    /// touched, WFI). Interrupts are checked by the caller before each batch.
    pub fn run_batch(&mut self, bus: &mut Bus, until: u64) {
        self.attention = false;
        // Fixed for the batch: whatever changes it raises the attention flag.
        let mode = self.jit.as_ref().map(|_| self.data_mode());
        // The exit the last compiled block left through, to link to the next one.
        let mut pending = jit::LinkSlot::NONE;
        while self.s.icount < until && !(self.attention | bus.attention) {
            // Only the very next block may be linked to that exit.
            let exit = std::mem::replace(&mut pending, jit::LinkSlot::NONE);
            let slot = match self.block_at_pc(bus) {
                Ok(Some(slot)) => slot,
                Ok(None) => {
                    // An instruction straddling a page (or RAM's end): run it alone.
                    self.s.icount += 1;
                    let pc = self.s.pc;
                    match self
                        .fetch_slow(bus, pc)
                        .and_then(|(insn, len)| self.execute(bus, insn, pc, len))
                    {
                        Ok(next) => self.s.pc = next,
                        Err(e) => self.take_exception(bus, e),
                    }
                    continue;
                }
                Err(e) => {
                    self.s.icount += 1;
                    self.take_exception(bus, e);
                    continue;
                }
            };
            if let Some(mode) = mode {
                if let Some(f) = self.compiled(bus, slot, mode, until) {
                    Hart::link(exit, f);
                    pending = self.run_compiled(bus, f, until);
                    continue;
                }
            }
            // A cheap handle on the block's instructions: execution never touches the
            // block cache, and a local slice keeps the loop tight.
            let Some(insns) = self.blocks[slot].as_ref().map(|b| b.insns.clone()) else {
                continue;
            };
            let n = insns.len().min((until - self.s.icount) as usize);
            let mut pc = self.s.pc;
            for &(insn, ilen) in &insns[..n] {
                self.s.icount += 1;
                match self.execute(bus, insn, pc, ilen as u64) {
                    Ok(next) => pc = next,
                    Err(e) => {
                        self.s.pc = pc;
                        self.take_exception(bus, e);
                        pc = self.s.pc;
                        break;
                    }
                }
                // Only loads and stores (MMIO, writes to cached code) raise the bus's
                // flag mid-block; instructions that set the hart's flag end blocks.
                if bus.attention {
                    break;
                }
            }
            self.s.pc = pc;
        }
    }

    /// The compiled code for the block in `slot`, compiling it if it is hot; `None`
    /// if it must be interpreted (not hot yet, refused, or longer than the budget).
    #[inline]
    fn compiled(
        &mut self,
        bus: &mut Bus,
        slot: usize,
        mode: jit::DataMode,
        until: u64,
    ) -> Option<jit::BlockFn> {
        let hot = self.jit.as_ref()?.hot;
        let b = self.blocks[slot].as_mut()?;
        if b.insns.len() as u64 > until - self.s.icount {
            return None;
        }
        if let Some((f, m)) = b.code {
            if m == mode {
                return Some(f);
            }
        }
        if b.hits == NEVER {
            return None;
        }
        if b.hits < hot {
            b.hits += 1;
            return None;
        }
        // Hot, but this call's compile budget is spent: interpreted this time, compiled
        // in a later call (it stays hot).
        if !self.jit.as_ref()?.may_compile() {
            return None;
        }
        let b = self.blocks[slot].as_mut()?;
        let (insns, paddr) = (b.insns.clone(), b.paddr);
        match self
            .jit
            .as_mut()?
            .compile(&insns, paddr, mode, bus.ram.size())
        {
            jit::Compiled::Code(f) => {
                let b = self.blocks[slot].as_mut()?;
                b.code = Some((f, mode));
                Some(f)
            }
            jit::Compiled::Flushed => {
                self.drop_code();
                None
            }
            jit::Compiled::Refused => {
                self.blocks[slot].as_mut()?.hits = NEVER;
                None
            }
        }
    }

    /// The cached block starting at `pc` (decoding it if needed), as a slot index;
    /// `None` if the first instruction cannot be cached (it straddles a page).
    #[inline(always)]
    fn block_at_pc(&mut self, bus: &mut Bus) -> Result<Option<usize>, Exception> {
        let pc = self.s.pc;
        let paddr = self.translate_fetch(bus, pc)?;
        let off = match bus.ram.offset(paddr, 2) {
            Some(off) => off,
            None => return Err(Exception::new(trap::cause::INSN_ACCESS, pc)),
        };
        let slot = (paddr as usize >> 1) & (BLOCK_SLOTS - 1);
        if let Some(b) = &self.blocks[slot] {
            if b.paddr == paddr && b.gen == bus.ram.code_gen(off) {
                return Ok(Some(slot));
            }
        }
        let insns = decode_block(bus, paddr, off);
        if insns.is_empty() {
            return Ok(None);
        }
        let bytes = insns.iter().map(|&(_, len)| len as usize).sum();
        let gen = bus.ram.cache_code(off, bytes);
        self.blocks[slot] = Some(Block {
            paddr,
            gen,
            insns: insns.into(),
            hits: 0,
            code: None,
        });
        Ok(Some(slot))
    }

    /// Fetch across a page boundary or from the end of RAM.
    fn fetch_slow(&mut self, bus: &mut Bus, pc: u64) -> Result<(Insn, u64), Exception> {
        self.fetch_raw(bus, pc).map(decode_raw)
    }

    /// The raw bits (16 or 32) of the instruction at virtual address `pc`.
    pub fn fetch_raw(&mut self, bus: &mut Bus, pc: u64) -> Result<u32, Exception> {
        let read16 = |h: &mut Hart, bus: &mut Bus, va: u64| -> Result<u32, Exception> {
            let pa = h.translate_fetch(bus, va)?;
            match bus.ram.offset(pa, 2) {
                Some(off) => Ok(bus.ram.read_at::<2>(off) as u32),
                None => Err(Exception::new(trap::cause::INSN_ACCESS, va)),
            }
        };
        let lo = read16(self, bus, pc)?;
        if lo & 3 != 3 {
            return Ok(lo);
        }
        Ok(lo | read16(self, bus, pc.wrapping_add(2))? << 16)
    }
}

/// Decode instructions from RAM offset `off` (physical `paddr`) up to the end of the
/// page, the first control-flow or system instruction, or [`MAX_BLOCK`].
fn decode_block(bus: &Bus, paddr: u64, off: usize) -> Vec<(Insn, u8)> {
    let page_end = (paddr | 0xfff) + 1;
    let mut out = Vec::new();
    let (mut pa, mut o) = (paddr, off);
    while out.len() < MAX_BLOCK && pa + 2 <= page_end && bus.ram.offset(pa, 2).is_some() {
        let lo = bus.ram.read_at::<2>(o) as u32;
        let raw = if lo & 3 == 3 {
            if pa + 4 > page_end || bus.ram.offset(pa, 4).is_none() {
                break;
            }
            bus.ram.read_at::<4>(o) as u32
        } else {
            lo
        };
        let (insn, len) = decode_raw(raw);
        out.push((insn, len as u8));
        pa += len;
        o += len as usize;
        if ends_block(&insn) {
            break;
        }
    }
    out
}

/// Instructions after which the next pc, privilege or translation may change.
fn ends_block(i: &Insn) -> bool {
    use Insn::*;
    matches!(
        i,
        Jal { .. }
            | Jalr { .. }
            | Beq { .. }
            | Bne { .. }
            | Blt { .. }
            | Bge { .. }
            | Bltu { .. }
            | Bgeu { .. }
            | Ecall
            | Ebreak
            | Mret
            | Sret
            | Wfi
            | FenceI
            | SfenceVma { .. }
            | Csr { .. }
            | CsrI { .. }
            | Illegal
    )
}

/// Decode an instruction whose low bits select its length; returns it and its length.
#[inline]
pub fn decode_raw(raw: u32) -> (Insn, u64) {
    if raw & 3 == 3 {
        (decode::decode32(raw), 4)
    } else {
        (decode::decode16(raw as u16), 2)
    }
}

/// The integer register file: x0..x31 plus slots nobody reads, so that indexing is
/// masked (never bounds-checked) and writes to x0 go to a sink (see [`decode::X0_SINK`]).
/// Only x0..x31 are state: equality and serde ignore the rest.
#[derive(Clone, Debug)]
pub struct Regs(pub [u64; 64]);

impl Regs {
    /// All registers zero.
    pub fn zero() -> Regs {
        Regs([0; 64])
    }
}

impl std::ops::Index<usize> for Regs {
    type Output = u64;
    #[inline(always)]
    fn index(&self, i: usize) -> &u64 {
        &self.0[i & 63]
    }
}

impl std::ops::IndexMut<usize> for Regs {
    #[inline(always)]
    fn index_mut(&mut self, i: usize) -> &mut u64 {
        &mut self.0[i & 63]
    }
}

impl PartialEq for Regs {
    fn eq(&self, o: &Regs) -> bool {
        self.0[..32] == o.0[..32]
    }
}

impl Eq for Regs {}

impl Serialize for Regs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0[..32].serialize(s)
    }
}

impl<'de> Deserialize<'de> for Regs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Regs, D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        if v.len() != 32 || v[0] != 0 {
            return Err(serde::de::Error::custom(
                "expected 32 registers with x0 = 0",
            ));
        }
        let mut x = Regs::zero();
        x.0[..32].copy_from_slice(&v);
        Ok(x)
    }
}
