/* Tiny runtime for the bare-metal guest programs (QEMU virt / ftvm machine). */
#ifndef LIB_H
#define LIB_H

#include <stdint.h>
#include "frame.h"

#define UART_BASE   0x10000000UL /* NS16550A: THR at 0, LSR at 5 */
#define TEST_BASE   0x00100000UL /* sifive,test finisher */
#define CLINT_BASE  0x02000000UL
#define CLINT_MTIMECMP (CLINT_BASE + 0x4000)
#define CLINT_MTIME    (CLINT_BASE + 0xbff8)

void putc(char c);
void puts(const char *s);          /* no newline appended */
void put_hex(uint64_t v);          /* "0x" + 16 hex digits */
void put_dec(uint64_t v);
__attribute__((noreturn)) void pass(void);
__attribute__((noreturn)) void fail(unsigned code); /* code 1..255 is the exit status */

/* Compare and fail(code) with a message on mismatch. */
void check(unsigned code, const char *what, uint64_t got, uint64_t want);
#define CHECK(code, got, want) check((code), #got, (uint64_t)(got), (uint64_t)(want))

/* CSR access by name (Zicsr). */
#define csr_read(csr) ({ uint64_t __v; \
    __asm__ volatile("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, val) \
    __asm__ volatile("csrw " #csr ", %0" :: "rK"((uint64_t)(val)) : "memory")
#define csr_set(csr, val) \
    __asm__ volatile("csrs " #csr ", %0" :: "rK"((uint64_t)(val)) : "memory")
#define csr_clear(csr, val) \
    __asm__ volatile("csrc " #csr ", %0" :: "rK"((uint64_t)(val)) : "memory")
#define csr_swap(csr, val) ({ uint64_t __v; \
    __asm__ volatile("csrrw %0, " #csr ", %1" : "=r"(__v) : "rK"((uint64_t)(val)) : "memory"); __v; })

#define MMIO32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define MMIO64(a) (*(volatile uint64_t *)(uintptr_t)(a))

/* Trap hooks: return nonzero if the trap was handled (the frame's epc/status
 * are written back before xRET). An unhandled trap prints the cause and fails. */
typedef int (*trap_hook_t)(struct trap_frame *f);
extern volatile trap_hook_t m_trap_hook;
extern volatile trap_hook_t s_trap_hook;
void trap_entry_m(void);
void trap_entry_s(void);

/* Length of the instruction at addr (2 if compressed, Unpriv. spec 1.5). */
static inline unsigned insn_len(uint64_t addr)
{
    return (*(volatile uint16_t *)(uintptr_t)addr & 3) == 3 ? 4 : 2;
}
static inline void skip_insn(struct trap_frame *f) { f->epc += insn_len(f->epc); }

#endif
