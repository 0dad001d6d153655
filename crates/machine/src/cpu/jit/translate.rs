//! One decoded block to Cranelift IR.
//!
//! The block is straight-line code: every instruction but the last falls through, so
//! the main path is one chain of Cranelift blocks with cold exits branching off it.
//! Guest registers live in SSA values: loaded from the hart at first use, written
//! back at every exit (only those changed). The generated function takes the
//! [`JitCtx`] and returns nothing; on return the hart's pc and instruction count are
//! those after the last instruction that ran.

use super::helpers::{self, CONTINUE, TRAPPED};
use super::{DataMode, JitCtx};
use crate::cpu::decode::Insn;
use crate::cpu::mmu::{layout as tlb, TLB_ENTRIES};
use crate::cpu::trap::{Access, Priv};
use crate::cpu::{Hart, HartState, Regs};
use crate::devices::layout::RAM_BASE;
use crate::ram::DIRTY;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, Function, InstBuilder, MachMemFlags, SigRef, Signature, Type, Value,
};
use cranelift_codegen::isa::{CallConv, TargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use std::mem::offset_of;

const HART_S: usize = offset_of!(Hart, s);
/// Offset of x0 in the hart.
const X: i32 = (HART_S + offset_of!(HartState, x) + offset_of!(Regs, 0)) as i32;
const PC: i32 = (HART_S + offset_of!(HartState, pc)) as i32;
const ICOUNT: i32 = (HART_S + offset_of!(HartState, icount)) as i32;
const CTX_HART: i32 = offset_of!(JitCtx, hart) as i32;
const CTX_RAM: i32 = offset_of!(JitCtx, ram) as i32;
const CTX_FLAGS: i32 = offset_of!(JitCtx, page_flags) as i32;
const CTX_TLB: i32 = offset_of!(JitCtx, tlb) as i32;
const CTX_SCRATCH: i32 = offset_of!(JitCtx, scratch) as i32;
const CTX_BUS: i32 = offset_of!(JitCtx, bus) as i32;
const CTX_UNTIL: i32 = offset_of!(JitCtx, until) as i32;
const CTX_LINK: i32 = offset_of!(JitCtx, link) as i32;
const HART_ATTENTION: i32 = offset_of!(Hart, attention) as i32;
const BUS_ATTENTION: i32 = offset_of!(crate::bus::Bus, attention) as i32;

/// Hart, context, TLB and guest RAM accesses: never trapping, naturally aligned.
const MEM: MachMemFlags = MachMemFlags::trusted();

/// The signature of every block function: `fn(ctx)` in Cranelift's tail-call
/// convention, so a block can jump to the next without growing the stack.
fn block_signature() -> Signature {
    let mut sig = Signature::new(CallConv::Tail);
    sig.params.push(AbiParam::new(I64));
    sig
}

/// The entry from Rust: `extern "C" fn(ctx, block)` calls the block function.
pub(super) fn trampoline(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    isa: &dyn TargetIsa,
) {
    let mut sig = Signature::new(isa.default_call_conv());
    sig.params.extend([AbiParam::new(I64), AbiParam::new(I64)]);
    func.signature = sig;
    let mut b = FunctionBuilder::new(func, fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let (ctx, f) = (b.block_params(entry)[0], b.block_params(entry)[1]);
    let sig = b.import_signature(block_signature());
    b.ins().call_indirect(sig, f, &[ctx]);
    b.ins().return_(&[]);
    b.seal_all_blocks();
    b.finalize(isa.frontend_config());
}

/// Build the function for `insns` in `func`. `page_off` is the block's offset in its
/// page: exits to the same page chain through `links` (one slot per such exit, in
/// order), which the dispatcher fills with the target's entry point.
#[allow(clippy::too_many_arguments)]
pub(super) fn block(
    func: &mut Function,
    fctx: &mut FunctionBuilderContext,
    isa: &dyn TargetIsa,
    insns: &[(Insn, u8)],
    mode: DataMode,
    ram_size: u64,
    page_off: u64,
    links: &mut dyn FnMut() -> usize,
) {
    let cc = isa.default_call_conv();
    func.signature = block_signature();
    let mut b = FunctionBuilder::new(func, fctx);
    let block_sig = b.import_signature(block_signature());
    let helper = |params: usize| {
        let mut s = Signature::new(cc);
        s.params.extend((0..params).map(|_| AbiParam::new(I64)));
        s.returns.push(AbiParam::new(I64));
        s
    };
    let (sig2, sig3) = (helper(2), helper(3));
    let sig2 = b.import_signature(sig2);
    let sig3 = b.import_signature(sig3);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let ctx = b.block_params(entry)[0];
    let hart = b.ins().load(I64, MEM, ctx, CTX_HART);
    let icount0 = b.ins().load(I64, MEM, hart, ICOUNT);
    // Run only as the interpreter's loop would: the whole block fits before `until`,
    // and nothing wants the machine's attention (a chained entry skips the
    // dispatcher, so the block checks for itself).
    let until = b.ins().load(I64, MEM, ctx, CTX_UNTIL);
    let end = b.ins().iadd_imm_s(icount0, insns.len() as i64);
    let fits = b.ins().icmp(IntCC::UnsignedLessThanOrEqual, end, until);
    let bus = b.ins().load(I64, MEM, ctx, CTX_BUS);
    let ha = b.ins().uload8(I32, MEM, hart, HART_ATTENTION);
    let ba = b.ins().uload8(I32, MEM, bus, BUS_ATTENTION);
    let any = b.ins().bor(ha, ba);
    let quiet = b.ins().icmp_imm_s(IntCC::Equal, any, 0);
    let go = b.ins().band(fits, quiet);
    let (body, back) = (b.create_block(), b.create_block());
    b.set_cold_block(back);
    b.ins().brif(go, body, &[], back, &[]);
    b.switch_to_block(back);
    b.ins().return_(&[]);
    b.switch_to_block(body);
    let pc0 = b.ins().load(I64, MEM, hart, PC);
    let (ram, flags, tlb_base) = if insns.iter().any(|(i, _)| is_memory(i)) {
        (
            b.ins().load(I64, MEM, ctx, CTX_RAM),
            b.ins().load(I64, MEM, ctx, CTX_FLAGS),
            b.ins().load(I64, MEM, ctx, CTX_TLB),
        )
    } else {
        let z = b.ins().iconst(I64, 0);
        (z, z, z)
    };
    let mut t = Tx {
        b,
        ctx,
        hart,
        pc0,
        icount0,
        ram,
        flags,
        tlb: tlb_base,
        regs: [None; 32],
        dirty: 0,
        mode,
        ram_size,
        sig2,
        sig3,
        block_sig,
        page_off,
        links,
    };
    let mut off = 0u64;
    let mut ended = false;
    for (k, entry) in insns.iter().enumerate() {
        let last = k + 1 == insns.len();
        ended = t.insn(k as u64, off, entry, last);
        off += entry.1 as u64;
    }
    if !ended {
        // The block ended at a page boundary or its length limit: fall through.
        t.exit_to(off, insns.len() as u64);
    }
    t.b.seal_all_blocks();
    t.b.finalize(isa.frontend_config());
}

/// Loads and stores compiled inline (which need RAM, page flags and the TLB).
fn is_memory(i: &Insn) -> bool {
    use Insn::*;
    matches!(
        i,
        Lb { .. }
            | Lh { .. }
            | Lw { .. }
            | Ld { .. }
            | Lbu { .. }
            | Lhu { .. }
            | Lwu { .. }
            | Sb { .. }
            | Sh { .. }
            | Sw { .. }
            | Sd { .. }
    )
}

/// The translator's state while it walks a block.
struct Tx<'a> {
    b: FunctionBuilder<'a>,
    ctx: Value,
    hart: Value,
    /// The pc and instruction count at entry.
    pc0: Value,
    icount0: Value,
    ram: Value,
    flags: Value,
    tlb: Value,
    /// Current value of each register, once read or written.
    regs: [Option<Value>; 32],
    /// Registers written since entry (or the last write-back).
    dirty: u32,
    mode: DataMode,
    ram_size: u64,
    sig2: SigRef,
    sig3: SigRef,
    block_sig: SigRef,
    page_off: u64,
    links: &'a mut dyn FnMut() -> usize,
}

/// Integer operations compiled the same way (rd = f(rs1, rs2) or f(rs1, imm)).
#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
}

