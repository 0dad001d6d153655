//! SiFive PLIC (platform-level interrupt controller) as on QEMU virt
//! (`riscv,plic0` / `sifive,plic-1.0.0`).
//!
//! Register map (RISC-V PLIC spec 1.0.0 §3): priorities at `0x0 + 4*src`, pending bits
//! at `0x1000`, enable bits at `0x2000 + 0x80*ctx`, threshold at `0x20_0000 +
//! 0x1000*ctx`, claim/complete at `0x20_0004 + 0x1000*ctx`. Only aligned 32-bit
//! accesses act; others read 0 and are ignored.
//!
//! Sources are level-triggered. The gateway (spec §5) lets one request through at a
//! time: a source is pending while its level is high and it is not in service. A claim
//! takes it in service; a completion ends that, and a still-high level makes it pending
//! again. As in QEMU, a source whose level drops before being claimed stops pending.

use super::Mmio;
use serde::{Deserialize, Serialize};

/// Number of interrupt sources, including the reserved source 0 (QEMU virt: 96).
pub const NUM_SOURCES: u32 = 96;
/// Highest priority (and threshold) value: priorities are 3 bits, as on QEMU virt.
pub const MAX_PRIORITY: u32 = 7;
/// Words in a per-source bit array.
const WORDS: usize = (NUM_SOURCES as usize).div_ceil(32);

/// Offset of the priority registers.
pub const PRIORITY_BASE: u64 = 0x0;
/// Offset of the pending bits.
pub const PENDING_BASE: u64 = 0x1000;
/// Offset of context 0's enable bits.
pub const ENABLE_BASE: u64 = 0x2000;
/// Distance between contexts' enable bits.
pub const ENABLE_STRIDE: u64 = 0x80;
/// Offset of context 0's threshold register.
pub const CONTEXT_BASE: u64 = 0x20_0000;
/// Distance between contexts' threshold registers.
pub const CONTEXT_STRIDE: u64 = 0x1000;

/// Per-context (hart and privilege mode) registers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlicContext {
    /// Enable bit per source (bit 0 hardwired to zero).
    enable: [u32; WORDS],
    /// Priority threshold: only sources with a priority above it interrupt.
    threshold: u32,
}

/// PLIC state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plic {
    /// Priority per source (index 0 unused, always 0).
    priority: Vec<u32>,
    /// Input level per source, as set by [`Plic::set_level`].
    level: [u32; WORDS],
    /// Sources claimed and not yet completed (in service at the gateway).
    in_service: [u32; WORDS],
    /// Contexts: on QEMU virt hart 0 has context 0 (M-mode) and 1 (S-mode).
    contexts: Vec<PlicContext>,
}

/// Word index and bit mask of `src` in a bit array.
fn bit(src: u32) -> (usize, u32) {
    ((src / 32) as usize, 1 << (src % 32))
}

impl Plic {
    /// A PLIC with `contexts` contexts (at least 1), in its reset state: all
    /// priorities, thresholds and enables zero, nothing pending.
    pub fn new(contexts: usize) -> Plic {
        let max = ((CONTEXT_BASE - ENABLE_BASE) / ENABLE_STRIDE) as usize;
        Plic {
            priority: vec![0; NUM_SOURCES as usize],
            level: [0; WORDS],
            in_service: [0; WORDS],
            contexts: vec![PlicContext::default(); contexts.clamp(1, max)],
        }
    }

    /// Whether restored state has the shape the register map indexes without checks:
    /// a priority per source and `1..=max` contexts (a snapshot is not trusted).
    pub fn is_valid(&self) -> bool {
        let max = ((CONTEXT_BASE - ENABLE_BASE) / ENABLE_STRIDE) as usize;
        self.priority.len() == NUM_SOURCES as usize && (1..=max).contains(&self.contexts.len())
    }

    /// Number of contexts.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// Set the input level of source `src`. Source 0 and unknown sources are ignored.
    pub fn set_level(&mut self, src: u32, high: bool) {
        if src == 0 || src >= NUM_SOURCES {
            return;
        }
        let (w, m) = bit(src);
        if high {
            self.level[w] |= m;
        } else {
            self.level[w] &= !m;
        }
    }

    /// Pending bits word `w`: level high and not in service.
    fn pending_word(&self, w: usize) -> u32 {
        self.level[w] & !self.in_service[w] & !1
    }

    /// Whether source `src` is pending.
    pub fn pending(&self, src: u32) -> bool {
        if src >= NUM_SOURCES {
            return false;
        }
        let (w, m) = bit(src);
        self.pending_word(w) & m != 0
    }

