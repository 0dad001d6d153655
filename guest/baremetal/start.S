/* Entry and trap vectors for the bare-metal guest programs.
 * Starts in M-mode at the ELF entry with no firmware (QEMU -bios none). */
#include "frame.h"

        .section .text.start, "ax"
        .globl _start
_start:
        /* Only hart 0 runs the program; any other hart parks. */
        csrr    t0, mhartid
        bnez    t0, park
        .option push
        .option norelax
        lla     gp, __global_pointer$
        .option pop
        lla     sp, __stack_top
        /* Zero .bss (8-byte aligned by link.ld). */
        lla     t0, __bss_start
        lla     t1, __bss_end
1:      bgeu    t0, t1, 2f
        sd      zero, 0(t0)
        addi    t0, t0, 8
        j       1b
2:      /* FPU on: mstatus.FS = Initial (Priv. spec 3.1.6.6). */
        li      t0, (1 << 13)
        csrs    mstatus, t0
        csrw    fcsr, zero
        /* M-mode traps run on their own stack, found through mscratch. */
        lla     t0, __trap_stack_top
        csrw    mscratch, t0
        lla     t0, trap_entry_m
        csrw    mtvec, t0
        call    main
        /* main's result: 0 -> pass, anything else -> fail(code). */
        beqz    a0, 3f
        call    fail
3:      call    pass
park:   wfi
        j       park

/* Save every integer register into a struct trap_frame on the stack
 * found in \p\()scratch, call \handler(frame), restore, return with \p\()ret. */
.macro TRAP_ENTRY p, handler
        csrrw   sp, \p\()scratch, sp
        addi    sp, sp, -FRAME_SIZE
        .irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        sd      x\r, (\r * 8)(sp)
        .endr
        csrr    t0, \p\()scratch
        sd      t0, (2 * 8)(sp)
        csrr    t0, \p\()epc
        sd      t0, FRAME_EPC(sp)
        csrr    t0, \p\()cause
        sd      t0, FRAME_CAUSE(sp)
        csrr    t0, \p\()tval
        sd      t0, FRAME_TVAL(sp)
        csrr    t0, \p\()status
        sd      t0, FRAME_STATUS(sp)
        mv      a0, sp
        call    \handler
        /* The handler may have changed epc and status (e.g. MPP/SPP). */
        ld      t0, FRAME_EPC(sp)
        csrw    \p\()epc, t0
        ld      t0, FRAME_STATUS(sp)
        csrw    \p\()status, t0
        .irp r, 1,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        ld      x\r, (\r * 8)(sp)
        .endr
        addi    sp, sp, FRAME_SIZE
        csrrw   sp, \p\()scratch, sp
        \p\()ret
.endm

        .text
        .balign 4
        .globl trap_entry_m
trap_entry_m:
        TRAP_ENTRY m, m_trap_dispatch

        .balign 4
        .globl trap_entry_s
trap_entry_s:
        TRAP_ENTRY s, s_trap_dispatch
