/* Layout of the register frame saved by the trap entries in start.S. */
#ifndef FRAME_H
#define FRAME_H

#define FRAME_EPC    (32 * 8)
#define FRAME_CAUSE  (33 * 8)
#define FRAME_TVAL   (34 * 8)
#define FRAME_STATUS (35 * 8)
#define FRAME_SIZE   (36 * 8)

#ifndef __ASSEMBLER__
#include <stdint.h>
struct trap_frame {
    uint64_t x[32]; /* x[0] unused; x[2] is the interrupted sp */
    uint64_t epc, cause, tval, status;
};
_Static_assert(sizeof(struct trap_frame) == FRAME_SIZE, "frame layout");
#endif
#endif