    /// The highest-priority pending source enabled for `ctx` whose priority is above
    /// the context's threshold; ties go to the lowest id (spec §4, §6).
    fn best(&self, ctx: usize) -> Option<u32> {
        let c = self.contexts.get(ctx)?;
        let mut best: Option<(u32, u32)> = None;
        for w in 0..WORDS {
            let mut bits = self.pending_word(w) & c.enable[w];
            while bits != 0 {
                let src = (w as u32) * 32 + bits.trailing_zeros();
                bits &= bits - 1;
                let prio = self.priority[src as usize];
                if prio > c.threshold && best.is_none_or(|(_, p)| prio > p) {
                    best = Some((src, prio));
                }
            }
        }
        best.map(|(src, _)| src)
    }

    /// Whether context `ctx`'s interrupt line (MEIP or SEIP) is asserted.
    pub fn context_interrupt(&self, ctx: usize) -> bool {
        self.best(ctx).is_some()
    }

    /// Claim (spec §9): the best source for `ctx`, now in service; 0 if none.
    fn claim(&mut self, ctx: usize) -> u32 {
        let Some(src) = self.best(ctx) else {
            return 0;
        };
        let (w, m) = bit(src);
        self.in_service[w] |= m;
        src
    }

    /// Completion (spec §10): ends service of `src`. Ignored if `src` is not enabled
    /// for `ctx`.
    fn complete(&mut self, ctx: usize, src: u32) {
        if src == 0 || src >= NUM_SOURCES {
            return;
        }
        let (w, m) = bit(src);
        if self.contexts[ctx].enable[w] & m != 0 {
            self.in_service[w] &= !m;
        }
    }

    /// Which register an aligned word offset names.
    fn decode(&self, offset: u64) -> Option<Reg> {
        let n = self.contexts.len() as u64;
        let words = WORDS as u64;
        if offset < PENDING_BASE {
            let src = (offset - PRIORITY_BASE) / 4;
            return (src < u64::from(NUM_SOURCES)).then_some(Reg::Priority(src as u32));
        }
        if offset < ENABLE_BASE {
            let w = (offset - PENDING_BASE) / 4;
            return (w < words).then_some(Reg::Pending(w as usize));
        }
        if offset < CONTEXT_BASE {
            let rel = offset - ENABLE_BASE;
            let (ctx, w) = (rel / ENABLE_STRIDE, (rel % ENABLE_STRIDE) / 4);
            return (ctx < n && w < words).then_some(Reg::Enable(ctx as usize, w as usize));
        }
        let rel = offset - CONTEXT_BASE;
        let ctx = rel / CONTEXT_STRIDE;
        if ctx >= n {
            return None;
        }
        match rel % CONTEXT_STRIDE {
            0 => Some(Reg::Threshold(ctx as usize)),
            4 => Some(Reg::Claim(ctx as usize)),
            _ => None,
        }
    }
}

/// A PLIC register.
#[derive(Clone, Copy, Debug)]
enum Reg {
    Priority(u32),
    Pending(usize),
    Enable(usize, usize),
    Threshold(usize),
    Claim(usize),
}

