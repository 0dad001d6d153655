/* Shared declarations of the ftvm guest's /init (see init.c). */
#ifndef FTVM_INIT_H
#define FTVM_INIT_H

#include <stdint.h>

/* init.c */
uint64_t monotonic_ns(void);
void print_ns(const char *what, uint64_t ns);
/* Flush stdio, sync, then reboot(cmd) (RB_POWER_OFF or RB_AUTOBOOT); never returns. */
void machine_reset(int cmd) __attribute__((noreturn));

/* net.c: lo up; eth0 10.0.2.15/24 with a default route via 10.0.2.2. Warns, never fails. */
void net_setup(void);

/* Modes: return 0 on success, then init powers off (counter and disk never return). */
int mode_bench(void);   /* bench.c */
int mode_counter(void); /* counter.c */
int mode_disk(void);    /* disk.c */
int mode_diskbench(void); /* diskbench.c */
int mode_thirdparty(void); /* thirdparty.c */

/* counter.c: the TCP line-protocol server shared by the counter and disk modes. */
#define COUNTER_PORT 7777
struct counter_store {
	/* Called with the new value before an `inc` reply is queued; nonzero = failure. */
	int (*persist)(uint64_t value);
	/* Accept `reboot`: reply `ok`, then reboot(RB_AUTOBOOT) (disk mode). */
	int allow_reboot;
};
int counter_serve(uint64_t initial, const struct counter_store *store);

#endif
