/* fp: F and D extensions (Unpriv. spec ch. 11 "F", ch. 12 "D") and mstatus.FS
 * (Priv. spec 3.1.6.6). Values are passed as bit patterns through fmv so the
 * compiler cannot fold any operation. */
#include "lib.h"

#define FFLAG_NX 0x01
#define FFLAG_DZ 0x08
#define FFLAG_NV 0x10
#define MSTATUS_FS (3ULL << 13)
#define MSTATUS_SD (1ULL << 63)

#define S_ONE   0x3f800000u
#define S_THREE 0x40400000u
#define S_NINF  0xff800000u
#define S_QNAN  0x7fc00000u /* canonical NaN (11.3) */
#define S_SNAN  0x7f800001u
#define D_ONE   0x3ff0000000000000ULL
#define D_THREE 0x4008000000000000ULL
#define D_QNAN  0x7ff8000000000000ULL

/* Binary single op: result bits (fmv.x.w sign-extends; mask to 32). */
#define FS2(op, a, b) ({ uint64_t __r; __asm__ volatile( \
    "fmv.w.x ft0, %1\n fmv.w.x ft1, %2\n " op " ft2, ft0, ft1\n fmv.x.w %0, ft2" \
    : "=r"(__r) : "r"((uint64_t)(a)), "r"((uint64_t)(b)) : "ft0", "ft1", "ft2"); __r & 0xffffffffu; })
#define FD2(op, a, b) ({ uint64_t __r; __asm__ volatile( \
    "fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n " op " ft2, ft0, ft1\n fmv.x.d %0, ft2" \
    : "=r"(__r) : "r"((uint64_t)(a)), "r"((uint64_t)(b)) : "ft0", "ft1", "ft2"); __r; })
/* Op with an integer result (compare, classify, convert-to-int). */
#define FS_TO_X(op, a) ({ uint64_t __r; __asm__ volatile( \
    "fmv.w.x ft0, %1\n " op : "=r"(__r) : "r"((uint64_t)(a)) : "ft0"); __r; })
#define FD_TO_X(op, a) ({ uint64_t __r; __asm__ volatile( \
    "fmv.d.x ft0, %1\n " op : "=r"(__r) : "r"((uint64_t)(a)) : "ft0"); __r; })

static void arith(void)
{
    uint64_t r;
    puts("fp: arithmetic, fma, sign injection, compare, classify\n");
    CHECK(1, FS2("fadd.s", S_ONE, S_THREE), 0x40800000);          /* 1 + 3 = 4 */
    CHECK(2, FD2("fmul.d", D_THREE, D_THREE), 0x4022000000000000); /* 9 */
    CHECK(3, FD2("fsub.d", D_ONE, D_THREE), 0xc000000000000000);   /* -2 */
    __asm__ volatile("fmv.d.x ft0, %1\n fsqrt.d ft1, ft0\n fmv.x.d %0, ft1"
                     : "=r"(r) : "r"(0x4022000000000000ULL) : "ft0", "ft1");
    CHECK(4, r, D_THREE);                                           /* sqrt 9 = 3 */
    __asm__ volatile("fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n fmadd.d ft2, ft0, ft1, ft0\n fmv.x.d %0, ft2"
                     : "=r"(r) : "r"(D_THREE), "r"(D_ONE) : "ft0", "ft1", "ft2");
    CHECK(5, r, 0x4018000000000000ULL);                     /* 3*1 + 3 = 6 */
    __asm__ volatile("fmv.d.x ft0, %1\n fmv.d.x ft1, %2\n fnmsub.d ft2, ft0, ft1, ft1\n fmv.x.d %0, ft2"
                     : "=r"(r) : "r"(D_THREE), "r"(D_ONE) : "ft0", "ft1", "ft2");
    CHECK(19, r, 0xc000000000000000ULL);                    /* -(3*1) + 1 = -2 */
    CHECK(6, FS2("fsgnjn.s", S_ONE, S_ONE), 0xbf800000);
    CHECK(7, FS2("fsgnjx.s", 0xbf800000, 0xbf800000), S_ONE);
    CHECK(8, FD2("fsgnj.d", D_ONE, 0x8000000000000000ULL), 0xbff0000000000000ULL);
    CHECK(9, FS_TO_X("fclass.s %0, ft0", S_NINF), 1 << 0);
    CHECK(10, FS_TO_X("fclass.s %0, ft0", 0), 1 << 4);
    CHECK(11, FS_TO_X("fclass.s %0, ft0", S_SNAN), 1 << 8);
    CHECK(12, FD_TO_X("fclass.d %0, ft0", D_QNAN), 1 << 9);
    CHECK(13, FD_TO_X("fcvt.d.l ft1, %1\n fmv.x.d %0, ft1", -3), 0xc008000000000000ULL);
    CHECK(14, FS_TO_X("fcvt.s.wu ft1, %1\n fmv.x.w %0, ft1", 0xffffffff), 0x4f800000); /* 2^32 */
    /* FEQ is quiet, FLT signals on a qNaN operand (11.8). */
    csr_write(fflags, 0);
    CHECK(15, FS_TO_X("feq.s %0, ft0, ft0", S_QNAN), 0);
    CHECK(16, csr_read(fflags), 0);
    CHECK(17, FS_TO_X("flt.s %0, ft0, ft0", S_QNAN), 0);
    CHECK(18, csr_read(fflags), FFLAG_NV);
}

