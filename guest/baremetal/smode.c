/* smode: S/U-mode and Sv39 paging (Priv. spec ch. 4 "Supervisor-Level ISA", 4.3-4.4).
 * M-mode builds page tables, delegates U-ecall and page faults to S, probes satp
 * modes, then mrets to s_main in S-mode, which checks translation and faults. */
#include "lib.h"

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_A 0x40
#define PTE_D 0x80
#define PTE(pa, flags) ((((uint64_t)(pa)) >> 12) << 10 | (flags))
#define SATP_SV39 (8ULL << 60)
#define SSTATUS_SPP (1ULL << 8)
#define SSTATUS_SUM (1ULL << 18)
#define SSTATUS_MXR (1ULL << 19)

/* Virtual layout (root index 4 = 0x1_0000_0000, 6 = 0x1_8000_0000). */
#define VA_4K      0x100000000ULL /* l0 table: 4 KiB test pages */
#define VA_AD      (VA_4K + 0 * 4096)  /* RW, A=D=0 initially */
#define VA_RO      (VA_4K + 1 * 4096)  /* R only */
#define VA_NX      (VA_4K + 2 * 4096)  /* RW, not executable */
#define VA_XO      (VA_4K + 3 * 4096)  /* X only */
#define VA_USER    (VA_4K + 4 * 4096)  /* U RW */
#define VA_INVALID (VA_4K + 5 * 4096)  /* V = 0 */
#define VA_MEGA    0x100200000ULL /* 2 MiB megapage -> PA 0x80000000, read-only */
#define VA_BADMEGA 0x100400000ULL /* megapage with PPN[0] != 0: misaligned superpage */
#define VA_UALIAS  0x180000000ULL /* gigapage -> PA 0x80000000 with U set */
#define U_ALIAS(p) ((uint64_t)(p) - 0x80000000ULL + VA_UALIAS)

static uint64_t root[512] __attribute__((aligned(4096)));
static uint64_t l1[512] __attribute__((aligned(4096)));
static uint64_t l0[512] __attribute__((aligned(4096)));
static uint64_t page[3][512] __attribute__((aligned(4096)));
static uint64_t s_trap_stack[1024] __attribute__((aligned(16)));
static volatile uint64_t n_traps, last_cause, last_tval, last_epc, last_spp, prev_cause, prev_tval;
static const volatile uint64_t marker = 0x5eed5eed12345678ULL;

/* U-mode code, run through the U alias (norvc: the S handler steps 4 bytes). */
void user_ecall(void), user_bad_load(void), user_return(void);
uint64_t enter_user(uint64_t upc, uint64_t arg);
__asm__(".text\n .balign 4\n .option push\n .option norvc\n"
        "user_ecall: li a0, 42\n ecall\n"
        "user_bad_load: ld a0, 0(a1)\n li a0, 43\n ecall\n"
        /* enter_user(upc, arg): sret to upc in U-mode with a1 = arg; the S handler
         * resumes at user_return with U's registers (a0 = result, ra/sp unchanged). */
        "enter_user: csrw sepc, a0\n li t0, 0x100\n csrc sstatus, t0\n sret\n"
        "user_return: ret\n"
        ".option pop\n");

static int s_hook(struct trap_frame *f)
{
    n_traps++;
    prev_cause = last_cause;
    prev_tval = last_tval;
    last_cause = f->cause;
    last_tval = f->tval;
    last_epc = f->epc;
    last_spp = (f->status & SSTATUS_SPP) != 0;
    switch (f->cause) {
    case 8: /* ecall from U: back to S at user_return */
        f->epc = (uint64_t)user_return;
        f->status |= SSTATUS_SPP;
        return 1;
    case 12: /* fetch page fault: return to the caller */
        f->epc = f->x[1];
        return 1;
    case 13:
    case 15:
        if (last_spp)
            skip_insn(f);
        else
            f->epc += 4; /* U code is norvc and its VA is not readable from S */
        return 1;
    }
    return 0;
}

