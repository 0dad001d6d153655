//! Sv39 address translation (privileged spec 4.3–4.4) and the software TLB.
//!
//! The TLB is direct-mapped per (effective privilege, access kind). An entry is filled
//! only after a walk that passed every permission check for that kind and privilege,
//! with A (and for stores D) already set, so a hit needs one compare. Entries of U pages
//! seen from S-mode and of execute-only pages seen by loads remember it, and a hit is
//! rechecked against `mstatus.SUM`/`MXR`, so `mstatus` writes never flush.

use super::csr::mstatus;
use super::trap::{Access, Exception, Priv};
use super::Hart;
use crate::bus::Bus;

pub(crate) const TLB_ENTRIES: usize = 256;
const PAGE_SHIFT: u64 = 12;
const INVALID: u64 = u64::MAX;

/// Entry flag: a U page (needs SUM for S-mode data access).
const F_USER: u8 = 1;
/// Entry flag: readable only through MXR.
const F_MXR: u8 = 2;

/// A TLB entry; compiled code reads it at the offsets below.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Entry {
    vpn: u64,
    ppage: u64,
    flags: u8,
}

const EMPTY: Entry = Entry {
    vpn: INVALID,
    ppage: 0,
    flags: 0,
};

/// The software TLB: [privilege U/S][fetch/load/store][entry].
pub struct Tlb {
    sets: [[[Entry; TLB_ENTRIES]; 3]; 2],
}

impl Default for Tlb {
    fn default() -> Tlb {
        Tlb {
            sets: [[[EMPTY; TLB_ENTRIES]; 3]; 2],
        }
    }
}

/// Where compiled code finds an entry's fields, and a set's first entry.
pub(crate) mod layout {
    use super::{Entry, TLB_ENTRIES};
    use crate::cpu::trap::{Access, Priv};
    /// Size of an entry.
    pub const ENTRY: usize = std::mem::size_of::<Entry>();
    /// Offset of the virtual page number.
    pub const VPN: usize = std::mem::offset_of!(Entry, vpn);
    /// Offset of the physical page address.
    pub const PPAGE: usize = std::mem::offset_of!(Entry, ppage);
    /// Offset of the flags byte.
    pub const FLAGS: usize = std::mem::offset_of!(Entry, flags);
    /// Offset of the set for privilege `prv` (U or S) and access `acc` from
    /// [`super::Tlb::raw_base`].
    pub fn set(prv: Priv, acc: Access) -> usize {
        ((prv as usize) * 3 + acc as usize) * TLB_ENTRIES * ENTRY
    }
}

impl Tlb {
    /// The address of the first set, for compiled code (see [`layout`]).
    pub(crate) fn raw_base(&self) -> *const u8 {
        self.sets.as_ptr().cast()
    }

    /// Invalidate every entry.
    pub fn flush(&mut self) {
        *self = Tlb::default();
    }
}

// PTE bits (privileged spec 4.3.1).
const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_U: u64 = 1 << 4;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;
/// Bits 63..54: reserved (and Svpbmt/Svnapot, not implemented) must be zero.
const PTE_RESERVED: u64 = 0x3ff << 54;

impl Hart {
    /// The privilege that data accesses use (MPRV, privileged spec 3.1.6.3).
    #[inline(always)]
    pub(crate) fn data_priv(&self) -> Priv {
        let c = &self.s.csr;
        if self.s.prv == Priv::M && c.mstatus & mstatus::MPRV != 0 {
            Priv::from_bits(c.mstatus >> mstatus::MPP_SHIFT)
        } else {
            self.s.prv
        }
    }

    /// Translate an instruction fetch address.
    #[inline(always)]
    pub fn translate_fetch(&mut self, bus: &mut Bus, va: u64) -> Result<u64, Exception> {
        let prv = self.s.prv;
        self.translate(bus, va, Access::Fetch, prv)
    }

    /// Translate a data address for a load or store.
    #[inline(always)]
    pub fn translate_data(
        &mut self,
        bus: &mut Bus,
        va: u64,
        access: Access,
    ) -> Result<u64, Exception> {
        let prv = self.data_priv();
        self.translate(bus, va, access, prv)
    }