static void conversions(void)
{
    puts("fp: fcvt saturation and static rounding modes\n");
    /* Out-of-range and NaN inputs saturate (Table 11.4); 32-bit results sign-extend. */
    CHECK(20, FS_TO_X("fcvt.w.s %0, ft0, rtz", S_QNAN), 0x7fffffff);
    CHECK(21, FS_TO_X("fcvt.w.s %0, ft0, rtz", S_NINF), 0xffffffff80000000ULL);
    CHECK(22, FS_TO_X("fcvt.w.s %0, ft0, rtz", 0x7f800000), 0x7fffffff);  /* +inf */
    CHECK(23, FS_TO_X("fcvt.wu.s %0, ft0, rtz", 0xbf800000), 0);          /* -1.0 */
    CHECK(24, FS_TO_X("fcvt.wu.s %0, ft0, rtz", S_QNAN), 0xffffffffffffffffULL);
    CHECK(25, FD_TO_X("fcvt.l.d %0, ft0, rtz", D_QNAN), 0x7fffffffffffffffULL);
    CHECK(26, FD_TO_X("fcvt.l.d %0, ft0, rtz", 0xc3e0000000000001ULL), 0x8000000000000000ULL);
    CHECK(27, FD_TO_X("fcvt.lu.d %0, ft0, rtz", 0x43f0000000000000ULL), ~0ULL); /* 2^64 */
    CHECK(28, FS_TO_X("fcvt.w.s %0, ft0, rtz", 0x501502f9), 0x7fffffff);  /* 1e10 */
    /* 2.5 under static rounding modes. */
    CHECK(29, FD_TO_X("fcvt.w.d %0, ft0, rne", 0x4004000000000000ULL), 2);
    CHECK(30, FD_TO_X("fcvt.w.d %0, ft0, rmm", 0x4004000000000000ULL), 3);
    CHECK(31, FD_TO_X("fcvt.w.d %0, ft0, rtz", 0xc004000000000000ULL), -2);
    CHECK(32, FD_TO_X("fcvt.w.d %0, ft0, rdn", 0xc004000000000000ULL), -3);
    CHECK(33, FD_TO_X("fcvt.w.d %0, ft0, rup", 0x4004000000000000ULL), 3);
}

static void flags_and_frm(void)
{
    puts("fp: fflags, dynamic rounding via frm\n");
    csr_write(fflags, 0);
    CHECK(40, FS2("fdiv.s", S_ONE, S_THREE), 0x3eaaaaab);   /* RNE */
    CHECK(41, csr_read(fflags), FFLAG_NX);
    csr_write(fflags, 0);
    CHECK(42, FS2("fdiv.s", S_ONE, 0), 0x7f800000);
    CHECK(43, csr_read(fflags), FFLAG_DZ);
    csr_write(fflags, 0);
    FS2("fadd.s", S_ONE, S_THREE);
    CHECK(44, csr_read(fflags), 0);                            /* exact: no flags */
    /* frm: 2 = RDN, 3 = RUP (Table 11.1); fcsr = frm << 5 | fflags. */
    csr_write(frm, 2);
    uint64_t down = FD2("fdiv.d", D_ONE, D_THREE);
    csr_write(frm, 3);
    uint64_t up = FD2("fdiv.d", D_ONE, D_THREE);
    CHECK(45, csr_read(fcsr), (3 << 5) | FFLAG_NX);
    csr_write(frm, 0);
    CHECK(46, down, 0x3fd5555555555555ULL);
    CHECK(47, up, 0x3fd5555555555556ULL);
}