impl Mmio for Plic {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        let v = match self.decode(offset) {
            Some(Reg::Priority(src)) => self.priority[src as usize],
            Some(Reg::Pending(w)) => self.pending_word(w),
            Some(Reg::Enable(ctx, w)) => self.contexts[ctx].enable[w],
            Some(Reg::Threshold(ctx)) => self.contexts[ctx].threshold,
            Some(Reg::Claim(ctx)) => self.claim(ctx),
            None => 0,
        };
        u64::from(v)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if size != 4 || !offset.is_multiple_of(4) {
            return;
        }
        let value = value as u32;
        match self.decode(offset) {
            // Source 0 does not exist: its priority stays 0 (spec §4).
            Some(Reg::Priority(0)) => {}
            Some(Reg::Priority(src)) => self.priority[src as usize] = value & MAX_PRIORITY,
            // Pending bits are read-only here: they follow the gateways.
            Some(Reg::Pending(_)) => {}
            Some(Reg::Enable(ctx, w)) => {
                let hardwired = if w == 0 { !1 } else { !0 };
                self.contexts[ctx].enable[w] = value & hardwired;
            }
            Some(Reg::Threshold(ctx)) => self.contexts[ctx].threshold = value & MAX_PRIORITY,
            Some(Reg::Claim(ctx)) => self.complete(ctx, value),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIM0: u64 = CONTEXT_BASE + 4;
    const CLAIM1: u64 = CONTEXT_BASE + CONTEXT_STRIDE + 4;

    fn enable(p: &mut Plic, ctx: u64, src: u32) {
        let off = ENABLE_BASE + ENABLE_STRIDE * ctx + 4 * u64::from(src / 32);
        let v = p.read(off, 4) | (1 << (src % 32));
        p.write(off, 4, v);
    }

    fn prio(p: &mut Plic, src: u32, v: u64) {
        p.write(4 * u64::from(src), 4, v);
    }

    #[test]
    fn claim_complete_level_cycle() {
        let mut p = Plic::new(2);
        prio(&mut p, 10, 1);
        enable(&mut p, 1, 10);
        assert!(!p.context_interrupt(1));
        p.set_level(10, true);
        assert!(p.pending(10));
        assert_eq!(p.read(PENDING_BASE, 4), 1 << 10);
        assert!(p.context_interrupt(1));
        assert!(!p.context_interrupt(0), "not enabled for context 0");
        assert_eq!(p.read(CLAIM1, 4), 10);
        assert!(!p.pending(10) && !p.context_interrupt(1));
        assert_eq!(p.read(CLAIM1, 4), 0, "in service: no second claim");
        // Still high at completion: pending again.
        p.write(CLAIM1, 4, 10);
        assert!(p.context_interrupt(1));
        assert_eq!(p.read(CLAIM1, 4), 10);
        p.set_level(10, false);
        p.write(CLAIM1, 4, 10);
        assert!(!p.pending(10) && !p.context_interrupt(1));
    }

    #[test]
    fn priority_threshold_and_ties() {
        let mut p = Plic::new(2);
        for src in [3, 5, 40, 70] {
            enable(&mut p, 0, src);
            p.set_level(src, true);
        }
        // Priority 0 never interrupts.
        assert!(!p.context_interrupt(0));
        prio(&mut p, 3, 2);
        prio(&mut p, 5, 2);
        prio(&mut p, 40, 6);
        prio(&mut p, 70, 6);
        p.write(CONTEXT_BASE, 4, 6);
        assert!(!p.context_interrupt(0), "priorities must exceed threshold");
        p.write(CONTEXT_BASE, 4, 1);
        assert_eq!(p.read(CLAIM0, 4), 40, "tie on 6 goes to lowest id");
        assert_eq!(p.read(CLAIM0, 4), 70);
        assert_eq!(p.read(CLAIM0, 4), 3);
        assert_eq!(p.read(CLAIM0, 4), 5);
        assert_eq!(p.read(CLAIM0, 4), 0);
    }

    #[test]
    fn masking_and_hardwired_bits() {
        let mut p = Plic::new(2);
        prio(&mut p, 1, 0xffff_ffff);
        assert_eq!(p.read(4, 4), 7);
        prio(&mut p, 0, 5);
        assert_eq!(p.read(0, 4), 0);
        p.write(ENABLE_BASE, 4, 0xffff_ffff);
        assert_eq!(p.read(ENABLE_BASE, 4), 0xffff_fffe);
        p.write(CONTEXT_BASE + CONTEXT_STRIDE, 4, 0x1f);
        assert_eq!(p.read(CONTEXT_BASE + CONTEXT_STRIDE, 4), 7);
        p.set_level(0, true);
        p.set_level(96, true);
        p.set_level(1000, true);
        assert_eq!(p.read(PENDING_BASE, 4), 0);
        // Context 2 does not exist; unknown and odd-sized accesses are harmless.
        assert_eq!(p.read(CONTEXT_BASE + 2 * CONTEXT_STRIDE + 4, 4), 0);
        p.write(ENABLE_BASE + 2 * ENABLE_STRIDE, 4, 1);
        assert_eq!(p.read(4, 8), 0);
        assert_eq!(p.read(0x1000 + 12, 4), 0);
        assert_eq!(p.read(u64::MAX - 3, 4), 0);
    }

    #[test]
    fn complete_of_disabled_source_is_ignored() {
        let mut p = Plic::new(2);
        prio(&mut p, 7, 1);
        enable(&mut p, 0, 7);
        p.set_level(7, true);
        assert_eq!(p.read(CLAIM0, 4), 7);
        p.write(CLAIM1, 4, 7);
        assert!(!p.pending(7), "context 1 has 7 disabled");
        p.write(CLAIM0, 4, 7);
        assert!(p.pending(7));
    }

    #[test]
    fn serde_round_trip() {
        let mut p = Plic::new(2);
        prio(&mut p, 10, 3);
        enable(&mut p, 1, 10);
        p.set_level(10, true);
        p.read(CLAIM1, 4);
        let bytes = postcard::to_stdvec(&p).unwrap();
        let back: Plic = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, p);
    }
}
