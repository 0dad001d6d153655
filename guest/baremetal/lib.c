/* Runtime support: UART output, pass/fail through the test device, trap dispatch. */
#include "lib.h"

volatile trap_hook_t m_trap_hook;
volatile trap_hook_t s_trap_hook;

void putc(char c)
{
    volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;
    while (!(uart[5] & 0x20)) /* LSR.THRE */
        ;
    uart[0] = (uint8_t)c;
}

void puts(const char *s)
{
    while (*s) {
        if (*s == '\n')
            putc('\r');
        putc(*s++);
    }
}

void put_hex(uint64_t v)
{
    puts("0x");
    for (int i = 60; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 0xf]);
}

void put_dec(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts(&buf[i]);
}

void pass(void)
{
    puts("PASS\n");
    MMIO32(TEST_BASE) = 0x5555;
    for (;;)
        __asm__ volatile("wfi");
}

void fail(unsigned code)
{
    code &= 0xff;
    if (code == 0)
        code = 0xff; /* status 0 would read as a pass */
    puts("FAIL code ");
    put_dec(code);
    puts("\n");
    MMIO32(TEST_BASE) = (code << 16) | 0x3333;
    for (;;)
        __asm__ volatile("wfi");
}

void check(unsigned code, const char *what, uint64_t got, uint64_t want)
{
    if (got == want)
        return;
    puts("check ");
    put_dec(code);
    puts(" failed: ");
    puts(what);
    puts(" = ");
    put_hex(got);
    puts(", want ");
    put_hex(want);
    puts("\n");
    fail(code);
}

static void unexpected(const char *mode, struct trap_frame *f)
{
    puts("unexpected ");
    puts(mode);
    puts("-mode trap: cause=");
    put_hex(f->cause);
    puts(" epc=");
    put_hex(f->epc);
    puts(" tval=");
    put_hex(f->tval);
    puts("\n");
    fail(254);
}

void m_trap_dispatch(struct trap_frame *f)
{
    if (m_trap_hook && m_trap_hook(f))
        return;
    unexpected("M", f);
}

void s_trap_dispatch(struct trap_frame *f)
{
    if (s_trap_hook && s_trap_hook(f))
        return;
    unexpected("S", f);
}
