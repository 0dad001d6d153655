//! Decoding and disassembly of RV64IMA, Zicsr and the system instructions, and the
//! expansion of every compressed form, against binutils 2.40.

use crate::cpu::decode::{decode16, decode32, Insn};

/// Words from riscv64-linux-gnu-as (`.option norvc`) with the text
/// `objdump -d -M no-aliases` prints, normalised to ftvm's Display: branch and jump
/// targets as offsets from the instruction, CSRs as numbers.
const OBJDUMP: &[(u32, &str)] = &[
    (0x12345537, "lui a0,0x12345"),
    (0xffffffb7, "lui t6,0xfffff"),
    (0x00001097, "auipc ra,0x1"),
    (0x010000ef, "jal ra,16"),
    (0xff9ff06f, "jal zero,-8"),
    (0x008500e7, "jalr ra,8(a0)"),
    (0x80028067, "jalr zero,-2048(t0)"),
    (0x00b50463, "beq a0,a1,8"),
    (0xfe9418e3, "bne s0,s1,-16"),
    (0x7e054fe3, "blt a0,zero,4094"),
    (0x8062d063, "bge t0,t1,-4096"),
    (0x02d66063, "bltu a2,a3,32"),
    (0xfef77fe3, "bgeu a4,a5,-2"),
    (0xfff58503, "lb a0,-1(a1)"),
    (0x00211503, "lh a0,2(sp)"),
    (0x7ff92483, "lw s1,2047(s2)"),
    (0x80013083, "ld ra,-2048(sp)"),
    (0x00034283, "lbu t0,0(t1)"),
    (0x004e5383, "lhu t2,4(t3)"),
    (0x008f6e83, "lwu t4,8(t5)"),
    (0xfea58fa3, "sb a0,-1(a1)"),
    (0x00c11323, "sh a2,6(sp)"),
    (0x7f3a2fa3, "sw s3,2047(s4)"),
    (0x80113023, "sd ra,-2048(sp)"),
    (0xfff00513, "addi a0,zero,-1"),
    (0x80062593, "slti a1,a2,-2048"),
    (0x7ff73693, "sltiu a3,a4,2047"),
    (0xfff84793, "xori a5,a6,-1"),
    (0x0ff96893, "ori a7,s2,255"),
    (0x07fa7993, "andi s3,s4,127"),
    (0x03f59513, "slli a0,a1,0x3f"),
    (0x0015d513, "srli a0,a1,0x1"),
    (0x43f5d513, "srai a0,a1,0x3f"),
    (0xffb5851b, "addiw a0,a1,-5"),
    (0x01f5951b, "slliw a0,a1,0x1f"),
    (0x0005d51b, "srliw a0,a1,0x0"),
    (0x41f5d51b, "sraiw a0,a1,0x1f"),
    (0x00c58533, "add a0,a1,a2"),
    (0x40c58533, "sub a0,a1,a2"),
    (0x00c59533, "sll a0,a1,a2"),
    (0x00c5a533, "slt a0,a1,a2"),
    (0x00c5b533, "sltu a0,a1,a2"),
    (0x00c5c533, "xor a0,a1,a2"),
    (0x00c5d533, "srl a0,a1,a2"),
    (0x40c5d533, "sra a0,a1,a2"),
    (0x00c5e533, "or a0,a1,a2"),
    (0x00c5f533, "and a0,a1,a2"),
    (0x00c5853b, "addw a0,a1,a2"),
    (0x40c5853b, "subw a0,a1,a2"),
    (0x00c5953b, "sllw a0,a1,a2"),
    (0x00c5d53b, "srlw a0,a1,a2"),
    (0x40c5d53b, "sraw a0,a1,a2"),
    (0x02c58533, "mul a0,a1,a2"),
    (0x02c59533, "mulh a0,a1,a2"),
    (0x02c5a533, "mulhsu a0,a1,a2"),
    (0x02c5b533, "mulhu a0,a1,a2"),
    (0x02c5c533, "div a0,a1,a2"),
    (0x02c5d533, "divu a0,a1,a2"),
    (0x02c5e533, "rem a0,a1,a2"),
    (0x02c5f533, "remu a0,a1,a2"),
    (0x02c5853b, "mulw a0,a1,a2"),
    (0x02c5c53b, "divw a0,a1,a2"),
    (0x02c5d53b, "divuw a0,a1,a2"),
    (0x02c5e53b, "remw a0,a1,a2"),
    (0x02c5f53b, "remuw a0,a1,a2"),
    (0x1005a52f, "lr.w a0,(a1)"),
    (0x100132af, "lr.d t0,(sp)"),
    (0x18c5a52f, "sc.w a0,a2,(a1)"),
    (0x18c5b52f, "sc.d a0,a2,(a1)"),
    (0x08c5a52f, "amoswap.w a0,a2,(a1)"),
    (0x00c5a52f, "amoadd.w a0,a2,(a1)"),
    (0x20c5a52f, "amoxor.w a0,a2,(a1)"),
    (0x60c5a52f, "amoand.w a0,a2,(a1)"),
    (0x40c5a52f, "amoor.w a0,a2,(a1)"),
    (0x80c5a52f, "amomin.w a0,a2,(a1)"),
    (0xa0c5a52f, "amomax.w a0,a2,(a1)"),
    (0xc0c5a52f, "amominu.w a0,a2,(a1)"),
    (0xe0c5a52f, "amomaxu.w a0,a2,(a1)"),
    (0x08c5b52f, "amoswap.d a0,a2,(a1)"),
    (0x00c5b52f, "amoadd.d a0,a2,(a1)"),
    (0x20c5b52f, "amoxor.d a0,a2,(a1)"),
    (0x60c5b52f, "amoand.d a0,a2,(a1)"),
    (0x40c5b52f, "amoor.d a0,a2,(a1)"),
    (0x80c5b52f, "amomin.d a0,a2,(a1)"),
    (0xa0c5b52f, "amomax.d a0,a2,(a1)"),
    (0xc0c5b52f, "amominu.d a0,a2,(a1)"),
    (0xe0c5b52f, "amomaxu.d a0,a2,(a1)"),
    (0x0000100f, "fence.i"),
    (0x00000073, "ecall"),
    (0x00100073, "ebreak"),
    (0x30200073, "mret"),
    (0x10200073, "sret"),
    (0x10500073, "wfi"),
    (0x12000073, "sfence.vma zero,zero"),
    (0x12b50073, "sfence.vma a0,a1"),
    (0x30059573, "csrrw a0,0x300,a1"),
    (0x3042a073, "csrrs zero,0x304,t0"),
    (0x10003373, "csrrc t1,0x100,zero"),
    (0x305fd573, "csrrwi a0,0x305,31"),
    (0x7c00e073, "csrrsi zero,0x7c0,1"),
    (0x180075f3, "csrrci a1,0x180,0"),
    (0xc0002573, "csrrs a0,0xc00,zero"),
];

