//! Execution of RV64I, M, A, Zicsr, Zifencei and the privileged instructions
//! (unprivileged spec ch. 2, 5, 7, 8, 9; privileged spec 3.3). F/D live in `fp`.

use super::csr::mstatus;
use super::decode::{AmoOp, CsrOp, Insn};
use super::fp;
use super::trap::{cause, Access, Exception, Priv};
use super::Hart;
use crate::bus::Bus;

impl Hart {
    /// Execute one decoded instruction of `len` bytes at `pc`; returns the next pc.
    /// `self.s.pc` is not read or written here: the caller keeps the pc (and stores it
    /// before a trap or when leaving its loop).
    #[inline(always)]
    pub(super) fn execute(
        &mut self,
        bus: &mut Bus,
        insn: Insn,
        pc: u64,
        len: u64,
    ) -> Result<u64, Exception> {
        use Insn::*;
        let mut next = pc.wrapping_add(len);
        macro_rules! x {
            ($r:expr) => {
                self.s.x[$r as usize]
            };
        }
        macro_rules! set {
            ($r:expr, $v:expr) => {{
                let v = $v;
                self.s.x[$r as usize] = v;
            }};
        }
        macro_rules! branch {
            ($cond:expr, $imm:expr) => {
                if $cond {
                    next = pc.wrapping_add($imm as i64 as u64);
                }
            };
        }
        let sx = |v: u32| v as i32 as i64 as u64;
        match insn {
            Lui { rd, imm } => set!(rd, imm as i64 as u64),
            Auipc { rd, imm } => set!(rd, pc.wrapping_add(imm as i64 as u64)),
            Jal { rd, imm } => {
                set!(rd, next);
                next = pc.wrapping_add(imm as i64 as u64);
            }
            Jalr { rd, rs1, imm } => {
                let t = x!(rs1).wrapping_add(imm as i64 as u64) & !1;
                set!(rd, next);
                next = t;
            }
            Beq { rs1, rs2, imm } => branch!(x!(rs1) == x!(rs2), imm),
            Bne { rs1, rs2, imm } => branch!(x!(rs1) != x!(rs2), imm),
            Blt { rs1, rs2, imm } => branch!((x!(rs1) as i64) < (x!(rs2) as i64), imm),
            Bge { rs1, rs2, imm } => branch!((x!(rs1) as i64) >= (x!(rs2) as i64), imm),
            Bltu { rs1, rs2, imm } => branch!(x!(rs1) < x!(rs2), imm),
            Bgeu { rs1, rs2, imm } => branch!(x!(rs1) >= x!(rs2), imm),
            Lb { rd, rs1, imm } => set!(
                rd,
                self.load::<1>(bus, ea(x!(rs1), imm))? as i8 as i64 as u64
            ),
            Lh { rd, rs1, imm } => set!(
                rd,
                self.load::<2>(bus, ea(x!(rs1), imm))? as i16 as i64 as u64
            ),
            Lw { rd, rs1, imm } => set!(
                rd,
                self.load::<4>(bus, ea(x!(rs1), imm))? as i32 as i64 as u64
            ),
            Ld { rd, rs1, imm } => set!(rd, self.load::<8>(bus, ea(x!(rs1), imm))?),
            Lbu { rd, rs1, imm } => set!(rd, self.load::<1>(bus, ea(x!(rs1), imm))?),
            Lhu { rd, rs1, imm } => set!(rd, self.load::<2>(bus, ea(x!(rs1), imm))?),
            Lwu { rd, rs1, imm } => set!(rd, self.load::<4>(bus, ea(x!(rs1), imm))?),
            Sb { rs1, rs2, imm } => self.store::<1>(bus, ea(x!(rs1), imm), x!(rs2))?,
            Sh { rs1, rs2, imm } => self.store::<2>(bus, ea(x!(rs1), imm), x!(rs2))?,
            Sw { rs1, rs2, imm } => self.store::<4>(bus, ea(x!(rs1), imm), x!(rs2))?,
            Sd { rs1, rs2, imm } => self.store::<8>(bus, ea(x!(rs1), imm), x!(rs2))?,
            Addi { rd, rs1, imm } => set!(rd, x!(rs1).wrapping_add(imm as i64 as u64)),
            Slti { rd, rs1, imm } => set!(rd, ((x!(rs1) as i64) < imm as i64) as u64),
            Sltiu { rd, rs1, imm } => set!(rd, (x!(rs1) < imm as i64 as u64) as u64),
            Xori { rd, rs1, imm } => set!(rd, x!(rs1) ^ imm as i64 as u64),
            Ori { rd, rs1, imm } => set!(rd, x!(rs1) | imm as i64 as u64),
            Andi { rd, rs1, imm } => set!(rd, x!(rs1) & imm as i64 as u64),
            Slli { rd, rs1, sh } => set!(rd, x!(rs1) << sh),
            Srli { rd, rs1, sh } => set!(rd, x!(rs1) >> sh),
            Srai { rd, rs1, sh } => set!(rd, ((x!(rs1) as i64) >> sh) as u64),
            Addiw { rd, rs1, imm } => set!(rd, sx((x!(rs1) as u32).wrapping_add(imm as u32))),
            Slliw { rd, rs1, sh } => set!(rd, sx((x!(rs1) as u32) << sh)),
            Srliw { rd, rs1, sh } => set!(rd, sx((x!(rs1) as u32) >> sh)),
            Sraiw { rd, rs1, sh } => set!(rd, ((x!(rs1) as i32) >> sh) as i64 as u64),
            Add { rd, rs1, rs2 } => set!(rd, x!(rs1).wrapping_add(x!(rs2))),
            Sub { rd, rs1, rs2 } => set!(rd, x!(rs1).wrapping_sub(x!(rs2))),
            Sll { rd, rs1, rs2 } => set!(rd, x!(rs1) << (x!(rs2) & 63)),
            Slt { rd, rs1, rs2 } => set!(rd, ((x!(rs1) as i64) < (x!(rs2) as i64)) as u64),
            Sltu { rd, rs1, rs2 } => set!(rd, (x!(rs1) < x!(rs2)) as u64),
            Xor { rd, rs1, rs2 } => set!(rd, x!(rs1) ^ x!(rs2)),
            Srl { rd, rs1, rs2 } => set!(rd, x!(rs1) >> (x!(rs2) & 63)),
            Sra { rd, rs1, rs2 } => set!(rd, ((x!(rs1) as i64) >> (x!(rs2) & 63)) as u64),
            Or { rd, rs1, rs2 } => set!(rd, x!(rs1) | x!(rs2)),
            And { rd, rs1, rs2 } => set!(rd, x!(rs1) & x!(rs2)),
            Addw { rd, rs1, rs2 } => set!(rd, sx((x!(rs1) as u32).wrapping_add(x!(rs2) as u32))),
            Subw { rd, rs1, rs2 } => set!(rd, sx((x!(rs1) as u32).wrapping_sub(x!(rs2) as u32))),
            Sllw { rd, rs1, rs2 } => set!(rd, sx((x!(rs1) as u32) << (x!(rs2) & 31))),
            Srlw { rd, rs1, rs2 } => set!(rd, sx((x!(rs1) as u32) >> (x!(rs2) & 31))),
            Sraw { rd, rs1, rs2 } => set!(rd, ((x!(rs1) as i32) >> (x!(rs2) & 31)) as i64 as u64),
            Mul { rd, rs1, rs2 } => set!(rd, x!(rs1).wrapping_mul(x!(rs2))),
            Mulh { rd, rs1, rs2 } => {
                set!(
                    rd,
                    (((x!(rs1) as i64 as i128) * (x!(rs2) as i64 as i128)) >> 64) as u64
                )
            }
            Mulhsu { rd, rs1, rs2 } => {
                set!(
                    rd,
                    (((x!(rs1) as i64 as i128).wrapping_mul(x!(rs2) as i128)) >> 64) as u64
                )
            }
            Mulhu { rd, rs1, rs2 } => {
                set!(rd, (((x!(rs1) as u128) * (x!(rs2) as u128)) >> 64) as u64)
            }
            Div { rd, rs1, rs2 } => set!(rd, div(x!(rs1) as i64, x!(rs2) as i64) as u64),
            Divu { rd, rs1, rs2 } => set!(rd, x!(rs1).checked_div(x!(rs2)).unwrap_or(u64::MAX)),
            Rem { rd, rs1, rs2 } => set!(rd, rem(x!(rs1) as i64, x!(rs2) as i64) as u64),
            Remu { rd, rs1, rs2 } => set!(rd, x!(rs1).checked_rem(x!(rs2)).unwrap_or(x!(rs1))),
            Mulw { rd, rs1, rs2 } => set!(rd, sx((x!(rs1) as u32).wrapping_mul(x!(rs2) as u32))),
            // W forms: the 64-bit results of sign-extended operands, truncated, are exactly
            // the 32-bit ones, overflow (INT32_MIN / -1) and division by zero included.
            Divw { rd, rs1, rs2 } => set!(
                rd,
                sx(div(x!(rs1) as i32 as i64, x!(rs2) as i32 as i64) as u32)
            ),
            Divuw { rd, rs1, rs2 } => {
                set!(
                    rd,
                    sx((x!(rs1) as u32)
                        .checked_div(x!(rs2) as u32)
                        .unwrap_or(u32::MAX))
                )
            }
            Remw { rd, rs1, rs2 } => set!(
                rd,
                sx(rem(x!(rs1) as i32 as i64, x!(rs2) as i32 as i64) as u32)
            ),
            Remuw { rd, rs1, rs2 } => {
                let (a, b) = (x!(rs1) as u32, x!(rs2) as u32);
                set!(rd, sx(a.checked_rem(b).unwrap_or(a)))
            }
            Lr { rd, rs1, double } => {
                let va = x!(rs1);
                let v = self.amo_load(bus, va, double, cause::LOAD_MISALIGNED, Access::Load)?;
                self.s.reservation = Some(va);
                set!(rd, v);
            }
            Sc {
                rd,
                rs1,
                rs2,
                double,
            } => {
                let va = x!(rs1);
                let size = if double { 8 } else { 4 };
                if va & (size - 1) != 0 {
                    return Err(Exception::new(cause::STORE_MISALIGNED, va));
                }
                let ok = self.s.reservation.take() == Some(va);
                if ok {
                    let v = x!(rs2);
                    if double {
                        self.store::<8>(bus, va, v)?;
                    } else {
                        self.store::<4>(bus, va, v)?;
                    }
                }
                set!(rd, !ok as u64);
            }
            Amo {
                op,
                rd,
                rs1,
                rs2,
                double,
            } => {
                let va = x!(rs1);
                let old = self.amo_load(bus, va, double, cause::STORE_MISALIGNED, Access::Store)?;
                let src = x!(rs2);
                let (a, b) = if double {
                    (old, src)
                } else {
                    (old, src as i32 as i64 as u64)
                };
                let new = match op {
                    AmoOp::Swap => b,
                    AmoOp::Add => a.wrapping_add(b),
                    AmoOp::Xor => a ^ b,
                    AmoOp::And => a & b,
                    AmoOp::Or => a | b,
                    AmoOp::Min => (a as i64).min(b as i64) as u64,
                    AmoOp::Max => (a as i64).max(b as i64) as u64,
                    AmoOp::Minu if double => a.min(b),
                    AmoOp::Maxu if double => a.max(b),
                    AmoOp::Minu => (a as u32).min(b as u32) as u64,
                    AmoOp::Maxu => (a as u32).max(b as u32) as u64,
                };
                if double {
                    self.store::<8>(bus, va, new)?;
                } else {
                    self.store::<4>(bus, va, new)?;
                }
                set!(rd, old);
            }
            Fence => {}
            // Cached code is kept coherent with every RAM write, so FENCE.I has
            // nothing to flush; it ends the block like any other fence of fetches.
            FenceI => {}
            Ecall if self.s.prv == Priv::S && self.sbi_intercept => {
                self.s.sbi_pending = true;
                self.attention = true;
            }
            Ecall => {
                let c = match self.s.prv {
                    Priv::U => cause::ECALL_U,
                    Priv::S => cause::ECALL_S,
                    Priv::M => cause::ECALL_M,
                };
                return Err(Exception::new(c, 0));
            }
            Ebreak => return Err(Exception::new(cause::BREAKPOINT, pc)),
            Mret => {
                if self.s.prv < Priv::M {
                    return Err(Exception::illegal_here());
                }
                next = self.mret();
            }
            Sret => {
                let tsr = self.s.csr.mstatus & mstatus::TSR != 0;
                if self.s.prv < Priv::S || (self.s.prv == Priv::S && tsr) {
                    return Err(Exception::illegal_here());
                }
                next = self.sret();
            }
            Wfi => {
                // TW traps WFI below M; U-mode WFI is illegal (privileged spec 3.1.6.5).
                let tw = self.s.csr.mstatus & mstatus::TW != 0;
                if self.s.prv == Priv::U || (self.s.prv == Priv::S && tw) {
                    return Err(Exception::illegal_here());
                }
                self.s.wfi = true;
                self.attention = true;
            }
            SfenceVma { .. } => {
                let tvm = self.s.csr.mstatus & mstatus::TVM != 0;
                if self.s.prv == Priv::U || (self.s.prv == Priv::S && tvm) {
                    return Err(Exception::illegal_here());
                }
                self.flush_tlb();
            }
            Csr { op, rd, rs1, csr } => {
                let src = x!(rs1);
                self.csr_op(bus, op, rd, csr, src, rs1 != 0)?;
            }
            CsrI { op, rd, uimm, csr } => self.csr_op(bus, op, rd, csr, uimm as u64, uimm != 0)?,
            Flw { rd, rs1, imm } => {
                self.require_fp()?;
                let v = self.load::<4>(bus, ea(x!(rs1), imm))?;
                self.s.f[rd as usize] = fp::nan_box_s(v as u32);
                self.set_fs_dirty();
            }
            Fld { rd, rs1, imm } => {
                self.require_fp()?;
                let v = self.load::<8>(bus, ea(x!(rs1), imm))?;
                self.s.f[rd as usize] = v;
                self.set_fs_dirty();
            }
            Fsw { rs1, rs2, imm } => {
                self.require_fp()?;
                self.store::<4>(bus, ea(x!(rs1), imm), self.s.f[rs2 as usize])?;
            }
            Fsd { rs1, rs2, imm } => {
                self.require_fp()?;
                self.store::<8>(bus, ea(x!(rs1), imm), self.s.f[rs2 as usize])?;
            }
            Fp(i) => {
                self.require_fp()?;
                let c = &mut self.s.csr;
                let x: &mut [u64; 32] = (&mut self.s.x.0[..32]).try_into().expect("32 registers");
                let eff = fp::execute(i, x, &mut self.s.f, c.frm, &mut c.fflags)
                    .map_err(|_| Exception::illegal_here())?;
                if eff.wrote_f || eff.wrote_fflags {
                    self.set_fs_dirty();
                }
            }
            Illegal => return Err(Exception::illegal_here()),
        }
        Ok(next)
    }

