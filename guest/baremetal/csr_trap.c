/* csr_trap: M-mode CSRs and traps (Priv. spec ch. 3): synchronous exceptions and
 * their mcause/mepc/mtval, mret, scratch/tvec round trips, counters, and a CLINT
 * machine timer interrupt. */
#include "lib.h"

#define CAUSE_INTERRUPT (1ULL << 63)
#define IRQ_M_TIMER 7
#define MIP_MTIP (1ULL << 7)
#define MSTATUS_MIE (1ULL << 3)
#define MSTATUS_MPIE (1ULL << 7)

static volatile uint64_t n_traps, last_cause, last_tval, last_epc, last_status, timer_fired;

static int hook(struct trap_frame *f)
{
    n_traps++;
    last_cause = f->cause;
    last_tval = f->tval;
    last_epc = f->epc;
    last_status = f->status;
    if (f->cause == (CAUSE_INTERRUPT | IRQ_M_TIMER)) {
        MMIO64(CLINT_MTIMECMP) = ~0ULL; /* clears MTIP */
        timer_fired = 1;
        return 1;
    }
    if (f->cause & CAUSE_INTERRUPT)
        return 0;
    if (f->cause == 1) /* instruction access fault: return to the caller */
        f->epc = f->x[1];
    else
        skip_insn(f);
    return 1;
}

static void exceptions(void)
{
    uint64_t pc, a0;
    puts("csr_trap: ecall, illegal instruction, ebreak\n");
    n_traps = 0;
    __asm__ volatile(".option push\n.option norvc\n li a0, 1\n 1: ecall\n addi a0, a0, 1\n"
                     " lla %0, 1b\n mv %1, a0\n.option pop" : "=r"(pc), "=r"(a0) :: "a0");
    CHECK(1, last_cause, 11);          /* environment call from M-mode */
    CHECK(2, last_epc, pc);            /* mepc = the ecall itself */
    CHECK(3, a0, 2);                   /* resumed at mepc + 4, registers intact */
    CHECK(4, n_traps, 1);
    CHECK(5, (last_status >> 11) & 3, 3); /* MPP = M */

    __asm__ volatile(".option push\n.option norvc\n 1: .word 0x0000000b\n lla %0, 1b\n.option pop"
                     : "=r"(pc));
    CHECK(6, last_cause, 2);           /* custom-0 opcode: illegal instruction */
    CHECK(7, last_epc, pc);
    CHECK(8, last_tval, 0x0000000b);   /* QEMU and ftvm report the instruction bits */
    __asm__ volatile("li t0, 1\n csrw mvendorid, t0" ::: "t0"); /* write to a read-only CSR */
    CHECK(9, last_cause, 2);
    CHECK(10, last_tval, 0xf1129073);  /* csrrw x0, mvendorid, t0 */

    __asm__ volatile(".option push\n.option norvc\n 1: ebreak\n lla %0, 1b\n.option pop" : "=r"(pc));
    CHECK(11, last_cause, 3);
    CHECK(12, last_epc, pc);
    __asm__ volatile(".option push\n.option rvc\n 1: c.ebreak\n lla %0, 1b\n.option pop" : "=r"(pc));
    CHECK(13, last_epc, pc);           /* skip_insn stepped 2 bytes */
    CHECK(14, n_traps, 5);
}

static void memory_faults(void)
{
    static volatile uint64_t buf[2];
    uint64_t v, before;
    puts("csr_trap: misaligned access, access faults\n");
    buf[0] = 0x8877665544332211ULL;
    buf[1] = 0x00ffeeddccbbaa99ULL;
    /* Misaligned loads may be handled in hardware or trap with cause 4 (Unpriv. 2.6). */
    before = n_traps;
    v = 0;
    volatile uint8_t *p = (volatile uint8_t *)buf + 3;
    __asm__ volatile("ld %0, 0(%1)" : "+r"(v) : "r"(p) : "memory");
    if (n_traps != before) {
        CHECK(20, last_cause, 4);
        CHECK(21, last_tval, (uint64_t)p);
        puts("csr_trap: (misaligned ld trapped)\n");
    } else {
        puts("csr_trap: (misaligned ld handled without a trap)\n");
        CHECK(22, v, 0xbbaa998877665544ULL);
    }
    before = n_traps;
    __asm__ volatile("lw %0, 0(%1)" : "+r"(v) : "r"((uint8_t *)buf + 6) : "memory");
    if (n_traps == before)
        CHECK(23, v, 0xffffffffaa998877ULL);
    before = n_traps;
    __asm__ volatile("sh %0, 0(%1)" :: "r"(0x1234ULL), "r"((uint8_t *)buf + 7) : "memory");
    if (n_traps != before)
        CHECK(24, last_cause, 6);
    else
        CHECK(25, buf[1] & 0xff, 0x12);

    /* Nothing is mapped at physical address 0 on virt: access faults (Priv. 3.7). */
    __asm__ volatile("ld %0, 0(zero)" : "=r"(v) :: "memory");
    CHECK(26, last_cause, 5);
    CHECK(27, last_tval, 0);
    __asm__ volatile("sw zero, 8(zero)" ::: "memory");
    CHECK(28, last_cause, 7);
    CHECK(29, last_tval, 8);
    __asm__ volatile("jalr ra, 0(zero)" ::: "ra", "memory");
    CHECK(30, last_cause, 1);          /* instruction access fault */
    CHECK(31, last_epc, 0);
}