#[test]
fn every_32_bit_form_disassembles_like_objdump() {
    for &(word, text) in OBJDUMP {
        let insn = decode32(word);
        assert_ne!(insn, Insn::Illegal, "{word:#010x} ({text})");
        assert_eq!(insn.to_string(), text, "{word:#010x}");
    }
}

/// Where ftvm's text differs from objdump's by design: FENCE operands and the AMO
/// ordering bits are not printed (they do not change execution on one hart).
#[test]
fn fence_and_amo_ordering_bits_are_not_printed() {
    // objdump: "fence iorw,iorw", "amoadd.d.aqrl a0,a2,(a1)".
    assert_eq!(decode32(0x0ff0000f).to_string(), "fence");
    assert_eq!(decode32(0x06c5b52f).to_string(), "amoadd.d a0,a2,(a1)");
    assert_eq!(decode32(0x06c5b52f), decode32(0x00c5b52f));
}

#[test]
fn reserved_32_bit_encodings_are_illegal() {
    let illegal: &[(u32, &str)] = &[
        (0xffff_ffff, "all ones"),
        (0x0000_7003, "load funct3 7"),
        (0x0000_4023, "store funct3 4"),
        (0x0000_2063, "branch funct3 2"),
        (0x0000_1067, "jalr funct3 1"),
        (0x0200_151b, "slliw with shamt[5] set"),
        (0x8000_5013, "srai with funct6 0x20"),
        (0x4000_1033, "sll with funct7 0x20"),
        (0x4000_103b, "sllw with funct7 0x20"),
        (0x1015_a52f, "lr.w with rs2 != 0"),
        (0x2800_252f, "AMO funct5 0x05"),
        (0x00c5_c52f, "AMO width funct3 4"),
        (0x0000_00f3, "ecall with rd != 0"),
        (0x0000_4073, "system funct3 4"),
        (0x3030_0073, "unknown privileged instruction"),
        (0x1200_00f3, "sfence.vma with rd != 0"),
        (0x0000_200f, "misc-mem funct3 2"),
        (0x0000_007f, "opcode 0x7f (>32-bit encoding)"),
    ];
    for &(word, what) in illegal {
        assert_eq!(decode32(word), Insn::Illegal, "{word:#010x}: {what}");
    }
}

