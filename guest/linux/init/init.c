/*
 * /init of the ftvm Linux guest: a static program (riscv64 glibc) run as PID 1 from the
 * initramfs. It mounts /proc, /sys and /dev, sets up the network (net.c), prints
 * "ftvm-guest ready", then runs the mode named by `mode=NAME` on the kernel command line
 * (unknown key=value words reach init as environment variables; keys with a dot would be
 * taken as module parameters). Modes that return power the machine off; the counter
 * services (counter.c, disk.c) and diskbench.c run forever. Add a mode by adding it to the `modes` table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

#define DEFAULT_MODE "counter"

uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The `time` CSR (Zicntr): timer ticks since machine reset, firmware included. */
static uint64_t rdtime(void)
{
	uint64_t t;

	__asm__ volatile("rdtime %0" : "=r"(t));
	return t;
}

void print_ns(const char *what, uint64_t ns)
{
	printf("%s: %llu.%06llu s\n", what, (unsigned long long)(ns / 1000000000u),
	       (unsigned long long)(ns % 1000000000u / 1000u));
}

static void mount_or_warn(const char *src, const char *dir, const char *type)
{
	mkdir(dir, 0755); /* usually already in the initramfs */
	if (mount(src, dir, type, MS_NOSUID | MS_NOEXEC, NULL) != 0 && errno != EBUSY)
		fprintf(stderr, "init: mount %s on %s: %s\n", type, dir, strerror(errno));
}

/* ---- mode hello: who we are, then off ---- */

/* virtio-rng: read a few bytes from /dev/hwrng (the device exists only when the host
 * attached an entropy source). Prints how many bytes came, never the bytes. */
static void hwrng_report(void)
{
	unsigned char buf[16];
	int fd = open("/dev/hwrng", O_RDONLY);

	if (fd < 0) {
		printf("hwrng: none (%s)\n", strerror(errno));
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf);
	if (n < 0)
		printf("hwrng: none (%s)\n", strerror(errno));
	else
		printf("hwrng: read %zd bytes\n", n);
	close(fd);
}

static int mode_hello(void)
{
	struct utsname u;

	if (uname(&u) == 0)
		printf("kernel: %s %s %s\n", u.sysname, u.release, u.machine);
	print_ns("uptime", monotonic_ns());
	printf("time CSR: %llu ticks since reset\n", (unsigned long long)rdtime());
	hwrng_report();
	return 0;
}

/* ---- mode table and PID 1 ---- */

struct mode {
	const char *name;
	int (*run)(void);
	const char *help;
};

static const struct mode modes[] = {
	{ "hello", mode_hello, "print kernel version and uptime, power off" },
	{ "bench", mode_bench, "fixed ~1e9-instruction CPU/memory workload, power off" },
	{ "counter", mode_counter, "TCP counter service on port 7777 (default; never exits)" },
	{ "disk", mode_disk, "counter persisted in sector 0 of /dev/vda, `reboot` command" },
	{ "diskbench", mode_diskbench, "disk throughput rounds on /dev/vda (overwrites it; never exits)" },
	{ "thirdparty", mode_thirdparty, "busybox and a Go program from /opt/thirdparty (full initrd)" },
};

void machine_reset(int cmd)
{
	fflush(NULL);
	sync();
	reboot(cmd);
	/* PID 1 must not exit (the kernel would panic): report and stay. */
	fprintf(stderr, "init: reboot(%#x) failed: %s\n", cmd, strerror(errno));
	for (;;)
		pause();
}

int main(void)
{
	const char *name = getenv("mode");
	const struct mode *m = NULL;

	mount_or_warn("proc", "/proc", "proc");
	mount_or_warn("sysfs", "/sys", "sysfs");
	mount_or_warn("devtmpfs", "/dev", "devtmpfs");
	net_setup();

	printf("ftvm-guest ready\n");
	if (!name || !*name)
		name = DEFAULT_MODE;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(modes[i].name, name) == 0)
			m = &modes[i];
	if (!m) {
		printf("init: unknown mode '%s'; modes:\n", name);
		for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
			printf("  mode=%-8s %s\n", modes[i].name, modes[i].help);
	} else {
		printf("mode: %s\n", m->name);
		fflush(stdout);
		int rc = m->run();
		if (rc != 0)
			printf("init: mode %s failed (%d)\n", m->name, rc);
	}
	machine_reset(RB_POWER_OFF);
}