/* Accesses through a VA; the memory clobber orders them with plain accesses to
 * the same physical pages. */
static uint64_t load(uint64_t va)
{
    uint64_t v = 0;
    __asm__ volatile("ld %0, 0(%1)" : "+r"(v) : "r"(va) : "memory");
    return v;
}
static void store(uint64_t va, uint64_t v)
{
    __asm__ volatile("sd %0, 0(%1)" :: "r"(v), "r"(va) : "memory");
}

/* Expect the access `expr` to fault with `cause` and stval = va. */
#define EXPECT_FAULT(code, expr, cause, va) do { \
    uint64_t __n = n_traps; (void)(expr); \
    CHECK(code, n_traps - __n, 1); CHECK(code, last_cause, cause); \
    CHECK(code, last_tval, va); } while (0)

static void s_main(void)
{
    uint64_t n;
    puts("smode: in S-mode with Sv39\n");
    CHECK(10, (uint64_t)(csr_read(satp) >> 60), 8);
    puts("smode: loads through 4 KiB, 2 MiB and 1 GiB mappings\n");
    page[1][3] = 0xabcdef;
    CHECK(11, load(VA_RO + 24), 0xabcdef);
    CHECK(12, load(VA_MEGA + ((uint64_t)&marker - 0x80000000ULL)), marker);
    EXPECT_FAULT(13, load(VA_INVALID), 13, VA_INVALID);
    EXPECT_FAULT(14, load(VA_BADMEGA + 8), 13, VA_BADMEGA + 8); /* 4.3.2 step 6 */

    puts("smode: accessed/dirty bits set by hardware\n");
    CHECK(15, l0[0] & (PTE_A | PTE_D), 0);
    load(VA_AD);
    CHECK(16, l0[0] & (PTE_A | PTE_D), PTE_A);
    store(VA_AD + 8, 99);
    CHECK(17, l0[0] & (PTE_A | PTE_D), PTE_A | PTE_D);
    CHECK(18, page[0][1], 99);

    puts("smode: store/fetch permission faults\n");
    EXPECT_FAULT(20, store(VA_RO + 16, 1), 15, VA_RO + 16);
    CHECK(21, page[1][2], 0);
    n = n_traps;
    ((void (*)(void))VA_NX)();
    CHECK(22, n_traps - n, 1);
    CHECK(23, last_cause, 12);
    CHECK(24, last_epc, VA_NX);
    CHECK(25, last_tval, VA_NX);
    /* The execute-only page holds "li a0, 42; ret": fetch works, loads need MXR. */
    CHECK(26, ((uint64_t (*)(void))VA_XO)(), 42);
    EXPECT_FAULT(27, load(VA_XO), 13, VA_XO);
    csr_set(sstatus, SSTATUS_MXR);
    CHECK(28, load(VA_XO), page[2][0]);
    csr_clear(sstatus, SSTATUS_MXR);

    puts("smode: SUM gates S access to U pages\n");
    EXPECT_FAULT(30, load(VA_USER), 13, VA_USER);
    EXPECT_FAULT(31, store(VA_USER, 5), 15, VA_USER);
    csr_set(sstatus, SSTATUS_SUM);
    store(VA_USER, 5);
    CHECK(32, load(VA_USER), 5);
    csr_clear(sstatus, SSTATUS_SUM);

    puts("smode: U-mode ecall and page fault delegated to S\n");
    n = n_traps;
    CHECK(40, enter_user(U_ALIAS(user_ecall), 0), 42);
    CHECK(41, n_traps - n, 1);
    CHECK(42, last_cause, 8);
    CHECK(43, last_spp, 0);
    CHECK(44, last_epc, U_ALIAS(user_ecall) + 4);
    /* U touches a non-U page: load page fault in S, then the U code ecalls. */
    n = n_traps;
    CHECK(45, enter_user(U_ALIAS(user_bad_load), (uint64_t)&marker), 43);
    CHECK(46, n_traps - n, 2);
    CHECK(47, last_cause, 8);
    CHECK(48, prev_cause, 13);
    CHECK(49, prev_tval, (uint64_t)&marker);
    pass();
}

