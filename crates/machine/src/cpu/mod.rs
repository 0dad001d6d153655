//! One RV64GC hart: architectural state, the fetch/decode cache and the interpreter
//! loop. Execution is split by extension: `exec` (I, M, A, Zicsr, system), `fp` (F, D),
//! `csr` (the CSR file), `mmu` (Sv39 and the software TLB), `trap` (causes, trap entry).

pub mod csr;
pub mod decode;
mod disasm;
mod exec;
pub mod fp;
pub mod mmu;
pub mod trap;

use crate::bus::Bus;
use decode::Insn;
use serde::{Deserialize, Serialize};
pub use trap::{Exception, Priv};

/// Decoded-instruction cache entries (direct-mapped by physical address).
const ICACHE_ENTRIES: usize = 1 << 14;

#[derive(Clone, Copy)]
struct ICacheEntry {
    paddr: u64,
    raw: u32,
    len: u8,
    insn: Insn,
}

const EMPTY_ICACHE: ICacheEntry = ICacheEntry {
    paddr: u64::MAX,
    raw: 0,
    len: 0,
    insn: Insn::Illegal,
};

/// Architectural state of a hart: everything guest-visible, nothing cached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HartState {
    /// Integer registers; index 32 is the sink for writes to x0.
    #[serde(with = "regs33")]
    pub x: [u64; 33],
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
    /// Control and status registers.
    pub csr: csr::Csrs,
}

/// A hart: state plus host-side caches that never affect guest-visible behaviour.
pub struct Hart {
    /// Architectural state.
    pub s: HartState,
    pub(crate) tlb: Box<mmu::Tlb>,
    icache: Box<[ICacheEntry]>,
    /// Interrupt inputs driven by devices: MSIP, MTIP, MEIP, SEIP (PLIC), STIP (Sstc).
    pub ext_mip: u64,
    /// Set when state changed so that the machine must re-check interrupts, timers or
    /// devices before the next instruction.
    pub attention: bool,
    /// Built-in SBI: an `ecall` from S-mode is handled by the machine, not trapped.
    pub sbi_intercept: bool,
    /// An intercepted SBI call waits for the machine.
    pub sbi_pending: bool,
}

impl Hart {
    /// A hart at reset: M-mode at `pc`.
    pub fn new(pc: u64) -> Hart {
        Hart::from_state(HartState {
            x: [0; 33],
            f: [0; 32],
            pc,
            prv: Priv::M,
            icount: 0,
            wfi: false,
            reservation: None,
            csr: csr::Csrs::reset(),
        })
    }

    /// A hart with the given architectural state and empty caches.
    pub fn from_state(s: HartState) -> Hart {
        Hart {
            s,
            tlb: Box::default(),
            icache: vec![EMPTY_ICACHE; ICACHE_ENTRIES].into_boxed_slice(),
            ext_mip: 0,
            attention: true,
            sbi_intercept: false,
            sbi_pending: false,
        }
    }

    /// Drop cached translations (satp write, SFENCE.VMA, restore).
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// Drop cached decoded instructions (FENCE.I, restore). The cache is also checked
    /// against the instruction bits on every hit, so stale code is never executed.
    pub fn flush_icache(&mut self) {
        self.icache.fill(EMPTY_ICACHE);
    }

    /// Execute instructions until `icount` reaches `until` or something needs the
    /// machine's attention (an interrupt may have become pending, a device was
    /// touched, WFI). Interrupts are checked by the caller before each batch.
    pub fn run_batch(&mut self, bus: &mut Bus, until: u64) {
        self.attention = false;
        while self.s.icount < until {
            self.step(bus);
            if self.attention | bus.attention {
                break;
            }
        }
    }

    /// Fetch, decode (cached) and execute one instruction.
    #[inline(always)]
    fn step(&mut self, bus: &mut Bus) {
        self.s.icount += 1;
        let (insn, len) = match self.fetch(bus) {
            Ok(v) => v,
            Err(e) => return self.take_exception(bus, e),
        };
        if let Err(e) = self.execute(bus, insn, len) {
            self.take_exception(bus, e);
        }
    }

    /// Fetch and decode the instruction at `pc`.
    #[inline(always)]
    fn fetch(&mut self, bus: &mut Bus) -> Result<(Insn, u64), Exception> {
        let pc = self.s.pc;
        let paddr = self.translate_fetch(bus, pc)?;
        if (paddr & 0xfff) <= 0xffc {
            if let Some(off) = bus.ram.offset(paddr, 4) {
                let word = bus.ram.read_at::<4>(off) as u32;
                let raw = if word & 3 == 3 { word } else { word & 0xffff };
                let e = &mut self.icache[(paddr >> 1) as usize & (ICACHE_ENTRIES - 1)];
                if e.paddr == paddr && e.raw == raw {
                    return Ok((e.insn, e.len as u64));
                }
                let (insn, len) = decode_raw(raw);
                *e = ICacheEntry {
                    paddr,
                    raw,
                    len: len as u8,
                    insn,
                };
                return Ok((insn, len));
            }
        }
        self.fetch_slow(bus, pc)
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

/// Decode an instruction whose low bits select its length; returns it and its length.
#[inline]
pub fn decode_raw(raw: u32) -> (Insn, u64) {
    if raw & 3 == 3 {
        (decode::decode32(raw), 4)
    } else {
        (decode::decode16(raw as u16), 2)
    }
}

/// serde for the 33-slot register file (serde derives arrays only up to 32).
mod regs33 {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(x: &[u64; 33], s: S) -> Result<S::Ok, S::Error> {
        x[..].serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 33], D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        let mut x: [u64; 33] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected 33 registers"))?;
        x[super::decode::X0_SINK as usize] = 0;
        x[0] = 0;
        Ok(x)
    }
}
