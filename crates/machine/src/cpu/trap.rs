//! Traps: exception and interrupt causes (privileged spec 3.1.15, table 3.6).

use serde::{Deserialize, Serialize};

/// Privilege level (privileged spec 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum Priv {
    /// User mode.
    U = 0,
    /// Supervisor mode.
    S = 1,
    /// Machine mode.
    M = 3,
}

impl Priv {
    /// The level encoded as in `mstatus.MPP`; the reserved value 2 reads as U.
    pub fn from_bits(b: u64) -> Priv {
        match b & 3 {
            3 => Priv::M,
            1 => Priv::S,
            _ => Priv::U,
        }
    }
}

/// Synchronous exception codes (`mcause` with the interrupt bit clear).
#[allow(missing_docs)]
pub mod cause {
    pub const INSN_MISALIGNED: u64 = 0;
    pub const INSN_ACCESS: u64 = 1;
    pub const ILLEGAL_INSN: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const LOAD_MISALIGNED: u64 = 4;
    pub const LOAD_ACCESS: u64 = 5;
    pub const STORE_MISALIGNED: u64 = 6;
    pub const STORE_ACCESS: u64 = 7;
    pub const ECALL_U: u64 = 8;
    pub const ECALL_S: u64 = 9;
    pub const ECALL_M: u64 = 11;
    pub const INSN_PAGE_FAULT: u64 = 12;
    pub const LOAD_PAGE_FAULT: u64 = 13;
    pub const STORE_PAGE_FAULT: u64 = 15;
}

/// Interrupt numbers (bit positions in `mip`/`mie`).
#[allow(missing_docs)]
pub mod irq {
    pub const SSI: u64 = 1;
    pub const MSI: u64 = 3;
    pub const STI: u64 = 5;
    pub const MTI: u64 = 7;
    pub const SEI: u64 = 9;
    pub const MEI: u64 = 11;
}

/// A synchronous exception raised by an instruction: a value, never a Rust error
/// (STYLE.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Exception code (see [`cause`]).
    pub cause: u64,
    /// Value for `mtval`/`stval`.
    pub tval: u64,
}

impl Exception {
    /// An exception with the given cause and trap value.
    #[inline]
    pub fn new(cause: u64, tval: u64) -> Exception {
        Exception { cause, tval }
    }
}

/// The kind of memory access, for translation and fault causes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Instruction fetch.
    Fetch,
    /// Data load.
    Load,
    /// Data store or AMO.
    Store,
}

impl Access {
    /// The page-fault cause for this access.
    pub fn page_fault(self) -> u64 {
        match self {
            Access::Fetch => cause::INSN_PAGE_FAULT,
            Access::Load => cause::LOAD_PAGE_FAULT,
            Access::Store => cause::STORE_PAGE_FAULT,
        }
    }

    /// The access-fault cause for this access.
    pub fn access_fault(self) -> u64 {
        match self {
            Access::Fetch => cause::INSN_ACCESS,
            Access::Load => cause::LOAD_ACCESS,
            Access::Store => cause::STORE_ACCESS,
        }
    }
}

/// Marker `tval` for an illegal instruction whose bits the trap entry fills in.
pub const TVAL_INSN_BITS: u64 = u64::MAX - 1;

impl Exception {
    /// Illegal instruction at the current pc; trap entry reads the instruction bits
    /// into `mtval`/`stval` (so the hot path never carries them).
    #[inline]
    pub fn illegal_here() -> Exception {
        Exception::new(cause::ILLEGAL_INSN, TVAL_INSN_BITS)
    }
}

use super::csr::mstatus;
use super::Hart;
use crate::bus::Bus;

/// Interrupts in priority order (privileged spec 3.1.9).
const PRIORITY: [u64; 6] = [irq::MEI, irq::MSI, irq::MTI, irq::SEI, irq::SSI, irq::STI];