static void build_page_tables(void)
{
    root[0] = PTE(0, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);                 /* MMIO */
    root[2] = PTE(0x80000000, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D); /* RAM */
    root[4] = PTE(l1, PTE_V);
    root[6] = PTE(0x80000000, PTE_V | PTE_R | PTE_W | PTE_X | PTE_U | PTE_A | PTE_D);
    l1[0] = PTE(l0, PTE_V);
    l1[1] = PTE(0x80000000, PTE_V | PTE_R | PTE_A);
    l1[2] = PTE(0x80001000, PTE_V | PTE_R | PTE_A);     /* PPN[0] = 1: misaligned */
    l0[0] = PTE(page[0], PTE_V | PTE_R | PTE_W);
    l0[1] = PTE(page[1], PTE_V | PTE_R | PTE_A);
    l0[2] = PTE(page[1], PTE_V | PTE_R | PTE_W | PTE_A | PTE_D);
    l0[3] = PTE(page[2], PTE_V | PTE_X | PTE_A);
    l0[4] = PTE(page[1], PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
    l0[5] = PTE(page[1], PTE_R | PTE_W | PTE_A | PTE_D);
    page[2][0] = 0x0000806702a00513ULL; /* li a0, 42; ret */
    __asm__ volatile("fence.i" ::: "memory");
}

/* Writes with an unsupported MODE leave satp unchanged (4.1.11). */
static void satp_modes(void)
{
    const uint64_t sv39 = SATP_SV39 | ((uint64_t)root >> 12);
    puts("smode: satp mode probing\n");
    csr_write(satp, 15ULL << 60);                 /* reserved */
    CHECK(1, csr_read(satp), 0);
    csr_write(satp, sv39);
    CHECK(2, csr_read(satp), sv39);
    csr_write(satp, (15ULL << 60) | 1);
    CHECK(3, csr_read(satp), sv39);
    csr_write(satp, (1ULL << 60) | 1);            /* modes 1-7 are reserved */
    CHECK(4, csr_read(satp), sv39);
    for (uint64_t mode = 9; mode <= 10; mode++) { /* Sv48, Sv57: optional */
        csr_write(satp, (mode << 60) | 1);
        uint64_t got = csr_read(satp);
        puts(mode == 9 ? "smode: Sv48 " : "smode: Sv57 ");
        puts(got == sv39 ? "not supported\n" : "supported\n");
        if (got != sv39)
            CHECK(5, got, (mode << 60) | 1);
        csr_write(satp, sv39);
    }
    CHECK(6, csr_read(satp), sv39);
}

int main(void)
{
    puts("smode: checks Sv39 mappings, A/D, R/W/X/U faults, SUM, MXR, satp modes, U ecall\n");
    build_page_tables();
    /* PMP: one NAPOT entry covering everything, or S/U accesses fail (3.7.1). */
    csr_write(pmpaddr0, ~0ULL >> 10);
    csr_write(pmpcfg0, 0x1f);
    satp_modes();
    const uint64_t deleg = (1 << 8) | (1 << 12) | (1 << 13) | (1 << 15);
    csr_write(medeleg, deleg);
    CHECK(7, csr_read(medeleg), deleg);
    s_trap_hook = s_hook;
    csr_write(stvec, trap_entry_s);
    csr_write(sscratch, &s_trap_stack[1024]);
    __asm__ volatile("sfence.vma" ::: "memory");
    /* mret to s_main with MPP = S (3.1.6.1). */
    csr_clear(mstatus, 3ULL << 11);
    csr_set(mstatus, 1ULL << 11);
    csr_write(mepc, s_main);
    __asm__ volatile("mret");
    return 100;
}