    #[inline]
    fn require_fp(&self) -> Result<(), Exception> {
        if self.fp_enabled() {
            Ok(())
        } else {
            Err(Exception::illegal_here())
        }
    }

    /// CSRRW/CSRRS/CSRRC and their immediate forms (Zicsr). `writes` is false for
    /// CSRRS/CSRRC with x0/zero source, which then never write (nor fault as a write).
    fn csr_op(
        &mut self,
        bus: &Bus,
        op: CsrOp,
        rd: u8,
        csr: u16,
        src: u64,
        writes: bool,
    ) -> Result<(), Exception> {
        let old = self.csr_read(bus, csr)?;
        let new = match op {
            CsrOp::Rw => Some(src),
            CsrOp::Rs if writes => Some(old | src),
            CsrOp::Rc if writes => Some(old & !src),
            _ => None,
        };
        if let Some(v) = new {
            self.csr_write(csr, v)?;
            if matches!(
                csr,
                super::csr::num::FFLAGS | super::csr::num::FRM | super::csr::num::FCSR
            ) {
                self.set_fs_dirty();
            }
        }
        self.s.x[rd as usize] = old;
        Ok(())
    }

    fn mret(&mut self) -> u64 {
        let m = self.s.csr.mstatus;
        let mpp = Priv::from_bits(m >> mstatus::MPP_SHIFT);
        let mut n = if m & mstatus::MPIE != 0 {
            m | mstatus::MIE
        } else {
            m & !mstatus::MIE
        };
        n |= mstatus::MPIE;
        n &= !mstatus::MPP;
        if mpp != Priv::M {
            n &= !mstatus::MPRV;
        }
        self.s.csr.mstatus = n;
        self.s.prv = mpp;
        self.attention = true;
        self.s.csr.mepc
    }

