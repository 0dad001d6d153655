//! The CSR file (privileged spec ch. 2, 3.1, 4.1; Zicntr; Sstc).

use super::trap::{irq, Exception, Priv};
use super::Hart;
use serde::{Deserialize, Serialize};

/// `mstatus` bits (privileged spec 3.1.6).
#[allow(missing_docs)]
pub mod mstatus {
    pub const SIE: u64 = 1 << 1;
    pub const MIE: u64 = 1 << 3;
    pub const SPIE: u64 = 1 << 5;
    pub const MPIE: u64 = 1 << 7;
    pub const SPP: u64 = 1 << 8;
    pub const MPP_SHIFT: u64 = 11;
    pub const MPP: u64 = 3 << MPP_SHIFT;
    pub const FS_SHIFT: u64 = 13;
    pub const FS: u64 = 3 << FS_SHIFT;
    pub const MPRV: u64 = 1 << 17;
    pub const SUM: u64 = 1 << 18;
    pub const MXR: u64 = 1 << 19;
    pub const TVM: u64 = 1 << 20;
    pub const TW: u64 = 1 << 21;
    pub const TSR: u64 = 1 << 22;
    pub const UXL: u64 = 2 << 32;
    pub const SXL: u64 = 2 << 34;
    pub const SD: u64 = 1 << 63;
    /// Bits M-mode can write.
    pub const WRITABLE: u64 =
        SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    /// Bits visible through `sstatus`.
    pub const SSTATUS: u64 = SIE | SPIE | SPP | FS | SUM | MXR | (3 << 32) | SD;
}

/// CSR numbers.
#[allow(missing_docs)]
pub mod num {
    pub const FFLAGS: u16 = 0x001;
    pub const FRM: u16 = 0x002;
    pub const FCSR: u16 = 0x003;
    pub const CYCLE: u16 = 0xc00;
    pub const TIME: u16 = 0xc01;
    pub const INSTRET: u16 = 0xc02;
    pub const SSTATUS: u16 = 0x100;
    pub const SIE: u16 = 0x104;
    pub const STVEC: u16 = 0x105;
    pub const SCOUNTEREN: u16 = 0x106;
    pub const SENVCFG: u16 = 0x10a;
    pub const SSCRATCH: u16 = 0x140;
    pub const SEPC: u16 = 0x141;
    pub const SCAUSE: u16 = 0x142;
    pub const STVAL: u16 = 0x143;
    pub const SIP: u16 = 0x144;
    pub const STIMECMP: u16 = 0x14d;
    pub const SATP: u16 = 0x180;
    pub const MVENDORID: u16 = 0xf11;
    pub const MARCHID: u16 = 0xf12;
    pub const MIMPID: u16 = 0xf13;
    pub const MHARTID: u16 = 0xf14;
    pub const MCONFIGPTR: u16 = 0xf15;
    pub const MSTATUS: u16 = 0x300;
    pub const MISA: u16 = 0x301;
    pub const MEDELEG: u16 = 0x302;
    pub const MIDELEG: u16 = 0x303;
    pub const MIE: u16 = 0x304;
    pub const MTVEC: u16 = 0x305;
    pub const MCOUNTEREN: u16 = 0x306;
    pub const MENVCFG: u16 = 0x30a;
    pub const MCOUNTINHIBIT: u16 = 0x320;
    pub const MSCRATCH: u16 = 0x340;
    pub const MEPC: u16 = 0x341;
    pub const MCAUSE: u16 = 0x342;
    pub const MTVAL: u16 = 0x343;
    pub const MIP: u16 = 0x344;
    pub const MTINST: u16 = 0x34a;
    pub const MTVAL2: u16 = 0x34b;
    pub const PMPCFG0: u16 = 0x3a0;
    pub const PMPADDR0: u16 = 0x3b0;
    pub const MCYCLE: u16 = 0xb00;
    pub const MINSTRET: u16 = 0xb02;
}

