//! Disassembly (`Display`) in GNU objdump syntax, for traces and test failures.

use super::decode::{AmoOp, CsrOp, Insn};
use std::fmt;

const ABI: [&str; 33] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4",
    "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4",
    "t5", "t6", "zero",
];

fn r(n: u8) -> &'static str {
    ABI[n as usize]
}

fn fr(n: u8) -> String {
    const F: [&str; 32] = [
        "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2",
        "fa3", "fa4", "fa5", "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9",
        "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
    ];
    F[n as usize & 31].to_string()
}

impl fmt::Display for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Insn::*;
        let name = format!("{self:?}");
        let mnem = name.split([' ', '(']).next().unwrap_or("").to_lowercase();
        match *self {
            Lui { rd, imm } | Auipc { rd, imm } => {
                write!(f, "{mnem} {},{:#x}", r(rd), (imm as u32) >> 12)
            }
            Jal { rd, imm } => write!(f, "jal {},{}", r(rd), imm),
            Jalr { rd, rs1, imm } => write!(f, "jalr {},{}({})", r(rd), imm, r(rs1)),
            Beq { rs1, rs2, imm }
            | Bne { rs1, rs2, imm }
            | Blt { rs1, rs2, imm }
            | Bge { rs1, rs2, imm }
            | Bltu { rs1, rs2, imm }
            | Bgeu { rs1, rs2, imm } => write!(f, "{mnem} {},{},{}", r(rs1), r(rs2), imm),
            Lb { rd, rs1, imm }
            | Lh { rd, rs1, imm }
            | Lw { rd, rs1, imm }
            | Ld { rd, rs1, imm }
            | Lbu { rd, rs1, imm }
            | Lhu { rd, rs1, imm }
            | Lwu { rd, rs1, imm } => write!(f, "{mnem} {},{}({})", r(rd), imm, r(rs1)),
            Sb { rs1, rs2, imm }
            | Sh { rs1, rs2, imm }
            | Sw { rs1, rs2, imm }
            | Sd { rs1, rs2, imm } => {
                write!(f, "{mnem} {},{}({})", r(rs2), imm, r(rs1))
            }
            Addi { rd, rs1, imm }
            | Slti { rd, rs1, imm }
            | Sltiu { rd, rs1, imm }
            | Xori { rd, rs1, imm }
            | Ori { rd, rs1, imm }
            | Andi { rd, rs1, imm }
            | Addiw { rd, rs1, imm } => write!(f, "{mnem} {},{},{}", r(rd), r(rs1), imm),
            Slli { rd, rs1, sh }
            | Srli { rd, rs1, sh }
            | Srai { rd, rs1, sh }
            | Slliw { rd, rs1, sh }
            | Srliw { rd, rs1, sh }
            | Sraiw { rd, rs1, sh } => write!(f, "{mnem} {},{},{:#x}", r(rd), r(rs1), sh),
            Add { rd, rs1, rs2 }
            | Sub { rd, rs1, rs2 }
            | Sll { rd, rs1, rs2 }
            | Slt { rd, rs1, rs2 }
            | Sltu { rd, rs1, rs2 }
            | Xor { rd, rs1, rs2 }
            | Srl { rd, rs1, rs2 }
            | Sra { rd, rs1, rs2 }
            | Or { rd, rs1, rs2 }
            | And { rd, rs1, rs2 }
            | Addw { rd, rs1, rs2 }
            | Subw { rd, rs1, rs2 }
            | Sllw { rd, rs1, rs2 }
            | Srlw { rd, rs1, rs2 }
            | Sraw { rd, rs1, rs2 }
            | Mul { rd, rs1, rs2 }
            | Mulh { rd, rs1, rs2 }
            | Mulhsu { rd, rs1, rs2 }
            | Mulhu { rd, rs1, rs2 }
            | Div { rd, rs1, rs2 }
            | Divu { rd, rs1, rs2 }
            | Rem { rd, rs1, rs2 }
            | Remu { rd, rs1, rs2 }
            | Mulw { rd, rs1, rs2 }
            | Divw { rd, rs1, rs2 }
            | Divuw { rd, rs1, rs2 }
            | Remw { rd, rs1, rs2 }
            | Remuw { rd, rs1, rs2 } => write!(f, "{mnem} {},{},{}", r(rd), r(rs1), r(rs2)),
            Lr { rd, rs1, double } => write!(f, "lr.{} {},({})", wd(double), r(rd), r(rs1)),
            Sc {
                rd,
                rs1,
                rs2,
                double,
            } => write!(f, "sc.{} {},{},({})", wd(double), r(rd), r(rs2), r(rs1)),
            Amo {
                op,
                rd,
                rs1,
                rs2,
                double,
            } => {
                let op = match op {
                    AmoOp::Swap => "swap",
                    AmoOp::Add => "add",
                    AmoOp::Xor => "xor",
                    AmoOp::And => "and",
                    AmoOp::Or => "or",
                    AmoOp::Min => "min",
                    AmoOp::Max => "max",
                    AmoOp::Minu => "minu",
                    AmoOp::Maxu => "maxu",
                };
                write!(
                    f,
                    "amo{op}.{} {},{},({})",
                    wd(double),
                    r(rd),
                    r(rs2),
                    r(rs1)
                )
            }
            Fence => write!(f, "fence"),
            FenceI => write!(f, "fence.i"),
            Ecall => write!(f, "ecall"),
            Ebreak => write!(f, "ebreak"),
            Mret => write!(f, "mret"),
            Sret => write!(f, "sret"),
            Wfi => write!(f, "wfi"),
            SfenceVma { rs1, rs2 } => write!(f, "sfence.vma {},{}", r(rs1), r(rs2)),
            Csr { op, rd, rs1, csr } => {
                write!(f, "csrr{} {},{:#x},{}", csr_op(op), r(rd), csr, r(rs1))
            }
            CsrI { op, rd, uimm, csr } => {
                write!(f, "csrr{}i {},{:#x},{}", csr_op(op), r(rd), csr, uimm)
            }
            Flw { rd, rs1, imm } => write!(f, "flw {},{}({})", fr(rd), imm, r(rs1)),
            Fld { rd, rs1, imm } => write!(f, "fld {},{}({})", fr(rd), imm, r(rs1)),
            Fsw { rs1, rs2, imm } => write!(f, "fsw {},{}({})", fr(rs2), imm, r(rs1)),
            Fsd { rs1, rs2, imm } => write!(f, "fsd {},{}({})", fr(rs2), imm, r(rs1)),
            Fp(i) => write!(f, "{i}"),
            Illegal => write!(f, "illegal"),
        }
    }
}

fn wd(double: bool) -> &'static str {
    if double {
        "d"
    } else {
        "w"
    }
}

fn csr_op(op: CsrOp) -> &'static str {
    match op {
        CsrOp::Rw => "w",
        CsrOp::Rs => "s",
        CsrOp::Rc => "c",
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::{decode16, decode32};

    #[test]
    fn disassembles_common_instructions() {
        assert_eq!(decode32(0x00a50533).to_string(), "add a0,a0,a0");
        assert_eq!(decode32(0xfff00293).to_string(), "addi t0,zero,-1");
        assert_eq!(decode32(0x0000_0073).to_string(), "ecall");
        assert_eq!(decode16(0x4501).to_string(), "addi a0,zero,0");
        assert_eq!(super::ABI[super::super::decode::X0_SINK as usize], "zero");
    }
}