    fn sret(&mut self) -> u64 {
        let m = self.s.csr.mstatus;
        let spp = if m & mstatus::SPP != 0 {
            Priv::S
        } else {
            Priv::U
        };
        let mut n = if m & mstatus::SPIE != 0 {
            m | mstatus::SIE
        } else {
            m & !mstatus::SIE
        };
        n |= mstatus::SPIE;
        n &= !mstatus::SPP;
        n &= !mstatus::MPRV;
        self.s.csr.mstatus = n;
        self.s.prv = spp;
        self.attention = true;
        self.s.csr.sepc
    }

    /// Load `N` bytes at virtual address `va`, zero-extended. Misaligned loads are
    /// emulated byte by byte (unprivileged spec 2.6 allows this).
    #[inline(always)]
    pub fn load<const N: usize>(&mut self, bus: &mut Bus, va: u64) -> Result<u64, Exception> {
        if va & (N as u64 - 1) != 0 {
            return self.load_misaligned(bus, va, N);
        }
        let pa = self.translate_data(bus, va, Access::Load)?;
        if let Some(off) = bus.ram.offset(pa, N as u64) {
            return Ok(bus.ram.read_at::<N>(off));
        }
        bus.mmio_read(pa, N as u8, self.s.icount)
            .ok_or(Exception::new(cause::LOAD_ACCESS, va))
    }