/// `misa`: RV64 with A, C, D, F, I, M, S, U.
pub const MISA: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);
/// `menvcfg.STCE`: Sstc enabled (Sstc spec).
pub const MENVCFG_STCE: u64 = 1 << 63;
/// Interrupts S-mode may see and delegate.
pub const S_INTERRUPTS: u64 = (1 << irq::SSI) | (1 << irq::STI) | (1 << irq::SEI);
/// Interrupts implemented.
pub const ALL_INTERRUPTS: u64 = S_INTERRUPTS | (1 << irq::MSI) | (1 << irq::MTI) | (1 << irq::MEI);
/// Exceptions that may be delegated (all but ecall from M).
const MEDELEG_MASK: u64 = 0xb3ff;

/// The CSR values that are state (counters and time are derived from the icount).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Csrs {
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable `mip` bits (SSIP, STIP without Sstc, SEIP).
    pub mip: u64,
    pub mtvec: u64,
    pub mcounteren: u64,
    pub menvcfg: u64,
    pub mcountinhibit: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub stvec: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub satp: u64,
    pub stimecmp: u64,
    pub frm: u8,
    pub fflags: u8,
    pub pmpcfg: [u64; 8],
    pub pmpaddr: Vec<u64>,
    /// `mcycle - icount`, so writes to mcycle stick.
    pub cycle_offset: u64,
    /// `minstret - icount`.
    pub instret_offset: u64,
}

impl Csrs {
    /// Reset values (privileged spec 3.4).
    pub fn reset() -> Csrs {
        Csrs {
            mstatus: mstatus::UXL | mstatus::SXL,
            stimecmp: u64::MAX,
            pmpaddr: vec![0; 64],
            ..Csrs::default()
        }
    }
}

impl Hart {
    /// `mip` as the guest reads it: software bits plus device lines.
    #[inline]
    pub fn mip(&self) -> u64 {
        self.s.csr.mip | self.ext_mip
    }

    /// Read a CSR for the instruction at the current privilege, or raise illegal
    /// instruction (privileged spec 2.1: the top bits of the number give access rights).
    pub fn csr_read(&mut self, bus: &crate::bus::Bus, n: u16) -> Result<u64, Exception> {
        let prv = self.s.prv as u16;
        if (n >> 8) & 3 > prv {
            return Err(Exception::illegal_here());
        }
        let c = &self.s.csr;
        let fs_off = c.mstatus & mstatus::FS == 0;
        Ok(match n {
            num::FFLAGS | num::FRM | num::FCSR if fs_off => return Err(Exception::illegal_here()),
            num::FFLAGS => c.fflags as u64,
            num::FRM => c.frm as u64,
            num::FCSR => ((c.frm as u64) << 5) | c.fflags as u64,
            num::CYCLE..=0xc1f => {
                let bit = 1u64 << (n - num::CYCLE);
                if self.s.prv < Priv::M && c.mcounteren & bit == 0
                    || self.s.prv == Priv::U && c.scounteren & bit == 0
                {
                    return Err(Exception::illegal_here());
                }
                match n {
                    num::CYCLE => self.s.icount.wrapping_add(c.cycle_offset),
                    num::TIME => bus.clock.mtime(self.s.icount),
                    num::INSTRET => self.s.icount.wrapping_add(c.instret_offset),
                    _ => 0,
                }
            }
            num::SSTATUS => self.sstatus(),
            num::SIE => c.mie & c.mideleg,
            num::STVEC => c.stvec,
            num::SCOUNTEREN => c.scounteren,
            num::SENVCFG => c.senvcfg,
            num::SSCRATCH => c.sscratch,
            num::SEPC => c.sepc,
            num::SCAUSE => c.scause,
            num::STVAL => c.stval,
            num::SIP => self.mip() & c.mideleg,
            num::STIMECMP => {
                if self.s.prv == Priv::S && c.menvcfg & MENVCFG_STCE == 0 {
                    return Err(Exception::illegal_here());
                }
                c.stimecmp
            }
            num::SATP => {
                if self.s.prv == Priv::S && c.mstatus & mstatus::TVM != 0 {
                    return Err(Exception::illegal_here());
                }
                c.satp
            }
            num::MVENDORID | num::MARCHID | num::MIMPID | num::MHARTID | num::MCONFIGPTR => 0,
            num::MSTATUS => self.mstatus(),
            num::MISA => MISA,
            num::MEDELEG => c.medeleg,
            num::MIDELEG => c.mideleg,
            num::MIE => c.mie,
            num::MTVEC => c.mtvec,
            num::MCOUNTEREN => c.mcounteren,
            num::MENVCFG => c.menvcfg,
            num::MCOUNTINHIBIT => c.mcountinhibit,
            0x323..=0x33f => 0,
            num::MSCRATCH => c.mscratch,
            num::MEPC => c.mepc,
            num::MCAUSE => c.mcause,
            num::MTVAL => c.mtval,
            num::MIP => self.mip(),
            num::MTINST | num::MTVAL2 => 0,
            0x3a0..=0x3af => {
                if n & 1 == 1 {
                    return Err(Exception::illegal_here());
                }
                c.pmpcfg[((n - num::PMPCFG0) / 2) as usize]
            }
            0x3b0..=0x3ef => c.pmpaddr[(n - num::PMPADDR0) as usize],
            num::MCYCLE => self.s.icount.wrapping_add(c.cycle_offset),
            num::MINSTRET => self.s.icount.wrapping_add(c.instret_offset),
            0xb03..=0xb1f => 0,
            _ => return Err(Exception::illegal_here()),
        })
    }