    #[inline(always)]
    fn translate(
        &mut self,
        bus: &mut Bus,
        va: u64,
        access: Access,
        prv: Priv,
    ) -> Result<u64, Exception> {
        if prv == Priv::M || self.s.csr.satp >> 60 == 0 {
            return Ok(va);
        }
        let vpn = va >> PAGE_SHIFT;
        let e = self.tlb.sets[prv as usize][access as usize][vpn as usize & (TLB_ENTRIES - 1)];
        if e.vpn == vpn && (e.flags == 0 || self.flags_ok(e.flags)) {
            return Ok(e.ppage | (va & 0xfff));
        }
        self.walk(bus, va, access, prv)
    }

    fn flags_ok(&self, flags: u8) -> bool {
        let m = self.s.csr.mstatus;
        (flags & F_USER == 0 || m & mstatus::SUM != 0)
            && (flags & F_MXR == 0 || m & mstatus::MXR != 0)
    }

    /// Walk the Sv39 page table (privileged spec 4.3.2), updating A/D bits in memory.
    fn walk(
        &mut self,
        bus: &mut Bus,
        va: u64,
        access: Access,
        prv: Priv,
    ) -> Result<u64, Exception> {
        let fault = Exception::new(access.page_fault(), va);
        // Bits 63..39 must equal bit 38 (4.4.1).
        if ((va as i64) << 25 >> 25) as u64 != va {
            return Err(fault);
        }
        let mut table = (self.s.csr.satp & ((1 << 44) - 1)) << PAGE_SHIFT;
        let mut level = 2;
        let (pte, pte_addr) = loop {
            let idx = (va >> (PAGE_SHIFT + 9 * level)) & 0x1ff;
            let addr = table + idx * 8;
            let off = bus
                .ram
                .offset(addr, 8)
                .ok_or(Exception::new(access.access_fault(), va))?;
            let pte = bus.ram.read_at::<8>(off);
            if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte & PTE_RESERVED != 0
            {
                return Err(fault);
            }
            if pte & (PTE_R | PTE_X) != 0 {
                break (pte, off);
            }
            // Non-leaf PTEs must have D, A, U clear (4.3.2 step 4).
            if level == 0 || pte & (PTE_D | PTE_A | PTE_U) != 0 {
                return Err(fault);
            }
            level -= 1;
            table = ((pte >> 10) & ((1 << 44) - 1)) << PAGE_SHIFT;
        };
        let mstatus = self.s.csr.mstatus;
        let user = pte & PTE_U != 0;
        let mut flags = 0;
        match prv {
            Priv::U if !user => return Err(fault),
            Priv::S if user => {
                if access == Access::Fetch || mstatus & mstatus::SUM == 0 {
                    return Err(fault);
                }
                flags |= F_USER;
            }
            _ => {}
        }
        let allowed = match access {
            Access::Fetch => pte & PTE_X != 0,
            Access::Load => {
                if pte & PTE_R == 0 && pte & PTE_X != 0 {
                    flags |= F_MXR;
                }
                pte & PTE_R != 0 || (pte & PTE_X != 0 && mstatus & mstatus::MXR != 0)
            }
            Access::Store => pte & PTE_W != 0,
        };
        if !allowed {
            return Err(fault);
        }
        let ppn = (pte >> 10) & ((1 << 44) - 1);
        // A misaligned superpage is a page fault (4.3.2 step 6).
        let low_mask = (1u64 << (9 * level)) - 1;
        if ppn & low_mask != 0 {
            return Err(fault);
        }
        // Hardware A/D update (4.3.2 step 7), done atomically: one hart, no DMA mid-walk.
        let mut new = pte | PTE_A;
        if access == Access::Store {
            new |= PTE_D;
        }
        if new != pte && bus.ram.write_at::<8>(pte_addr, new) {
            bus.attention = true;
        }
        let page = (ppn | ((va >> PAGE_SHIFT) & low_mask)) << PAGE_SHIFT;
        let vpn = va >> PAGE_SHIFT;
        self.tlb.sets[prv as usize][access as usize][vpn as usize & (TLB_ENTRIES - 1)] = Entry {
            vpn,
            ppage: page,
            flags,
        };
        Ok(page | (va & 0xfff))
    }
}