/// (compressed word, its 32-bit equivalent), both from riscv64-linux-gnu-as; the
/// comment is objdump's text for the pair. Every RV64C form, quadrants 0-2.
const EXPANSIONS: &[(u16, u32)] = &[
    (0x1fe8, 0x3fc10513), // c.addi4spn a0,sp,1020 = addi a0,sp,1020
    (0x0044, 0x00410493), // c.addi4spn s1,sp,4 = addi s1,sp,4
    (0x3fe8, 0x0f87b507), // c.fld fa0,248(a5) = fld fa0,248(a5)
    (0x5de8, 0x07c5a503), // c.lw a0,124(a1) = lw a0,124(a1)
    (0x7fe0, 0x0f87b403), // c.ld s0,248(a5) = ld s0,248(a5)
    (0xa40c, 0x00b43427), // c.fsd fa1,8(s0) = fsd fa1,8(s0)
    (0xc2b0, 0x04c6a023), // c.sw a2,64(a3) = sw a2,64(a3)
    (0xe3d8, 0x08e7b023), // c.sd a4,128(a5) = sd a4,128(a5)
    (0x0001, 0x00000013), // c.nop = addi zero,zero,0
    (0x1501, 0xfe050513), // c.addi a0,-32 = addi a0,a0,-32
    (0x02fd, 0x01f28293), // c.addi t0,31 = addi t0,t0,31
    (0x357d, 0xfff5051b), // c.addiw a0,-1 = addiw a0,a0,-1
    (0x2d81, 0x000d8d9b), // c.addiw s11,0 = addiw s11,s11,0
    (0x5781, 0xfe000793), // c.li a5,-32 = addi a5,zero,-32
    (0x40fd, 0x01f00093), // c.li ra,31 = addi ra,zero,31
    (0x7101, 0xe0010113), // c.addi16sp sp,-512 = addi sp,sp,-512
    (0x617d, 0x1f010113), // c.addi16sp sp,496 = addi sp,sp,496
    (0x6505, 0x00001537), // c.lui a0,0x1 = lui a0,0x1
    (0x7f81, 0xfffe0fb7), // c.lui t6,0xfffe0 = lui t6,0xfffe0
    (0x647d, 0x0001f437), // c.lui s0,0x1f = lui s0,0x1f
    (0x917d, 0x03f55513), // c.srli a0,63 = srli a0,a0,63
    (0x8085, 0x0014d493), // c.srli s1,1 = srli s1,s1,1
    (0x9581, 0x4205d593), // c.srai a1,32 = srai a1,a1,32
    (0x9a7d, 0xfff67613), // c.andi a2,-1 = andi a2,a2,-1
    (0x8a81, 0x0006f693), // c.andi a3,0 = andi a3,a3,0
    (0x8d0d, 0x40b50533), // c.sub a0,a1 = sub a0,a0,a1
    (0x8c25, 0x00944433), // c.xor s0,s1 = xor s0,s0,s1
    (0x8f5d, 0x00f76733), // c.or a4,a5 = or a4,a4,a5
    (0x8e75, 0x00d67633), // c.and a2,a3 = and a2,a2,a3
    (0x9d1d, 0x40f5053b), // c.subw a0,a5 = subw a0,a0,a5
    (0x9ca9, 0x00a484bb), // c.addw s1,a0 = addw s1,s1,a0
    (0xb001, 0x801ff06f), // c.j .-2048 = jal zero,.-2048
    (0xaffd, 0x7fe0006f), // c.j .+2046 = jal zero,.+2046
    (0xd101, 0xf00500e3), // c.beqz a0,.-256 = beq a0,zero,.-256
    (0xecfd, 0x0e049f63), // c.bnez s1,.+254 = bne s1,zero,.+254
    (0x157e, 0x03f51513), // c.slli a0,63 = slli a0,a0,63
    (0x0f86, 0x001f9f93), // c.slli t6,1 = slli t6,t6,1
    (0x357e, 0x1f813507), // c.fldsp fa0,504(sp) = fld fa0,504(sp)
    (0x50fe, 0x0fc12083), // c.lwsp ra,252(sp) = lw ra,252(sp)
    (0x72fe, 0x1f813283), // c.ldsp t0,504(sp) = ld t0,504(sp)
    (0x8082, 0x00008067), // c.jr ra = jalr zero,0(ra)
    (0x852e, 0x00b00533), // c.mv a0,a1 = add a0,zero,a1
    (0x9002, 0x00100073), // c.ebreak = ebreak
    (0x9282, 0x000280e7), // c.jalr t0 = jalr ra,0(t0)
    (0x952e, 0x00b50533), // c.add a0,a1 = add a0,a0,a1
    (0xbfbe, 0x1ef13c27), // c.fsdsp fa5,504(sp) = fsd fa5,504(sp)
    (0xdfaa, 0x0ea12e23), // c.swsp a0,252(sp) = sw a0,252(sp)
    (0xffee, 0x1fb13c23), // c.sdsp s11,504(sp) = sd s11,504(sp)
    (0x802e, 0x00b00033), // c.mv zero,a1 (a HINT) = add zero,zero,a1
    (0x0002, 0x00001013), // c.slli64 zero (a HINT) = slli zero,zero,0
];