    /// Write a CSR (after [`Hart::csr_read`] checked access). Read-only CSRs raise
    /// illegal instruction (privileged spec 2.1).
    pub fn csr_write(&mut self, n: u16, v: u64) -> Result<(), Exception> {
        if n >> 10 == 3 {
            return Err(Exception::illegal_here());
        }
        let icount = self.s.icount;
        let c = &mut self.s.csr;
        match n {
            num::FFLAGS => c.fflags = (v & 0x1f) as u8,
            num::FRM => c.frm = (v & 7) as u8,
            num::FCSR => {
                c.fflags = (v & 0x1f) as u8;
                c.frm = ((v >> 5) & 7) as u8;
            }
            num::SSTATUS => {
                let m = mstatus::SSTATUS & mstatus::WRITABLE;
                let nv = (c.mstatus & !m) | (v & m);
                self.set_mstatus(nv);
            }
            num::SIE => {
                let m = c.mideleg & ALL_INTERRUPTS;
                c.mie = (c.mie & !m) | (v & m);
            }
            num::STVEC => c.stvec = v & !2,
            num::SCOUNTEREN => c.scounteren = v & 0xffff_ffff,
            num::SENVCFG => c.senvcfg = v & 1,
            num::SSCRATCH => c.sscratch = v,
            num::SEPC => c.sepc = v & !1,
            num::SCAUSE => c.scause = v,
            num::STVAL => c.stval = v,
            num::SIP => {
                let m = c.mideleg & (1 << irq::SSI);
                c.mip = (c.mip & !m) | (v & m);
            }
            num::STIMECMP => c.stimecmp = v,
            num::SATP => {
                // Only Bare (0) and Sv39 (8) are supported; other modes leave satp
                // unchanged (privileged spec 4.1.11, WARL).
                let mode = v >> 60;
                if mode == 0 || mode == 8 {
                    // MODE, ASID (16 bits) and PPN (44 bits) fill all 64 bits.
                    c.satp = v;
                    self.tlb.flush();
                }
            }
            num::MSTATUS => {
                let m = mstatus::WRITABLE;
                let nv = (c.mstatus & !m) | (v & m);
                self.set_mstatus(nv);
            }
            num::MISA => {}
            num::MEDELEG => c.medeleg = v & MEDELEG_MASK,
            num::MIDELEG => c.mideleg = v & S_INTERRUPTS,
            num::MIE => c.mie = v & ALL_INTERRUPTS,
            num::MTVEC => c.mtvec = v & !2,
            num::MCOUNTEREN => c.mcounteren = v & 0xffff_ffff,
            num::MENVCFG => c.menvcfg = v & (MENVCFG_STCE | 1),
            num::MCOUNTINHIBIT => c.mcountinhibit = v & 0xffff_fffd,
            0x323..=0x33f => {}
            num::MSCRATCH => c.mscratch = v,
            num::MEPC => c.mepc = v & !1,
            num::MCAUSE => c.mcause = v,
            num::MTVAL => c.mtval = v,
            num::MIP => {
                let mut m = (1 << irq::SSI) | (1 << irq::SEI);
                if c.menvcfg & MENVCFG_STCE == 0 {
                    m |= 1 << irq::STI;
                }
                c.mip = (c.mip & !m) | (v & m);
            }
            num::MTINST | num::MTVAL2 => {}
            0x3a0..=0x3af => {
                if n & 1 == 1 {
                    return Err(Exception::illegal_here());
                }
                let i = ((n - num::PMPCFG0) / 2) as usize;
                // Locked entries ignore writes (privileged spec 3.7.1); W=1,R=0 is reserved.
                let old = c.pmpcfg[i];
                let mut nv = 0u64;
                for b in 0..8 {
                    let o = (old >> (8 * b)) & 0xff;
                    let mut x = (v >> (8 * b)) & 0x9f;
                    if o & 0x80 != 0 {
                        x = o;
                    } else if x & 3 == 2 {
                        x &= !3;
                    }
                    nv |= x << (8 * b);
                }
                c.pmpcfg[i] = nv;
            }
            0x3b0..=0x3ef => {
                let i = (n - num::PMPADDR0) as usize;
                let cfg = (c.pmpcfg[i / 8] >> (8 * (i % 8))) & 0xff;
                if cfg & 0x80 == 0 {
                    c.pmpaddr[i] = v & ((1 << 54) - 1);
                }
            }
            num::MCYCLE => c.cycle_offset = v.wrapping_sub(icount),
            num::MINSTRET => c.instret_offset = v.wrapping_sub(icount),
            0xb03..=0xb1f => {}
            _ => return Err(Exception::illegal_here()),
        }
        self.attention = true;
        Ok(())
    }