static void csrs(void)
{
    puts("csr_trap: misa, mscratch/mtvec/mepc round trips, counters\n");
    uint64_t misa = csr_read(misa);
    const uint64_t want = (1 << ('I' - 'A')) | (1 << ('M' - 'A')) | (1 << ('A' - 'A')) |
                          (1 << ('F' - 'A')) | (1 << ('D' - 'A')) | (1 << ('C' - 'A')) |
                          (1 << ('S' - 'A')) | (1 << ('U' - 'A'));
    CHECK(40, misa >> 62, 2);          /* MXL = 64 */
    CHECK(41, misa & want, want);
    /* mscratch holds the trap stack pointer: swap it out and back. */
    uint64_t saved = csr_swap(mscratch, 0x123456789abcdef0ULL);
    CHECK(42, csr_swap(mscratch, saved), 0x123456789abcdef0ULL);
    uint64_t tvec = csr_read(mtvec);
    CHECK(43, tvec, (uint64_t)trap_entry_m);
    csr_write(mtvec, 0x80001000ULL);
    CHECK(44, csr_read(mtvec), 0x80001000ULL);
    csr_write(mtvec, tvec);
    csr_write(mepc, 0x80001235ULL);
    /* mepc[0] is always zero (3.1.14); QEMU 7.2 keeps the bit, so only bits 63:1 are checked. */
    CHECK(45, csr_read(mepc) & ~1ULL, 0x80001234ULL);
    /* Zicntr counters move forward. */
    uint64_t c0 = csr_read(cycle), i0 = csr_read(instret), t0 = csr_read(time);
    for (volatile int i = 0; i < 1000; i++)
        ;
    uint64_t c1 = csr_read(cycle), i1 = csr_read(instret);
    CHECK(46, c1 > c0, 1);
    CHECK(47, i1 > i0, 1);
    uint64_t t1 = t0;
    for (int i = 0; i < 10000000 && t1 == t0; i++)
        t1 = csr_read(time);
    CHECK(48, t1 > t0, 1);
    CHECK(49, csr_read(mcycle) >= c1, 1);
    CHECK(50, MMIO64(CLINT_MTIME) >= t1, 1);  /* time mirrors the CLINT mtime */
}

static void timer(void)
{
    puts("csr_trap: CLINT timer interrupt (pending bit, then wfi)\n");
    uint64_t start = MMIO64(CLINT_MTIME);
    /* With mstatus.MIE clear, the interrupt only shows as pending in mip. */
    MMIO64(CLINT_MTIMECMP) = start + 1000;
    csr_set(mie, MIP_MTIP);
    while (!(csr_read(mip) & MIP_MTIP) && MMIO64(CLINT_MTIME) < start + 100000000)
        ;
    CHECK(60, csr_read(mip) & MIP_MTIP, MIP_MTIP);
    timer_fired = 0;
    csr_set(mstatus, MSTATUS_MIE);        /* taken at once */
    CHECK(61, timer_fired, 1);
    CHECK(62, last_cause, CAUSE_INTERRUPT | IRQ_M_TIMER);
    CHECK(63, csr_read(mip) & MIP_MTIP, 0);
    CHECK(64, last_status & (MSTATUS_MIE | MSTATUS_MPIE), MSTATUS_MPIE); /* 3.1.6.1 */
    CHECK(65, csr_read(mstatus) & MSTATUS_MIE, MSTATUS_MIE);            /* mret restored it */

    /* wfi until the timer fires. */
    timer_fired = 0;
    start = MMIO64(CLINT_MTIME);
    MMIO64(CLINT_MTIMECMP) = start + 1000;
    while (!timer_fired && MMIO64(CLINT_MTIME) < start + 100000000)
        __asm__ volatile("wfi");
    CHECK(66, timer_fired, 1);
    CHECK(67, last_cause, 0x8000000000000007ULL);
    CHECK(68, MMIO64(CLINT_MTIME) >= start + 1000, 1);
    csr_clear(mstatus, MSTATUS_MIE);
    csr_clear(mie, MIP_MTIP);
}

int main(void)
{
    puts("csr_trap: checks M-mode exceptions, mret, CSR round trips, counters, timer interrupt\n");
    m_trap_hook = hook;
    exceptions();
    memory_faults();
    csrs();
    timer();
    return 0;
}