static void nans_and_zeros(void)
{
    uint64_t r;
    puts("fp: fmin/fmax signed zeros, canonical NaNs, NaN boxing\n");
    CHECK(50, FS2("fmin.s", 0x80000000, 0), 0x80000000);  /* -0 < +0 for fmin (11.7) */
    CHECK(51, FS2("fmin.s", 0, 0x80000000), 0x80000000);
    CHECK(52, FS2("fmax.s", 0x80000000, 0), 0);
    CHECK(53, FD2("fmin.d", 0, 0x8000000000000000ULL), 0x8000000000000000ULL);
    CHECK(54, FS2("fmin.s", S_QNAN, S_THREE), S_THREE);     /* one NaN: the other operand */
    csr_write(fflags, 0);
    CHECK(55, FS2("fmax.s", S_SNAN, S_SNAN), S_QNAN);        /* both NaN: canonical NaN */
    CHECK(56, csr_read(fflags), FFLAG_NV);
    /* Results that are NaN are the canonical NaN, never a propagated payload (11.3). */
    CHECK(57, FS2("fdiv.s", 0, 0), S_QNAN);
    CHECK(58, FS2("fadd.s", 0x7fc12345, S_ONE), S_QNAN);
    CHECK(59, FD2("fsub.d", 0xfff0000000000000ULL, 0xfff0000000000000ULL), D_QNAN);
    __asm__ volatile("fmv.d.x ft0, %1\n fsqrt.d ft1, ft0\n fmv.x.d %0, ft1"
                     : "=r"(r) : "r"(0xbff0000000000000ULL) : "ft0", "ft1");
    CHECK(60, r, D_QNAN);
    CHECK(61, FD_TO_X("fcvt.s.d ft1, ft0\n fmv.x.w %0, ft1", 0x7ff0000000000bad), S_QNAN);
    /* NaN boxing (11.2): flw / fmv.w.x set the upper 32 bits to ones. */
    static volatile uint64_t slot = 0x3ff0000012345678ULL;
    __asm__ volatile("flw ft0, 0(%1)\n fmv.x.d %0, ft0" : "=r"(r) : "r"(&slot) : "ft0", "memory");
    CHECK(62, r, 0xffffffff12345678ULL);
    /* A double (not a boxed single) used by a single op reads as the canonical NaN... */
    __asm__ volatile("fld ft0, 0(%1)\n fadd.s ft1, ft0, ft0\n fmv.x.w %0, ft1"
                     : "=r"(r) : "r"(&slot) : "ft0", "ft1", "memory");
    CHECK(63, r, S_QNAN);
    /* ...but fmv.x.w is a transfer and moves the low 32 bits unchanged. */
    __asm__ volatile("fld ft0, 0(%1)\n fmv.x.w %0, ft0" : "=r"(r) : "r"(&slot) : "ft0", "memory");
    CHECK(64, r, 0x12345678);
    CHECK(65, FD_TO_X("fsgnj.s ft1, ft0, ft0\n fmv.x.w %0, ft1", D_ONE), S_QNAN);
}

static volatile uint64_t fp_trap_cause;
static int fp_trap_hook(struct trap_frame *f)
{
    fp_trap_cause = f->cause;
    skip_insn(f);
    return 1;
}

static void fs_state(void)
{
    puts("fp: mstatus.FS Clean -> Dirty, FS=Off traps\n");
    csr_clear(mstatus, MSTATUS_FS);
    csr_set(mstatus, 2ULL << 13);                    /* Clean */
    CHECK(70, csr_read(mstatus) & (MSTATUS_FS | MSTATUS_SD), 2ULL << 13);
    __asm__ volatile("fmv.w.x ft0, zero" ::: "ft0");
    CHECK(71, (csr_read(mstatus) & MSTATUS_FS) >> 13, 3); /* Dirty */
    CHECK(72, csr_read(mstatus) >> 63, 1);                /* SD summarizes FS */
    /* FS = Off: FP instructions and fcsr accesses are illegal. */
    m_trap_hook = fp_trap_hook;
    csr_clear(mstatus, MSTATUS_FS);
    fp_trap_cause = 0;
    __asm__ volatile("fadd.d ft0, ft0, ft0" ::: "ft0");
    CHECK(73, fp_trap_cause, 2);
    fp_trap_cause = 0;
    __asm__ volatile("csrr t0, fcsr" ::: "t0");
    CHECK(74, fp_trap_cause, 2);
    csr_set(mstatus, 1ULL << 13);
    m_trap_hook = 0;
}

int main(void)
{
    puts("fp: checks F/D arithmetic, fcvt saturation, fflags/frm, fmin zeros, NaN boxing, FS\n");
    arith();
    conversions();
    flags_and_frm();
    nans_and_zeros();
    fs_state();
    return 0;
}