    /// `mstatus` with the derived SD bit.
    pub fn mstatus(&self) -> u64 {
        let m = self.s.csr.mstatus;
        if m & mstatus::FS == mstatus::FS {
            m | mstatus::SD
        } else {
            m
        }
    }

    fn sstatus(&self) -> u64 {
        self.mstatus() & mstatus::SSTATUS
    }

    /// Set `mstatus`, keeping WARL fields legal (MPP never holds the reserved 2).
    pub fn set_mstatus(&mut self, mut v: u64) {
        if (v & mstatus::MPP) >> mstatus::MPP_SHIFT == 2 {
            v = (v & !mstatus::MPP) | (self.s.csr.mstatus & mstatus::MPP);
        }
        self.s.csr.mstatus = (v & !mstatus::SD) | mstatus::UXL | mstatus::SXL;
        self.attention = true;
    }

    /// Mark the FP state dirty (privileged spec 3.1.6.6).
    #[inline]
    pub fn set_fs_dirty(&mut self) {
        self.s.csr.mstatus |= mstatus::FS;
    }

    /// True if FP instructions are enabled (`mstatus.FS` != Off).
    #[inline]
    pub fn fp_enabled(&self) -> bool {
        self.s.csr.mstatus & mstatus::FS != 0
    }
}