#[test]
fn every_compressed_form_expands_to_its_32_bit_equivalent() {
    for &(half, word) in EXPANSIONS {
        assert_eq!(
            decode16(half),
            decode32(word),
            "{half:#06x} should expand to {word:#010x} ({})",
            decode32(word)
        );
    }
}

#[test]
fn reserved_compressed_encodings_are_illegal() {
    let illegal: &[(u16, &str)] = &[
        (0x0000, "all zeros (c.addi4spn with imm 0)"),
        (0x0010, "c.addi4spn a2,sp,0"),
        (0x8000, "quadrant 0 funct3 4"),
        (0x2001, "c.addiw with rd 0"),
        (0x6101, "c.addi16sp with imm 0"),
        (0x6001, "c.lui zero,0"),
        (0x6501, "c.lui a0,0"),
        (0x9c41, "quadrant 1 funct6 100111 with funct2 10"),
        (0x9c61, "quadrant 1 funct6 100111 with funct2 11"),
        (0x4002, "c.lwsp with rd 0"),
        (0x6002, "c.ldsp with rd 0"),
        (0x8002, "c.jr with rs1 0"),
    ];
    for &(half, what) in illegal {
        assert_eq!(decode16(half), Insn::Illegal, "{half:#06x}: {what}");
    }
}
