/* rvc: C extension (Unpriv. spec ch. 16 "C" Standard Extension). rvc_run is written
 * with explicit c.* mnemonics, so every one of them is a 16-bit encoding; each result
 * is stored to out[] and compared with what the 32-bit equivalent computes. */
#include "lib.h"

void rvc_run(uint64_t *out, uint64_t *mem);
__asm__(
    ".text\n .balign 2\n .globl rvc_run\n rvc_run:\n"
    ".option push\n .option rvc\n"
    "c.mv t1, ra\n"
    "c.li a2, -32\n c.sd a2, 0(a0)\n"
    "c.li a3, 31\n c.addi a3, -1\n c.sd a3, 8(a0)\n"
    "c.lui a4, 0xfffff\n c.sd a4, 16(a0)\n"
    "c.li a5, 1\n c.slli a5, 63\n c.sd a5, 24(a0)\n"
    "c.srai a5, 3\n c.sd a5, 32(a0)\n"
    "c.srli a5, 60\n c.sd a5, 40(a0)\n"
    "c.andi a5, -2\n c.sd a5, 48(a0)\n"
    "c.mv a2, a5\n c.add a2, a5\n c.sd a2, 56(a0)\n"
    "c.sub a2, a3\n c.sd a2, 64(a0)\n"
    "c.xor a2, a4\n c.sd a2, 72(a0)\n"
    "c.or a2, a5\n c.sd a2, 80(a0)\n"
    "c.and a2, a3\n c.sd a2, 88(a0)\n"
    "c.ld a3, 0(a1)\n c.addiw a3, 1\n c.sd a3, 96(a0)\n"
    "c.addw a4, a5\n c.sd a4, 104(a0)\n"
    "c.ld a2, 8(a1)\n c.li a3, 1\n c.subw a2, a3\n c.sd a2, 112(a0)\n"
    "c.lw a2, 16(a1)\n c.sd a2, 120(a0)\n"
    "c.sw a3, 20(a1)\n"
    /* Stack-pointer based forms. */
    "c.addi16sp sp, -32\n"
    "c.sdsp a2, 8(sp)\n c.ldsp a3, 8(sp)\n c.sd a3, 128(a0)\n"
    "c.swsp a5, 8(sp)\n c.ldsp a4, 8(sp)\n c.sd a4, 136(a0)\n"
    "c.lwsp a4, 8(sp)\n c.sd a4, 184(a0)\n"
    "c.addi4spn a5, sp, 16\n sub a5, a5, sp\n c.sd a5, 144(a0)\n"
    "c.addi16sp sp, 32\n"
    /* Branches and jumps. */
    "c.li a2, 0\n c.beqz a2, 1f\n c.li a2, 5\n"
    "1: c.bnez a2, 2f\n c.addi a2, 3\n"
    "2: c.j 3f\n c.li a2, 9\n"
    "3: c.sd a2, 152(a0)\n"
    "lla a5, 4f\n c.jalr a5\n"       /* ra = address of 6: (pc + 2) */
    "6: c.j 7f\n"
    "4: sd ra, 160(a0)\n lla a4, 6b\n c.sd a4, 168(a0)\n c.jr ra\n"
    "7: c.nop\n"
    /* FP loads/stores. */
    "c.fld fa0, 24(a1)\n c.fsd fa0, 32(a1)\n"
    "c.addi16sp sp, -16\n c.fsdsp fa0, 0(sp)\n c.fldsp fa1, 0(sp)\n c.addi16sp sp, 16\n"
    "fmv.x.d a2, fa1\n c.sd a2, 176(a0)\n"
    "c.mv ra, t1\n c.jr ra\n"
    ".option pop\n");

static const uint64_t want[] = {
    -32ULL,                 /* 0  c.li (sign-extended 6-bit imm) */
    30,                     /* 1  c.addi */
    0xfffffffffffff000ULL,  /* 2  c.lui (sign-extended nzimm[17:12]) */
    0x8000000000000000ULL,  /* 3  c.slli 63 */
    0xf000000000000000ULL,  /* 4  c.srai */
    0xf,                    /* 5  c.srli */
    0xe,                    /* 6  c.andi */
    0x1c,                   /* 7  c.mv + c.add */
    -2ULL,                  /* 8  c.sub */
    0xffe,                  /* 9  c.xor */
    0xffe,                  /* 10 c.or */
    0x1e,                   /* 11 c.and */
    0xffffffff80000000ULL,  /* 12 c.ld + c.addiw (32-bit wrap, sign-extended) */
    0xfffffffffffff00eULL,  /* 13 c.addw */
    0xffffffffffffffffULL,  /* 14 c.subw */
    0xffffffff80000000ULL,  /* 15 c.lw sign-extends */
    0xffffffff80000000ULL,  /* 16 c.sdsp/c.ldsp */
    0xffffffff0000000eULL,  /* 17 c.swsp writes the low word only */
    16,                     /* 18 c.addi4spn */
    3,                      /* 19 c.beqz/c.bnez/c.j */
    0, 0,                   /* 20, 21: c.jalr link (compared with each other) */
    0x400921fb54442d18ULL,  /* 22 c.fld/c.fsd/c.fsdsp/c.fldsp */
    0x000000000000000eULL,  /* 23 c.lwsp sign-extends the low word 0xe */
};

int main(void)
{
    static uint64_t out[24], mem[6];
    puts("rvc: checks compressed ALU, loads/stores (incl. sp-based and FP), branches, c.jalr link\n");
    for (unsigned i = 0; i < 24; i++)
        out[i] = 0xbad;
    mem[0] = 0x7fffffff;
    mem[1] = 0x100000000ULL;
    mem[2] = 0x80000000ULL;
    mem[3] = 0x400921fb54442d18ULL; /* pi */
    mem[4] = 0;
    rvc_run(out, mem);
    for (unsigned i = 0; i < 24; i++) {
        if (i == 20 || i == 21)
            continue;
        check(1 + i, "rvc out[i]", out[i], want[i]);
    }
    CHECK(30, out[20], out[21]);              /* c.jalr writes pc + 2 */
    CHECK(33, out[20] != 0xbad, 1);
    CHECK(31, mem[2], 0x0000000180000000ULL); /* c.sw */
    CHECK(32, mem[4], mem[3]);                /* c.fsd */
    return 0;
}
