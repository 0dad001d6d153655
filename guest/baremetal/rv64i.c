/* rv64i: RV64I base integer instructions (Unpriv. spec ch. 2 and 5).
 * Operands go through inline asm so the compiler cannot fold them. */
#include "lib.h"

#define RR(op, a, b) ({ uint64_t __r; \
    __asm__ volatile(op " %0, %1, %2" : "=r"(__r) : "r"((uint64_t)(a)), "r"((uint64_t)(b))); __r; })
#define RI(op, a, imm) ({ uint64_t __r; \
    __asm__ volatile(op " %0, %1, %2" : "=r"(__r) : "r"((uint64_t)(a)), "i"(imm)); __r; })
/* Branch taken? (1/0) */
#define BR(op, a, b) ({ uint64_t __r; \
    __asm__ volatile("li %0, 1\n\t" op " %1, %2, 1f\n\tli %0, 0\n1:" \
                     : "=&r"(__r) : "r"((uint64_t)(a)), "r"((uint64_t)(b))); __r; })
#define LD(op, p) ({ uint64_t __r; \
    __asm__ volatile(op " %0, 0(%1)" : "=r"(__r) : "r"(p) : "memory"); __r; })

static volatile uint64_t mem[2];

static void arith(void)
{
    puts("rv64i: arithmetic and logic\n");
    CHECK(1, RR("add", 5, -7), -2);
    CHECK(2, RR("sub", 0, 1), ~0ULL);
    CHECK(3, RR("add", 0x7fffffffffffffff, 1), 0x8000000000000000);
    CHECK(4, RI("addi", 10, -2048), -2038);
    CHECK(5, RR("slt", -1, 1), 1);
    CHECK(6, RR("sltu", -1, 1), 0);
    CHECK(7, RI("slti", -5, -4), 1);
    CHECK(8, RI("sltiu", 5, -1), 1); /* imm sign-extended, then unsigned compare */
    CHECK(9, RR("xor", 0xff00ff00, 0x0ff00ff0), 0xf0f0f0f0);
    CHECK(10, RR("or", 0xf0, 0x0f), 0xff);
    CHECK(11, RR("and", 0xf0f0, 0xff00), 0xf000);
    CHECK(12, RI("xori", 0x1234, -1), ~0x1234ULL);
    CHECK(13, RI("andi", 0xffffffffffffffff, 0x7ff), 0x7ff);
    CHECK(14, RI("ori", 0, -2048), 0xfffffffffffff800);
    /* W forms: 32-bit result, sign-extended to 64 bits (Unpriv. 5.2). */
    CHECK(15, RR("addw", 0x7fffffff, 1), 0xffffffff80000000);
    CHECK(16, RR("subw", 0, 0x100000000), 0);
    CHECK(17, RI("addiw", 0xffffffff, 1), 0);
    CHECK(18, RI("addiw", 0x123456789, 0), 0x23456789);
    CHECK(19, RI("addiw", 0x80000000, 0), 0xffffffff80000000); /* sext.w */
}

static void shifts(void)
{
    puts("rv64i: shifts\n");
    CHECK(20, RR("sll", 1, 63), 0x8000000000000000);
    CHECK(21, RR("sll", 1, 64 + 3), 8);      /* only low 6 bits of rs2 */
    CHECK(22, RR("srl", 0x8000000000000000, 63), 1);
    CHECK(23, RR("sra", 0x8000000000000000, 63), ~0ULL);
    CHECK(24, RI("slli", 0x1, 40), 0x10000000000);
    CHECK(25, RI("srli", -1, 60), 0xf);
    CHECK(26, RI("srai", 0xf000000000000000, 60), ~0ULL);
    CHECK(27, RR("sllw", 1, 31), 0xffffffff80000000);
    CHECK(28, RR("sllw", 1, 32 + 1), 2);     /* only low 5 bits of rs2 */
    CHECK(29, RR("srlw", 0xffffffff80000000, 31), 1);
    CHECK(30, RR("srlw", 0x80000000, 0), 0xffffffff80000000);
    CHECK(31, RR("sraw", 0x80000000, 4), 0xfffffffff8000000);
    CHECK(32, RI("slliw", 0x12345678, 4), 0x23456780);
    CHECK(33, RI("srliw", 0xffffffffffffffff, 4), 0x0fffffff);
    CHECK(34, RI("sraiw", 0x00000000f0000000, 28), ~0ULL);
    CHECK(35, RI("srliw", 0x1234567800000000, 0), 0);
}

