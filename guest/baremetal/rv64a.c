/* rv64a: A extension (Unpriv. spec ch. 8): LR/SC and every AMO, .w and .d.
 * AMOs return the old memory value; .w results are sign-extended (8.4). */
#include "lib.h"

#define AMO(op, p, v) ({ uint64_t __r; \
    __asm__ volatile(op " %0, %2, (%1)" : "=r"(__r) : "r"(p), "r"((uint64_t)(v)) : "memory"); __r; })

/* Two words far apart, so they can never share a reservation set. */
static volatile uint64_t cell[2] __attribute__((aligned(64)));
static volatile uint64_t far_cell[1] __attribute__((aligned(4096)));

/* Run AMO .d on cell[0] = init with operand v; check old value and new memory. */
static void amo_d(unsigned code, const char *name, uint64_t (*fn)(volatile uint64_t *, uint64_t),
                  uint64_t init, uint64_t v, uint64_t want_mem)
{
    cell[0] = init;
    uint64_t old = fn(&cell[0], v);
    check(code, name, old, init);
    check(code, name, cell[0], want_mem);
}

/* .w on the low word of cell[1]; the high word holds a sentinel that must survive. */
static void amo_w(unsigned code, const char *name, uint64_t (*fn)(volatile uint64_t *, uint64_t),
                  uint32_t init, uint64_t v, uint32_t want_mem)
{
    cell[1] = 0x5a5a5a5a00000000ULL | init;
    uint64_t old = fn(&cell[1], v);
    check(code, name, old, (uint64_t)(int64_t)(int32_t)init);
    check(code, name, cell[1], 0x5a5a5a5a00000000ULL | want_mem);
}

#define OPS(X) X(amoswap) X(amoadd) X(amoxor) X(amoand) X(amoor) X(amomin) X(amomax) X(amominu) X(amomaxu)
#define FN2(op) static uint64_t f_##op##_d(volatile uint64_t *p, uint64_t v) { return AMO(#op ".d", p, v); } \
                static uint64_t f_##op##_w(volatile uint64_t *p, uint64_t v) { return AMO(#op ".w", p, v); }
OPS(FN2)

static void amos(void)
{
    puts("rv64a: amo*.d\n");
    amo_d(1, "amoswap.d", f_amoswap_d, 0x1111, 0x2222, 0x2222);
    amo_d(2, "amoadd.d", f_amoadd_d, 0xffffffffffffffff, 2, 1);
    amo_d(3, "amoxor.d", f_amoxor_d, 0xff00, 0x0ff0, 0xf0f0);
    amo_d(4, "amoand.d", f_amoand_d, 0xff00, 0x0ff0, 0x0f00);
    amo_d(5, "amoor.d", f_amoor_d, 0xff00, 0x0ff0, 0xfff0);
    amo_d(6, "amomin.d", f_amomin_d, 5, -3, -3);
    amo_d(7, "amomax.d", f_amomax_d, -5, 3, 3);
    amo_d(8, "amominu.d", f_amominu_d, 5, -3, 5);
    amo_d(9, "amomaxu.d", f_amomaxu_d, 5, -3, -3);
    puts("rv64a: amo*.w\n");
    amo_w(11, "amoswap.w", f_amoswap_w, 0x80000001, 0x12345678, 0x12345678);
    amo_w(12, "amoadd.w", f_amoadd_w, 0xffffffff, 2, 1); /* no carry into high word */
    amo_w(13, "amoxor.w", f_amoxor_w, 0x8000ff00, 0x0ff0, 0x8000f0f0);
    amo_w(14, "amoand.w", f_amoand_w, 0x8000ff00, 0x0ff0, 0x0f00);
    amo_w(15, "amoor.w", f_amoor_w, 0x8000ff00, 0x0ff0, 0x8000fff0);
    amo_w(16, "amomin.w", f_amomin_w, 5, 0xfffffffd, 0xfffffffd);     /* -3 < 5 */
    amo_w(17, "amomax.w", f_amomax_w, 0xfffffffb, 0x100000003, 3);    /* uses low 32 bits */
    amo_w(18, "amominu.w", f_amominu_w, 5, 0xfffffffd, 5);
    amo_w(19, "amomaxu.w", f_amomaxu_w, 5, 0xfffffffd, 0xfffffffd);
    amo_w(20, "amomin.w", f_amomin_w, 0x80000000, 0x7fffffff, 0x80000000);
}

static uint64_t lr_d(volatile uint64_t *p)
{
    uint64_t r;
    __asm__ volatile("lr.d %0, (%1)" : "=r"(r) : "r"(p) : "memory");
    return r;
}
static uint64_t lr_w(volatile uint64_t *p)
{
    uint64_t r;
    __asm__ volatile("lr.w %0, (%1)" : "=r"(r) : "r"(p) : "memory");
    return r;
}
static uint64_t sc_d(volatile uint64_t *p, uint64_t v)
{
    uint64_t r;
    __asm__ volatile("sc.d %0, %2, (%1)" : "=&r"(r) : "r"(p), "r"(v) : "memory");
    return r;
}
static uint64_t sc_w(volatile uint64_t *p, uint64_t v)
{
    uint64_t r;
    __asm__ volatile("sc.w %0, %2, (%1)" : "=&r"(r) : "r"(p), "r"(v) : "memory");
    return r;
}

static void lrsc(void)
{
    puts("rv64a: lr/sc\n");
    cell[0] = 0x1234;
    CHECK(30, lr_d(&cell[0]), 0x1234);
    CHECK(31, sc_d(&cell[0], 0x5678), 0);          /* success writes 0 */
    CHECK(32, cell[0], 0x5678);
    /* SC clears the reservation, so a second SC fails and does not write (8.2). */
    CHECK(33, sc_d(&cell[0], 0x9999) != 0, 1);
    CHECK(34, cell[0], 0x5678);
    /* SC to an address outside the reservation set fails. */
    far_cell[0] = 7;
    lr_d(&cell[0]);
    CHECK(35, sc_d(&far_cell[0], 8) != 0, 1);
    CHECK(36, far_cell[0], 7);
    CHECK(37, sc_d(&cell[0], 1) != 0, 1);          /* the failed SC cleared it too */
    /* LR.W sign-extends; SC.W writes only the low word. */
    cell[1] = 0x5a5a5a5a87654321ULL;
    CHECK(38, lr_w(&cell[1]), 0xffffffff87654321);
    CHECK(39, sc_w(&cell[1], 0xaaaaaaaa00000042), 0);
    CHECK(40, cell[1], 0x5a5a5a5a00000042);
    CHECK(41, sc_w(&cell[1], 0x43) != 0, 1);
    CHECK(42, cell[1], 0x5a5a5a5a00000042);
    /* A typical LR/SC retry loop: atomic increment. */
    cell[0] = 41;
    uint64_t tries = 0, v;
    do {
        v = lr_d(&cell[0]);
        tries++;
    } while (sc_d(&cell[0], v + 1) != 0 && tries < 100);
    CHECK(43, cell[0], 42);
}

int main(void)
{
    puts("rv64a: checks lr/sc success and failure, all AMOs .w/.d with return values\n");
    amos();
    lrsc();
    return 0;
}
