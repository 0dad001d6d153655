//! The RV64 instruction encoder (unprivileged spec ch. 2 base formats, ch. 34 opcode
//! map), pinned to riscv64-linux-gnu-as output by `tests::encoder_matches_binutils`.
#![allow(dead_code)]

/// An R-type word.
pub fn r_type(op: u32, f3: u32, f7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}
fn check_imm(imm: i32, bits: u32) {
    let half = 1 << (bits - 1);
    assert!(
        (-half..half).contains(&imm),
        "immediate {imm} does not fit {bits} bits"
    );
}
/// An I-type word.
pub fn i_type(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    check_imm(imm, 12);
    (imm as u32 & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
}
/// An S-type word.
pub fn s_type(op: u32, f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    check_imm(imm, 12);
    let imm = imm as u32;
    (imm >> 5 & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | op
}
fn b_type(f3: u32, rs1: u32, rs2: u32, off: i32) -> u32 {
    check_imm(off, 13);
    let o = off as u32;
    (o >> 12 & 1) << 31
        | (o >> 5 & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | (o >> 1 & 0xf) << 8
        | (o >> 11 & 1) << 7
        | 0x63
}

/// `lui rd, imm20` (the 20-bit field, as objdump prints it).
pub fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 & 0xfffff) << 12 | rd << 7 | 0x37
}
/// `auipc rd, imm20`.
pub fn auipc(rd: u32, imm20: u32) -> u32 {
    (imm20 & 0xfffff) << 12 | rd << 7 | 0x17
}
/// `jal rd, off` (pc-relative byte offset).
pub fn jal(rd: u32, off: i32) -> u32 {
    check_imm(off, 21);
    let o = off as u32;
    (o >> 20 & 1) << 31
        | (o >> 1 & 0x3ff) << 21
        | (o >> 11 & 1) << 20
        | (o & 0xff000)
        | rd << 7
        | 0x6f
}
/// `jalr rd, imm(rs1)`.
pub fn jalr(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(0x67, 0, rd, rs1, imm)
}

macro_rules! enc {
    (branch $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rs1, rs2, off`.")]
        pub fn $name(rs1: u32, rs2: u32, off: i32) -> u32 { b_type($f3, rs1, rs2, off) }
    )*};
    (load $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, imm(rs1)`.")]
        pub fn $name(rd: u32, rs1: u32, imm: i32) -> u32 { i_type(0x03, $f3, rd, rs1, imm) }
    )*};
    (store $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rs2, imm(rs1)`.")]
        pub fn $name(rs2: u32, rs1: u32, imm: i32) -> u32 { s_type(0x23, $f3, rs1, rs2, imm) }
    )*};
    (imm $op:expr; $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, imm`.")]
        pub fn $name(rd: u32, rs1: u32, imm: i32) -> u32 { i_type($op, $f3, rd, rs1, imm) }
    )*};
    (shift $op:expr; $($name:ident = $f3:expr, $hi:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, shamt`.")]
        pub fn $name(rd: u32, rs1: u32, sh: u32) -> u32 {
            i_type($op, $f3, rd, rs1, ($hi << 5 | sh) as i32)
        }
    )*};
    (reg $op:expr; $($name:ident = $f3:expr, $f7:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs1, rs2`.")]
        pub fn $name(rd: u32, rs1: u32, rs2: u32) -> u32 { r_type($op, $f3, $f7, rd, rs1, rs2) }
    )*};
    (amo $($name:ident = $f5:expr, $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, rs2, (rs1)`.")]
        pub fn $name(rd: u32, rs2: u32, rs1: u32) -> u32 {
            r_type(0x2f, $f3, $f5 << 2, rd, rs1, rs2)
        }
    )*};
    (csr $($name:ident = $f3:expr;)*) => {$(
        #[doc = concat!("`", stringify!($name), " rd, csr, rs1_or_uimm`.")]
        pub fn $name(rd: u32, csr: u16, src: u32) -> u32 {
            (csr as u32) << 20 | src << 15 | $f3 << 12 | rd << 7 | 0x73
        }
    )*};
}

enc!(branch beq = 0; bne = 1; blt = 4; bge = 5; bltu = 6; bgeu = 7;);
enc!(load lb = 0; lh = 1; lw = 2; ld = 3; lbu = 4; lhu = 5; lwu = 6;);
enc!(store sb = 0; sh = 1; sw = 2; sd = 3;);
enc!(imm 0x13; addi = 0; slti = 2; sltiu = 3; xori = 4; ori = 6; andi = 7;);
enc!(imm 0x1b; addiw = 0;);
enc!(shift 0x13; slli = 1, 0; srli = 5, 0; srai = 5, 0x20;);
enc!(shift 0x1b; slliw = 1, 0; srliw = 5, 0; sraiw = 5, 0x20;);
enc!(reg 0x33;
    add = 0, 0; sub = 0, 0x20; sll = 1, 0; slt = 2, 0; sltu = 3, 0; xor = 4, 0;
    srl = 5, 0; sra = 5, 0x20; or = 6, 0; and = 7, 0;
    mul = 0, 1; mulh = 1, 1; mulhsu = 2, 1; mulhu = 3, 1;
    div = 4, 1; divu = 5, 1; rem = 6, 1; remu = 7, 1;);
enc!(reg 0x3b;
    addw = 0, 0; subw = 0, 0x20; sllw = 1, 0; srlw = 5, 0; sraw = 5, 0x20;
    mulw = 0, 1; divw = 4, 1; divuw = 5, 1; remw = 6, 1; remuw = 7, 1;);
enc!(amo
    sc_w = 0x03, 2; sc_d = 0x03, 3;
    amoswap_w = 0x01, 2; amoadd_w = 0x00, 2; amoxor_w = 0x04, 2; amoand_w = 0x0c, 2;
    amoor_w = 0x08, 2; amomin_w = 0x10, 2; amomax_w = 0x14, 2; amominu_w = 0x18, 2;
    amomaxu_w = 0x1c, 2;
    amoswap_d = 0x01, 3; amoadd_d = 0x00, 3; amomin_d = 0x10, 3; amomaxu_d = 0x1c, 3;);
enc!(csr csrrw = 1; csrrs = 2; csrrc = 3; csrrwi = 5; csrrsi = 6; csrrci = 7;);

/// `lr.w rd, (rs1)`.
pub fn lr_w(rd: u32, rs1: u32) -> u32 {
    r_type(0x2f, 2, 0x02 << 2, rd, rs1, 0)
}
/// `lr.d rd, (rs1)`.
pub fn lr_d(rd: u32, rs1: u32) -> u32 {
    r_type(0x2f, 3, 0x02 << 2, rd, rs1, 0)
}
/// `ecall`.
pub const ECALL: u32 = 0x0000_0073;
/// `ebreak`.
pub const EBREAK: u32 = 0x0010_0073;
/// `mret`.
pub const MRET: u32 = 0x3020_0073;
/// `sret`.
pub const SRET: u32 = 0x1020_0073;
/// `wfi`.
pub const WFI: u32 = 0x1050_0073;
/// `fence iorw, iorw`.
pub const FENCE: u32 = 0x0ff0_000f;
/// `fence.i`.
pub const FENCE_I: u32 = 0x0000_100f;
/// `sfence.vma rs1, rs2`.
pub fn sfence_vma(rs1: u32, rs2: u32) -> u32 {
    r_type(0x73, 0, 0x09, 0, rs1, rs2)
}
/// `fadd.d rd, rs1, rs2` (dynamic rounding).
pub fn fadd_d(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r_type(0x53, 7, 0x01, rd, rs1, rs2)
}
/// `fmv.d.x rd, rs1`.
pub fn fmv_d_x(rd: u32, rs1: u32) -> u32 {
    r_type(0x53, 0, 0x79, rd, rs1, 0)
}
/// `csrw csr, rs1` (`csrrw zero, csr, rs1`).
pub fn csrw(csr: u16, rs1: u32) -> u32 {
    csrrw(0, csr, rs1)
}
/// `csrr rd, csr` (`csrrs rd, csr, zero`).
pub fn csrr(rd: u32, csr: u16) -> u32 {
    csrrs(rd, csr, 0)
}

#[cfg(test)]
mod tests {
    use super::super::reg::*;
    use super::*;

    /// Words from riscv64-linux-gnu-as 2.40 (`.option norvc`).
    #[test]
    fn encoder_matches_binutils() {
        let cases: &[(u32, u32)] = &[
            (lui(A0, 0x12345), 0x12345537),
            (auipc(RA, 1), 0x00001097),
            (jal(RA, 16), 0x010000ef),
            (jal(ZERO, -8), 0xff9ff06f),
            (jalr(ZERO, T0, -2048), 0x80028067),
            (blt(A0, ZERO, 4094), 0x7e054fe3),
            (bge(T0, T1, -4096), 0x8062d063),
            (bgeu(A4, A5, -2), 0xfef77fe3),
            (lw(S1, S2, 2047), 0x7ff92483),
            (lwu(T4, T5, 8), 0x008f6e83),
            (sb(A0, A1, -1), 0xfea58fa3),
            (sd(RA, SP, -2048), 0x80113023),
            (addi(A0, ZERO, -1), 0xfff00513),
            (srai(A0, A1, 63), 0x43f5d513),
            (sraiw(A0, A1, 31), 0x41f5d51b),
            (sub(A0, A1, A2), 0x40c58533),
            (remuw(A0, A1, A2), 0x02c5f53b),
            (mulhsu(A0, A1, A2), 0x02c5a533),
            (lr_d(T0, SP), 0x100132af),
            (sc_w(A0, A2, A1), 0x18c5a52f),
            (amomaxu_w(A0, A2, A1), 0xe0c5a52f),
            (amoadd_d(A0, A2, A1), 0x00c5b52f),
            (csrrw(A0, 0x300, A1), 0x30059573),
            (csrrwi(A0, 0x305, 31), 0x305fd573),
            (csrr(A0, 0xc00), 0xc0002573),
            (sfence_vma(A0, A1), 0x12b50073),
            (fadd_d(10, 11, 12), 0x02c5f553),
            (fmv_d_x(0, A0), 0xf2050053),
        ];
        for (i, &(got, want)) in cases.iter().enumerate() {
            assert_eq!(got, want, "case {i}: {got:#010x} != {want:#010x}");
        }
    }
}