impl Tx<'_> {
    fn iconst(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    /// The guest address `pc0 + off`.
    fn pc_at(&mut self, off: u64) -> Value {
        self.b.ins().iadd_imm_s(self.pc0, off as i64)
    }

    /// Register `r`'s value (x0 is zero).
    fn x(&mut self, r: u8) -> Value {
        let r = r as usize;
        if r == 0 {
            return self.iconst(0);
        }
        if let Some(v) = self.regs[r] {
            return v;
        }
        let v = self.b.ins().load(I64, MEM, self.hart, X + 8 * r as i32);
        self.regs[r] = Some(v);
        v
    }

    /// Write register `rd` (writes to x0 arrive as the sink, 32, and vanish).
    fn set(&mut self, rd: u8, v: Value) {
        let r = rd as usize;
        if r == 0 || r >= 32 {
            return;
        }
        self.regs[r] = Some(v);
        self.dirty |= 1 << r;
    }

    /// Store the changed registers into the hart.
    fn write_back(&mut self) {
        for r in 1..32 {
            if self.dirty & (1 << r) != 0 {
                let v = self.regs[r].expect("a written register has a value");
                self.b.ins().store(MEM, v, self.hart, X + 8 * r as i32);
            }
        }
    }

    fn store_pc(&mut self, pc: Value) {
        self.b.ins().store(MEM, pc, self.hart, PC);
    }

    /// Store the instruction count after `executed` instructions of the block.
    fn store_icount(&mut self, executed: u64) {
        let n = self.b.ins().iadd_imm_s(self.icount0, executed as i64);
        self.b.ins().store(MEM, n, self.hart, ICOUNT);
    }

    /// Leave the block at guest pc `next` after `executed` instructions.
    fn exit(&mut self, next: Value, executed: u64) {
        self.write_back();
        self.store_pc(next);
        self.store_icount(executed);
        self.b.ins().return_(&[]);
    }

    /// Leave the block for the instruction at byte offset `target` from its start
    /// after `executed` instructions. A target in the same page has the same
    /// translation (nothing in a block can change the fetch TLB), so it is the block
    /// at a known physical address: jump straight there once the dispatcher has
    /// linked it; until then return, naming the link slot to fill.
    fn exit_to(&mut self, target: u64, executed: u64) {
        let next = self.pc_at(target);
        let in_page = self.page_off.wrapping_add(target);
        if in_page >= 4096 {
            return self.exit(next, executed);
        }
        self.write_back();
        self.store_pc(next);
        self.store_icount(executed);
        let addr = (self.links)();
        let slot = self.iconst(addr as i64);
        let f = self.b.ins().load(I64, MEM, slot, 0);
        let (chain, back) = (self.b.create_block(), self.cold_block());
        self.b.ins().brif(f, chain, &[], back, &[]);
        self.b.switch_to_block(chain);
        self.b
            .ins()
            .return_call_indirect(self.block_sig, f, &[self.ctx]);
        self.b.switch_to_block(back);
        self.b.ins().store(MEM, slot, self.ctx, CTX_LINK);
        self.b.ins().return_(&[]);
    }

    fn cold_block(&mut self) -> Block {
        let blk = self.b.create_block();
        self.b.set_cold_block(blk);
        blk
    }

    /// Call a helper by address.
    fn call(&mut self, f: usize, args: &[Value]) -> Value {
        let sig = if args.len() == 2 {
            self.sig2
        } else {
            self.sig3
        };
        let callee = self.iconst(f as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call)[0]
    }

    /// Translate instruction `k` (at byte offset `off`); true if it ended the block.
    fn insn(&mut self, k: u64, off: u64, entry: &(Insn, u8), last: bool) -> bool {
        use Insn::*;
        let (insn, len) = (entry.0, entry.1 as u64);
        let imm64 = |imm: i32| imm as i64;
        match insn {
            Lui { rd, imm } => {
                let v = self.iconst(imm64(imm));
                self.set(rd, v);
            }
            Auipc { rd, imm } => {
                let v = self.pc_at(off.wrapping_add(imm64(imm) as u64));
                self.set(rd, v);
            }
            Jal { rd, imm } => {
                let link = self.pc_at(off + len);
                self.set(rd, link);
                self.exit_to(off.wrapping_add(imm64(imm) as u64), k + 1);
                return true;
            }
            Jalr { rd, rs1, imm } => {
                let base = self.x(rs1);
                let t = self.b.ins().iadd_imm_s(base, imm64(imm));
                let target = self.b.ins().band_imm_s(t, !1);
                let link = self.pc_at(off + len);
                self.set(rd, link);
                self.exit(target, k + 1);
                return true;
            }
            Beq { rs1, rs2, imm } => return self.branch(k, off, len, IntCC::Equal, rs1, rs2, imm),
            Bne { rs1, rs2, imm } => {
                return self.branch(k, off, len, IntCC::NotEqual, rs1, rs2, imm)
            }
            Blt { rs1, rs2, imm } => {
                return self.branch(k, off, len, IntCC::SignedLessThan, rs1, rs2, imm)
            }
            Bge { rs1, rs2, imm } => {
                return self.branch(k, off, len, IntCC::SignedGreaterThanOrEqual, rs1, rs2, imm)
            }
            Bltu { rs1, rs2, imm } => {
                return self.branch(k, off, len, IntCC::UnsignedLessThan, rs1, rs2, imm)
            }
            Bgeu { rs1, rs2, imm } => {
                return self.branch(
                    k,
                    off,
                    len,
                    IntCC::UnsignedGreaterThanOrEqual,
                    rs1,
                    rs2,
                    imm,
                )
            }
            Lb { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 1, true),
            Lh { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 2, true),
            Lw { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 4, true),
            Ld { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 8, false),
            Lbu { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 1, false),
            Lhu { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 2, false),
            Lwu { rd, rs1, imm } => self.load(k, off, len, rd, rs1, imm, 4, false),
            Sb { rs1, rs2, imm } => self.store(k, off, len, rs1, rs2, imm, 1),
            Sh { rs1, rs2, imm } => self.store(k, off, len, rs1, rs2, imm, 2),
            Sw { rs1, rs2, imm } => self.store(k, off, len, rs1, rs2, imm, 4),
            Sd { rs1, rs2, imm } => self.store(k, off, len, rs1, rs2, imm, 8),
            Addi { rd, rs1, imm } => self.op_imm(Op::Add, rd, rs1, imm64(imm), false),
            Slti { rd, rs1, imm } => self.op_imm(Op::Slt, rd, rs1, imm64(imm), false),
            Sltiu { rd, rs1, imm } => self.op_imm(Op::Sltu, rd, rs1, imm64(imm), false),
            Xori { rd, rs1, imm } => self.op_imm(Op::Xor, rd, rs1, imm64(imm), false),
            Ori { rd, rs1, imm } => self.op_imm(Op::Or, rd, rs1, imm64(imm), false),
            Andi { rd, rs1, imm } => self.op_imm(Op::And, rd, rs1, imm64(imm), false),
            Slli { rd, rs1, sh } => self.op_imm(Op::Sll, rd, rs1, sh as i64, false),
            Srli { rd, rs1, sh } => self.op_imm(Op::Srl, rd, rs1, sh as i64, false),
            Srai { rd, rs1, sh } => self.op_imm(Op::Sra, rd, rs1, sh as i64, false),
            Addiw { rd, rs1, imm } => self.op_imm(Op::Add, rd, rs1, imm64(imm), true),
            Slliw { rd, rs1, sh } => self.op_imm(Op::Sll, rd, rs1, sh as i64, true),
            Srliw { rd, rs1, sh } => self.op_imm(Op::Srl, rd, rs1, sh as i64, true),
            Sraiw { rd, rs1, sh } => self.op_imm(Op::Sra, rd, rs1, sh as i64, true),
            Add { rd, rs1, rs2 } => self.op(Op::Add, rd, rs1, rs2, false),
            Sub { rd, rs1, rs2 } => self.op(Op::Sub, rd, rs1, rs2, false),
            Sll { rd, rs1, rs2 } => self.op(Op::Sll, rd, rs1, rs2, false),
            Slt { rd, rs1, rs2 } => self.op(Op::Slt, rd, rs1, rs2, false),
            Sltu { rd, rs1, rs2 } => self.op(Op::Sltu, rd, rs1, rs2, false),
            Xor { rd, rs1, rs2 } => self.op(Op::Xor, rd, rs1, rs2, false),
            Srl { rd, rs1, rs2 } => self.op(Op::Srl, rd, rs1, rs2, false),
            Sra { rd, rs1, rs2 } => self.op(Op::Sra, rd, rs1, rs2, false),
            Or { rd, rs1, rs2 } => self.op(Op::Or, rd, rs1, rs2, false),
            And { rd, rs1, rs2 } => self.op(Op::And, rd, rs1, rs2, false),
            Addw { rd, rs1, rs2 } => self.op(Op::Add, rd, rs1, rs2, true),
            Subw { rd, rs1, rs2 } => self.op(Op::Sub, rd, rs1, rs2, true),
            Sllw { rd, rs1, rs2 } => self.op(Op::Sll, rd, rs1, rs2, true),
            Srlw { rd, rs1, rs2 } => self.op(Op::Srl, rd, rs1, rs2, true),
            Sraw { rd, rs1, rs2 } => self.op(Op::Sra, rd, rs1, rs2, true),
            Mul { rd, rs1, rs2 } => self.op(Op::Mul, rd, rs1, rs2, false),
            Mulh { rd, rs1, rs2 } => self.op(Op::Mulh, rd, rs1, rs2, false),
            Mulhsu { rd, rs1, rs2 } => self.op(Op::Mulhsu, rd, rs1, rs2, false),
            Mulhu { rd, rs1, rs2 } => self.op(Op::Mulhu, rd, rs1, rs2, false),
            Div { rd, rs1, rs2 } => self.op(Op::Div, rd, rs1, rs2, false),
            Divu { rd, rs1, rs2 } => self.op(Op::Divu, rd, rs1, rs2, false),
            Rem { rd, rs1, rs2 } => self.op(Op::Rem, rd, rs1, rs2, false),
            Remu { rd, rs1, rs2 } => self.op(Op::Remu, rd, rs1, rs2, false),
            Mulw { rd, rs1, rs2 } => self.op(Op::Mul, rd, rs1, rs2, true),
            Divw { rd, rs1, rs2 } => self.op(Op::Div, rd, rs1, rs2, true),
            Divuw { rd, rs1, rs2 } => self.op(Op::Divu, rd, rs1, rs2, true),
            Remw { rd, rs1, rs2 } => self.op(Op::Rem, rd, rs1, rs2, true),
            Remuw { rd, rs1, rs2 } => self.op(Op::Remu, rd, rs1, rs2, true),
            Fence => {}
            // Everything else runs in the interpreter: CSRs and system instructions
            // (which end blocks), atomics, floating point.
            _ => return self.interp(k, off, entry, last),
        }
        false
    }

    /// A conditional branch, the block's last instruction.
    #[allow(clippy::too_many_arguments)]
    fn branch(
        &mut self,
        k: u64,
        off: u64,
        len: u64,
        cc: IntCC,
        rs1: u8,
        rs2: u8,
        imm: i32,
    ) -> bool {
        let (a, b) = (self.x(rs1), self.x(rs2));
        let c = self.b.ins().icmp(cc, a, b);
        let (taken, fall) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(c, taken, &[], fall, &[]);
        self.b.switch_to_block(taken);
        self.exit_to(off.wrapping_add(imm as i64 as u64), k + 1);
        self.b.switch_to_block(fall);
        self.exit_to(off + len, k + 1);
        true
    }

    /// rd = rs1 op rs2; `word`: the 32-bit form, its result sign-extended.
    fn op(&mut self, op: Op, rd: u8, rs1: u8, rs2: u8, word: bool) {
        let (a, b) = (self.x(rs1), self.x(rs2));
        let v = self.arith(op, a, b, word);
        self.set(rd, v);
    }

    /// rd = rs1 op imm.
    fn op_imm(&mut self, op: Op, rd: u8, rs1: u8, imm: i64, word: bool) {
        let a = self.x(rs1);
        let b = self.iconst(imm);
        let v = self.arith(op, a, b, word);
        self.set(rd, v);
    }

    /// Sign-extend the low 32 bits of `v`.
    fn sext32(&mut self, v: Value) -> Value {
        let w = self.b.ins().ireduce(I32, v);
        self.b.ins().sextend(I64, w)
    }

    /// Zero-extend the low 32 bits of `v`.
    fn zext32(&mut self, v: Value) -> Value {
        let w = self.b.ins().ireduce(I32, v);
        self.b.ins().uextend(I64, w)
    }

    fn flag(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        let c = self.b.ins().icmp(cc, a, b);
        self.b.ins().uextend(I64, c)
    }

    /// The value of `a op b` as `Hart::execute` computes it.
    fn arith(&mut self, op: Op, a: Value, b: Value, word: bool) -> Value {
        if word {
            return match op {
                // Shifts act on the low 32 bits, by the low 5 bits of the amount
                // (Cranelift masks a shift amount by the operand width).
                Op::Sll | Op::Srl | Op::Sra => {
                    let a32 = self.b.ins().ireduce(I32, a);
                    let b32 = self.b.ins().ireduce(I32, b);
                    let r = match op {
                        Op::Sll => self.b.ins().ishl(a32, b32),
                        Op::Srl => self.b.ins().ushr(a32, b32),
                        _ => self.b.ins().sshr(a32, b32),
                    };
                    self.b.ins().sextend(I64, r)
                }
                // As the interpreter: the 64-bit operation on sign-extended operands,
                // truncated, is the 32-bit result (overflow and /0 included).
                Op::Div | Op::Rem => {
                    let (a, b) = (self.sext32(a), self.sext32(b));
                    let r = self.arith(op, a, b, false);
                    self.sext32(r)
                }
                // Unsigned: on the zero-extended low words.
                Op::Divu | Op::Remu => {
                    let (a, b) = (self.zext32(a), self.zext32(b));
                    let r = self.arith(op, a, b, false);
                    self.sext32(r)
                }
                _ => {
                    let r = self.arith(op, a, b, false);
                    self.sext32(r)
                }
            };
        }
        match op {
            Op::Add => self.b.ins().iadd(a, b),
            Op::Sub => self.b.ins().isub(a, b),
            Op::Sll => self.b.ins().ishl(a, b),
            Op::Srl => self.b.ins().ushr(a, b),
            Op::Sra => self.b.ins().sshr(a, b),
            Op::Slt => self.flag(IntCC::SignedLessThan, a, b),
            Op::Sltu => self.flag(IntCC::UnsignedLessThan, a, b),
            Op::Xor => self.b.ins().bxor(a, b),
            Op::Or => self.b.ins().bor(a, b),
            Op::And => self.b.ins().band(a, b),
            Op::Mul => self.b.ins().imul(a, b),
            Op::Mulh => self.b.ins().smulhi(a, b),
            Op::Mulhu => self.b.ins().umulhi(a, b),
            Op::Mulhsu => {
                // signed × unsigned: the unsigned high word, minus b where a < 0.
                let hi = self.b.ins().umulhi(a, b);
                let sign = self.b.ins().sshr_imm_s(a, 63);
                let fix = self.b.ins().band(sign, b);
                self.b.ins().isub(hi, fix)
            }
            Op::Div | Op::Rem => {
                // /0 gives -1 (div) or a (rem); MIN / -1 gives MIN (div) or 0 (rem).
                let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
                let min = self.b.ins().icmp_imm_s(IntCC::Equal, a, i64::MIN);
                let neg1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
                let ovf = self.b.ins().band(min, neg1);
                let special = self.b.ins().bor(zero, ovf);
                let one = self.iconst(1);
                let safe = self.b.ins().select(special, one, b);
                if matches!(op, Op::Div) {
                    let q = self.b.ins().sdiv(a, safe);
                    let m1 = self.iconst(-1);
                    let q = self.b.ins().select(ovf, a, q);
                    self.b.ins().select(zero, m1, q)
                } else {
                    let r = self.b.ins().srem(a, safe);
                    let z = self.iconst(0);
                    let r = self.b.ins().select(ovf, z, r);
                    self.b.ins().select(zero, a, r)
                }
            }
            Op::Divu | Op::Remu => {
                let zero = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
                let one = self.iconst(1);
                let safe = self.b.ins().select(zero, one, b);
                if matches!(op, Op::Divu) {
                    let q = self.b.ins().udiv(a, safe);
                    let max = self.iconst(-1);
                    self.b.ins().select(zero, max, q)
                } else {
                    let r = self.b.ins().urem(a, safe);
                    self.b.ins().select(zero, a, r)
                }
            }
        }
    }

    /// The inline address path: on success, in the current block, the host address
    /// of `[va, va + n)` in guest RAM; every other case branches to `slow`.
    fn fast_addr(&mut self, va: Value, n: u8, acc: Access, slow: Block) -> Value {
        let next = |t: &mut Self, ok: Value| {
            let cont = t.b.create_block();
            t.b.ins().brif(ok, cont, &[], slow, &[]);
            t.b.switch_to_block(cont);
        };
        if n > 1 {
            let low = self.b.ins().band_imm_s(va, n as i64 - 1);
            let aligned = self.b.ins().icmp_imm_s(IntCC::Equal, low, 0);
            next(self, aligned);
        }
        let pa = match self.mode {
            DataMode::Bare => va,
            DataMode::User | DataMode::Super => {
                let prv = if self.mode == DataMode::User {
                    Priv::U
                } else {
                    Priv::S
                };
                let set = tlb::set(prv, acc) as i32;
                let vpn = self.b.ins().ushr_imm_s(va, 12);
                let idx = self.b.ins().band_imm_s(vpn, TLB_ENTRIES as i64 - 1);
                let eoff = self.b.ins().imul_imm_s(idx, tlb::ENTRY as i64);
                let e = self.b.ins().iadd(self.tlb, eoff);
                let evpn = self.b.ins().load(I64, MEM, e, set + tlb::VPN as i32);
                let eflags = self.b.ins().uload8(I32, MEM, e, set + tlb::FLAGS as i32);
                let hit = self.b.ins().icmp(IntCC::Equal, evpn, vpn);
                // An entry with a SUM/MXR flag needs mstatus: the slow path checks it.
                let plain = self.b.ins().icmp_imm_s(IntCC::Equal, eflags, 0);
                let ok = self.b.ins().band(hit, plain);
                next(self, ok);
                let page = self.b.ins().load(I64, MEM, e, set + tlb::PPAGE as i32);
                let inpage = self.b.ins().band_imm_s(va, 0xfff);
                self.b.ins().bor(page, inpage)
            }
        };
        let roff = self.b.ins().iadd_imm_s(pa, -(RAM_BASE as i64));
        let limit = self.ram_size.saturating_sub(n as u64) as i64;
        let inram = self
            .b
            .ins()
            .icmp_imm_s(IntCC::UnsignedLessThanOrEqual, roff, limit);
        next(self, inram);
        if acc == Access::Store {
            // Stored to directly only if the page needs no bookkeeping.
            let page = self.b.ins().ushr_imm_s(roff, 12);
            let fa = self.b.ins().iadd(self.flags, page);
            let f = self.b.ins().uload8(I32, MEM, fa, 0);
            let plain = self.b.ins().icmp_imm_s(IntCC::Equal, f, DIRTY as i64);
            next(self, plain);
        }
        self.b.ins().iadd(self.ram, roff)
    }

    /// A load of `n` bytes into `rd`.
    #[allow(clippy::too_many_arguments)]
    fn load(&mut self, k: u64, off: u64, len: u64, rd: u8, rs1: u8, imm: i32, n: u8, signed: bool) {
        let base = self.x(rs1);
        let va = self.b.ins().iadd_imm_s(base, imm as i64);
        let slow = self.cold_block();
        let join = self.b.create_block();
        self.b.append_block_param(join, I64);
        let host = self.fast_addr(va, n, Access::Load, slow);
        let v = match (n, signed) {
            (1, true) => self.b.ins().sload8(I64, MEM, host, 0),
            (1, false) => self.b.ins().uload8(I64, MEM, host, 0),
            (2, true) => self.b.ins().sload16(I64, MEM, host, 0),
            (2, false) => self.b.ins().uload16(I64, MEM, host, 0),
            (4, true) => self.b.ins().sload32(MEM, host, 0),
            (4, false) => self.b.ins().uload32(MEM, host, 0),
            _ => self.b.ins().load(I64, MEM, host, 0),
        };
        self.b.ins().jump(join, &[BlockArg::Value(v)]);

        // Slow path: the interpreter's load, with the registers in the hart so that
        // leaving needs no more than the result and the pc.
        self.b.switch_to_block(slow);
        self.before_helper(k, off);
        let f = match n {
            1 => helpers::load::<1> as *const () as usize,
            2 => helpers::load::<2> as *const () as usize,
            4 => helpers::load::<4> as *const () as usize,
            _ => helpers::load::<8> as *const () as usize,
        };
        let status = self.call(f, &[self.ctx, va]);
        let raw = self.b.ins().load(I64, MEM, self.ctx, CTX_SCRATCH);
        let v = if signed {
            let ty: Type = Type::int(8 * n as u16).expect("a width of 8 to 32 bits");
            let narrow = self.b.ins().ireduce(ty, raw);
            self.b.ins().sextend(I64, narrow)
        } else {
            raw
        };
        let done = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, CONTINUE as i64);
        let leave = self.cold_block();
        self.b
            .ins()
            .brif(done, join, &[BlockArg::Value(v)], leave, &[]);
        self.b.switch_to_block(leave);
        self.leave_after_helper(status, off + len, Some((rd, v)));

        self.b.switch_to_block(join);
        let v = self.b.block_params(join)[0];
        self.set(rd, v);
    }

    /// A store of the low `n` bytes of rs2.
    #[allow(clippy::too_many_arguments)]
    fn store(&mut self, k: u64, off: u64, len: u64, rs1: u8, rs2: u8, imm: i32, n: u8) {
        let base = self.x(rs1);
        let va = self.b.ins().iadd_imm_s(base, imm as i64);
        let v = self.x(rs2);
        let slow = self.cold_block();
        let join = self.b.create_block();
        let host = self.fast_addr(va, n, Access::Store, slow);
        match n {
            1 => self.b.ins().istore8(MEM, v, host, 0),
            2 => self.b.ins().istore16(MEM, v, host, 0),
            4 => self.b.ins().istore32(MEM, v, host, 0),
            _ => self.b.ins().store(MEM, v, host, 0),
        };
        self.b.ins().jump(join, &[]);

        self.b.switch_to_block(slow);
        self.before_helper(k, off);
        let f = match n {
            1 => helpers::store::<1> as *const () as usize,
            2 => helpers::store::<2> as *const () as usize,
            4 => helpers::store::<4> as *const () as usize,
            _ => helpers::store::<8> as *const () as usize,
        };
        let status = self.call(f, &[self.ctx, va, v]);
        let done = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, CONTINUE as i64);
        let leave = self.cold_block();
        self.b.ins().brif(done, join, &[], leave, &[]);
        self.b.switch_to_block(leave);
        self.leave_after_helper(status, off + len, None);

        self.b.switch_to_block(join);
    }

    /// Before a helper for instruction `k` at byte offset `off`: the registers, the
    /// pc and the instruction count (including this instruction) go to the hart,
    /// where the helper and any exit after it find them.
    fn before_helper(&mut self, k: u64, off: u64) {
        self.write_back();
        let pc = self.pc_at(off);
        self.store_pc(pc);
        self.store_icount(k + 1);
    }

    /// After a helper said stop or trapped (the registers are in the hart already).
    /// On a stop the instruction completed (its result `extra`): pc moves past it.
    /// On a trap the helper already set pc to the handler.
    fn leave_after_helper(&mut self, status: Value, next_off: u64, extra: Option<(u8, Value)>) {
        let trapped = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, TRAPPED as i64);
        let (on_trap, on_stop) = (self.cold_block(), self.cold_block());
        self.b.ins().brif(trapped, on_trap, &[], on_stop, &[]);
        self.b.switch_to_block(on_trap);
        self.b.ins().return_(&[]);
        self.b.switch_to_block(on_stop);
        if let Some((rd, v)) = extra {
            if rd != 0 && (rd as usize) < 32 {
                self.b.ins().store(MEM, v, self.hart, X + 8 * rd as i32);
            }
        }
        let next = self.pc_at(next_off);
        self.store_pc(next);
        self.b.ins().return_(&[]);
    }

    /// An instruction run by the interpreter: registers written back before (it reads
    /// them from the hart) and read again after (it may write any).
    fn interp(&mut self, k: u64, off: u64, entry: &(Insn, u8), last: bool) -> bool {
        self.before_helper(k, off);
        self.dirty = 0;
        self.regs = [None; 32];
        let insn = self.iconst(entry as *const (Insn, u8) as i64);
        let status = self.call(helpers::interp as *const () as usize, &[self.ctx, insn]);
        if last {
            // The helper left pc at the next instruction or the trap handler.
            self.b.ins().return_(&[]);
            return true;
        }
        let done = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, status, CONTINUE as i64);
        let (cont, leave) = (self.b.create_block(), self.cold_block());
        self.b.ins().brif(done, cont, &[], leave, &[]);
        self.b.switch_to_block(leave);
        self.b.ins().return_(&[]);
        self.b.switch_to_block(cont);
        false
    }
}