impl Hart {
    /// Take a synchronous exception at the current pc. A fetch fault whose handler is
    /// the faulting address itself can never make progress: it is flagged as a trap
    /// loop for the machine to report.
    pub fn take_exception(&mut self, bus: &mut Bus, mut e: Exception) {
        if e.cause == cause::ILLEGAL_INSN && e.tval == TVAL_INSN_BITS {
            // The fetch of this instruction just succeeded, so this cannot fault.
            e.tval = self.fetch_raw(bus, self.s.pc).unwrap_or(0) as u64;
        }
        let from = self.s.pc;
        self.trap(e.cause, e.tval, false);
        if matches!(e.cause, cause::INSN_ACCESS | cause::INSN_PAGE_FAULT) && self.s.pc == from {
            self.trap_loop = true;
        }
    }

    /// The interrupt to take now, if any (privileged spec 3.1.9).
    pub fn pending_interrupt(&self) -> Option<u64> {
        let c = &self.s.csr;
        let pending = self.mip() & c.mie;
        if pending == 0 {
            return None;
        }
        let m_enabled = self.s.prv < Priv::M || c.mstatus & mstatus::MIE != 0;
        let s_enabled =
            self.s.prv < Priv::S || (self.s.prv == Priv::S && c.mstatus & mstatus::SIE != 0);
        let m_pending = if m_enabled { pending & !c.mideleg } else { 0 };
        let s_pending = if s_enabled { pending & c.mideleg } else { 0 };
        let take = if m_pending != 0 { m_pending } else { s_pending };
        PRIORITY.iter().copied().find(|&i| take & (1 << i) != 0)
    }

    /// Take interrupt `i` (from [`Hart::pending_interrupt`]).
    pub fn take_interrupt(&mut self, i: u64) {
        self.s.wfi = false;
        self.trap(i, 0, true);
    }

    /// Trap entry (privileged spec 3.1.6.1, 3.1.7, 4.1.1): choose M or S by delegation,
    /// save pc, cause and tval, stack the interrupt-enable bits, jump to the vector.
    fn trap(&mut self, code: u64, tval: u64, interrupt: bool) {
        self.s.reservation = None;
        let c = &mut self.s.csr;
        let deleg = if interrupt { c.mideleg } else { c.medeleg };
        let cause = code | if interrupt { 1 << 63 } else { 0 };
        let prv = self.s.prv;
        if prv <= Priv::S && (deleg >> code) & 1 != 0 {
            c.sepc = self.s.pc;
            c.scause = cause;
            c.stval = tval;
            let mut m = c.mstatus;
            m = if m & mstatus::SIE != 0 {
                m | mstatus::SPIE
            } else {
                m & !mstatus::SPIE
            };
            m &= !mstatus::SIE;
            m = if prv == Priv::S {
                m | mstatus::SPP
            } else {
                m & !mstatus::SPP
            };
            c.mstatus = m;
            self.s.prv = Priv::S;
            self.s.pc = vector(c.stvec, code, interrupt);
        } else {
            c.mepc = self.s.pc;
            c.mcause = cause;
            c.mtval = tval;
            let mut m = c.mstatus;
            m = if m & mstatus::MIE != 0 {
                m | mstatus::MPIE
            } else {
                m & !mstatus::MPIE
            };
            m &= !mstatus::MIE;
            m = (m & !mstatus::MPP) | ((prv as u64) << mstatus::MPP_SHIFT);
            c.mstatus = m;
            self.s.prv = Priv::M;
            self.s.pc = vector(c.mtvec, code, interrupt);
        }
        self.attention = true;
    }
}

/// The handler address for `xtvec` (privileged spec 3.1.7): vectored mode sends
/// interrupts to base + 4 × cause.
fn vector(tvec: u64, code: u64, interrupt: bool) -> u64 {
    let base = tvec & !3;
    if interrupt && tvec & 3 == 1 {
        base + 4 * code
    } else {
        base
    }
}
