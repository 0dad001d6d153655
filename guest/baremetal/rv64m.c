/* rv64m: M extension multiply/divide (Unpriv. spec ch. 7 "M" Standard Extension),
 * including the defined results for division by zero and overflow (Table 7.1). */
#include "lib.h"

#define RR(op, a, b) ({ uint64_t __r; \
    __asm__ volatile(op " %0, %1, %2" : "=r"(__r) : "r"((uint64_t)(a)), "r"((uint64_t)(b))); __r; })

#define MIN64 0x8000000000000000ULL
#define ALL1  0xffffffffffffffffULL

static void mul(void)
{
    puts("rv64m: mul/mulh/mulhsu/mulhu/mulw\n");
    CHECK(1, RR("mul", 6, -7), -42);
    CHECK(2, RR("mul", 0x100000001, 0x100000001), 0x200000001);
    CHECK(3, RR("mulh", -1, -1), 0);
    CHECK(4, RR("mulh", MIN64, MIN64), 0x4000000000000000);
    CHECK(5, RR("mulh", -2, 3), ALL1);
    CHECK(6, RR("mulhu", ALL1, ALL1), 0xfffffffffffffffe);
    CHECK(7, RR("mulhu", 1ULL << 32, 1ULL << 32), 1);
    CHECK(8, RR("mulhsu", -1, ALL1), ALL1);   /* rs1 signed, rs2 unsigned */
    CHECK(9, RR("mulhsu", 2, MIN64), 1);
    CHECK(10, RR("mulhsu", MIN64, 2), ALL1);
    CHECK(11, RR("mulhsu", 0x0123456789abcdef, 0xfedcba9876543210), 0x0121fa00ad77d742);
    CHECK(15, RR("mulhsu", -0x0123456789abcdef, 0xfedcba9876543210), 0xfede05ff528828bd);
    CHECK(16, RR("mulh", -0x0123456789abcdef, -0x76543210fedcba98), 0x86a1c97652e6a8);
    CHECK(12, RR("mulw", 0x7fffffff, 2), 0xfffffffffffffffe); /* sign-extended */
    CHECK(13, RR("mulw", 0x100000001, 3), 3);
    CHECK(14, RR("mulw", 0x10000, 0x8000), 0xffffffff80000000);
}

static void div(void)
{
    puts("rv64m: div/divu/rem/remu\n");
    CHECK(20, RR("div", -7, 2), -3);        /* rounds toward zero */
    CHECK(21, RR("rem", -7, 2), -1);        /* sign of the dividend */
    CHECK(22, RR("div", 7, -2), -3);
    CHECK(23, RR("rem", 7, -2), 1);
    CHECK(24, RR("divu", -7, 2), 0x7ffffffffffffffc);
    CHECK(25, RR("remu", -7, 2), 1);
    /* Division by zero: quotient all ones, remainder = dividend. */
    CHECK(26, RR("div", 42, 0), ALL1);
    CHECK(27, RR("divu", 42, 0), ALL1);
    CHECK(28, RR("rem", -42, 0), -42);
    CHECK(29, RR("remu", 42, 0), 42);
    /* Signed overflow: -2^63 / -1 = -2^63, remainder 0. */
    CHECK(30, RR("div", MIN64, -1), MIN64);
    CHECK(31, RR("rem", MIN64, -1), 0);
}

static void div_w(void)
{
    puts("rv64m: divw/divuw/remw/remuw\n");
    /* W forms use the low 32 bits and sign-extend the 32-bit result. */
    CHECK(40, RR("divw", 0x1fffffff9, 2), -3);          /* low word = -7 */
    CHECK(41, RR("remw", 0x1fffffff9, 2), -1);
    CHECK(42, RR("divuw", 0xfffffff9, 2), 0x7ffffffc);
    CHECK(43, RR("remuw", 0xfffffff9, 2), 1);
    CHECK(44, RR("divuw", 0xfffffffe, 1), 0xfffffffffffffffe); /* result bit 31 set */
    CHECK(45, RR("divw", 42, 0x100000000), ALL1);       /* divisor low word = 0 */
    CHECK(46, RR("divuw", 42, 0), ALL1);                /* 0xffffffff sign-extended */
    CHECK(47, RR("remw", 0x5fffffff0, 0), 0xfffffffffffffff0);
    CHECK(48, RR("remuw", 0x580000000, 0), 0xffffffff80000000);
    CHECK(49, RR("divw", 0x80000000, -1), 0xffffffff80000000);
    CHECK(50, RR("remw", 0x80000000, -1), 0);
}

int main(void)
{
    puts("rv64m: checks multiply/divide incl. W forms, divide by zero, overflow\n");
    mul();
    div();
    div_w();
    return 0;
}