    /// Store the low `N` bytes of `v` at virtual address `va`.
    #[inline(always)]
    pub fn store<const N: usize>(
        &mut self,
        bus: &mut Bus,
        va: u64,
        v: u64,
    ) -> Result<(), Exception> {
        if va & (N as u64 - 1) != 0 {
            return self.store_misaligned(bus, va, N, v);
        }
        let pa = self.translate_data(bus, va, Access::Store)?;
        if let Some(off) = bus.ram.offset(pa, N as u64) {
            if bus.ram.write_at::<N>(off, v) {
                // Stale cached code: leave the current block.
                bus.attention = true;
            }
            return Ok(());
        }
        if bus.mmio_write(pa, N as u8, v, self.s.icount) {
            Ok(())
        } else {
            Err(Exception::new(cause::STORE_ACCESS, va))
        }
    }

    fn load_misaligned(&mut self, bus: &mut Bus, va: u64, n: usize) -> Result<u64, Exception> {
        // Translate every byte first so a fault leaves no partial effect.
        let mut v = 0;
        for i in (0..n as u64).rev() {
            v = (v << 8) | self.load::<1>(bus, va.wrapping_add(i))?;
        }
        Ok(v)
    }

    fn store_misaligned(
        &mut self,
        bus: &mut Bus,
        va: u64,
        n: usize,
        v: u64,
    ) -> Result<(), Exception> {
        // Check both ends are writable before writing anything.
        self.translate_data(bus, va, Access::Store)?;
        self.translate_data(bus, va.wrapping_add(n as u64 - 1), Access::Store)?;
        for i in 0..n as u64 {
            self.store::<1>(bus, va.wrapping_add(i), v >> (8 * i))?;
        }
        Ok(())
    }

    /// The load half of LR/AMO: naturally aligned, RAM only.
    fn amo_load(
        &mut self,
        bus: &mut Bus,
        va: u64,
        double: bool,
        misaligned: u64,
        acc: Access,
    ) -> Result<u64, Exception> {
        let size = if double { 8 } else { 4 };
        if va & (size - 1) != 0 {
            return Err(Exception::new(misaligned, va));
        }
        let pa = self.translate_data(bus, va, acc)?;
        let fault = Exception::new(acc.access_fault(), va);
        let off = bus.ram.offset(pa, size).ok_or(fault)?;
        Ok(if double {
            bus.ram.read_at::<8>(off)
        } else {
            bus.ram.read_at::<4>(off) as i32 as i64 as u64
        })
    }
}

#[inline(always)]
fn ea(base: u64, imm: i32) -> u64 {
    base.wrapping_add(imm as i64 as u64)
}

/// Signed division with the RISC-V results for /0 (-1) and overflow (dividend).
fn div(a: i64, b: i64) -> i64 {
    if b == 0 {
        -1
    } else {
        a.wrapping_div(b)
    }
}
fn rem(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        a.wrapping_rem(b)
    }
}