static void branches(void)
{
    puts("rv64i: branches\n");
    CHECK(40, BR("beq", 3, 3), 1);
    CHECK(41, BR("beq", 3, 4), 0);
    CHECK(42, BR("bne", 3, 4), 1);
    CHECK(43, BR("blt", -1, 0), 1);
    CHECK(44, BR("blt", 0, -1), 0);
    CHECK(45, BR("bge", 0, -1), 1);
    CHECK(46, BR("bge", 5, 5), 1);
    CHECK(47, BR("bltu", 0, -1), 1);
    CHECK(48, BR("bltu", -1, 0), 0);
    CHECK(49, BR("bgeu", -1, 0), 1);
}

static void loads_stores(void)
{
    volatile uint8_t *b = (volatile uint8_t *)mem;
    puts("rv64i: loads and stores\n");
    mem[0] = 0x8182838485868788;
    mem[1] = 0;
    CHECK(50, LD("lb", b), 0xffffffffffffff88);
    CHECK(51, LD("lbu", b), 0x88);
    CHECK(52, LD("lh", b), 0xffffffffffff8788);
    CHECK(53, LD("lhu", b), 0x8788);
    CHECK(54, LD("lw", b), 0xffffffff85868788);
    CHECK(55, LD("lwu", b), 0x85868788);
    CHECK(56, LD("ld", b), 0x8182838485868788);
    CHECK(57, LD("lb", b + 7), 0xffffffffffffff81);
    CHECK(58, LD("lw", b + 4), 0xffffffff81828384);
    mem[0] = 0x0102030405060708;
    CHECK(59, LD("lw", b), 0x05060708);   /* positive: no sign bits */
    __asm__ volatile("sb %0, 8(%1)" :: "r"(0x1122334455667788ULL), "r"(b) : "memory");
    __asm__ volatile("sh %0, 10(%1)" :: "r"(0x1122334455667788ULL), "r"(b) : "memory");
    __asm__ volatile("sw %0, 12(%1)" :: "r"(0x1122334455667788ULL), "r"(b) : "memory");
    CHECK(60, mem[1], 0x5566778877880088);
    __asm__ volatile("sd %0, 8(%1)" :: "r"(0xdeadbeefcafef00dULL), "r"(b) : "memory");
    CHECK(61, mem[1], 0xdeadbeefcafef00d);
    /* Negative offsets. */
    CHECK(62, ({ uint64_t r; __asm__ volatile("ld %0, -8(%1)" : "=r"(r) : "r"(b + 16) : "memory"); r; }),
          0xdeadbeefcafef00d);
}

static void upper_and_jumps(void)
{
    uint64_t r, pc, link, target;
    puts("rv64i: lui/auipc/jal/jalr\n");
    __asm__ volatile("lui %0, 0x80000" : "=r"(r));
    CHECK(70, r, 0xffffffff80000000);     /* LUI result sign-extended */
    __asm__ volatile("lui %0, 0x7ffff" : "=r"(r));
    CHECK(71, r, 0x7ffff000);
    /* AUIPC adds to its own address; compare with a label's address. */
    __asm__ volatile(".option push\n.option norvc\n"
                     "1: auipc %0, 0\n lla %1, 1b\n.option pop" : "=r"(r), "=r"(pc));
    CHECK(72, r, pc);
    __asm__ volatile("1: auipc %0, 1\n lla %1, 1b" : "=r"(r), "=r"(pc));
    CHECK(73, r, pc + 0x1000);
    /* JAL writes pc+4 into rd. */
    __asm__ volatile(".option push\n.option norvc\n"
                     "jal %0, 1f\n 2: nop\n 1: lla %1, 2b\n.option pop"
                     : "=r"(link), "=r"(pc));
    CHECK(74, link, pc);
    /* JALR: target = (rs1 + imm) & ~1, rd = pc+4, rd may equal rs1. */
    __asm__ volatile(".option push\n.option norvc\n"
                     "lla %0, 1f\n addi %0, %0, -3\n jalr %0, 4(%0)\n"
                     "2: j 3f\n 1: lla %1, 2b\n 3:\n.option pop"
                     : "=&r"(link), "=&r"(target));
    CHECK(75, link, target);
    /* jalr with rd = x0 does not write. */
    __asm__ volatile(".option push\n.option norvc\n"
                     "li %0, 7\n lla t0, 1f\n jalr x0, 0(t0)\n li %0, 9\n 1:\n.option pop"
                     : "=&r"(r) :: "t0");
    CHECK(76, r, 7);
    /* x0 is hard-wired to zero. */
    __asm__ volatile("li x0, 5\n mv %0, x0" : "=r"(r));
    CHECK(77, r, 0);
}

int main(void)
{
    puts("rv64i: checks RV64I arithmetic, shifts, branches, loads/stores, lui/auipc/jal/jalr\n");
    arith();
    shifts();
    branches();
    loads_stores();
    upper_and_jumps();
    return 0;
}
