/*
 * /init of the ftvm Linux guest: a static program (riscv64 glibc) run as PID 1 from the
 * initramfs. It mounts /proc, /sys and /dev, prints "ftvm-guest ready", then runs the mode
 * named by `mode=NAME` on the kernel command line (unknown key=value words reach init as
 * environment variables; keys with a dot would be taken as module parameters) and powers
 * the machine off. Add a mode by adding a function to the `modes` table.
 */
#define _GNU_SOURCE
#include <errno.h>
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

#define DEFAULT_MODE "hello"

static uint64_t monotonic_ns(void)
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

static void print_ns(const char *what, uint64_t ns)
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

static int mode_hello(void)
{
	struct utsname u;

	if (uname(&u) == 0)
		printf("kernel: %s %s %s\n", u.sysname, u.release, u.machine);
	print_ns("uptime", monotonic_ns());
	printf("time CSR: %llu ticks since reset\n", (unsigned long long)rdtime());
	return 0;
}

/* ---- mode bench: fixed CPU/memory workload, deterministic checksum ---- */

#define BENCH_ROUNDS 8
#define ALU_STEPS 10000000u   /* per round, ~6 instructions each */
#define SORT_LEN 2048u        /* 32-bit keys, quicksorted */
#define SORT_REPS 8u          /* per round */
#define CRC_BYTES (384u << 10) /* buffer the CRC walks, per round */
/* The checksum QEMU 7.2 computes; a different value means a wrong instruction. */
#define BENCH_CHECKSUM 0x51dc9e2981db95efull

static uint32_t crc_table[256];
static uint32_t sort_buf[SORT_LEN];
static uint8_t crc_buf[CRC_BYTES];

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Integer ALU: multiply, add, shift, rotate and a data-dependent branch. */
static uint64_t bench_alu(uint64_t seed)
{
	uint64_t a = seed, b = seed ^ 0x9e3779b97f4a7c15u;

	for (uint32_t i = 0; i < ALU_STEPS; i++) {
		a = a * 6364136223846793005u + 1442695040888963407u;
		b ^= a >> 29;
		b = (b << 7) | (b >> 57);
		if (b & 1)
			a += i;
	}
	return a ^ b;
}

static void quicksort(uint32_t *v, long lo, long hi)
{
	while (lo < hi) {
		uint32_t pivot = v[lo + (hi - lo) / 2];
		long i = lo, j = hi;

		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j) {
				uint32_t t = v[i];
				v[i++] = v[j];
				v[j--] = t;
			}
		}
		/* Recurse into the smaller half, loop over the larger. */
		if (j - lo < hi - i) {
			quicksort(v, lo, j);
			lo = i;
		} else {
			quicksort(v, i, hi);
			hi = j;
		}
	}
}

static uint64_t bench_sort(uint64_t *rng)
{
	uint64_t sum = 0;

	for (uint32_t r = 0; r < SORT_REPS; r++) {
		for (uint32_t i = 0; i < SORT_LEN; i++)
			sort_buf[i] = (uint32_t)xorshift64(rng);
		quicksort(sort_buf, 0, SORT_LEN - 1);
		for (uint32_t i = 0; i < SORT_LEN; i += 97)
			sum = sum * 31 + sort_buf[i];
	}
	return sum;
}

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320), one table lookup per byte. */
static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	while (n--)
		c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

static uint64_t bench_crc(uint64_t *rng)
{
	/* Rewrite a slice each round so every round checks different data. */
	for (uint32_t i = 0; i < CRC_BYTES / 8; i += 3) {
		uint64_t x = xorshift64(rng);
		memcpy(&crc_buf[i * 8], &x, 8);
	}
	return crc32(crc_buf, CRC_BYTES);
}

static int mode_bench(void)
{
	uint64_t rng = 0x243f6a8885a308d3u, sum = 0;

	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & -(c & 1));
		crc_table[i] = c;
	}
	printf("bench: %d rounds of ALU (%u steps), sort (%u x %u keys), CRC-32 (%u KiB)\n",
	       BENCH_ROUNDS, ALU_STEPS, SORT_REPS, SORT_LEN, CRC_BYTES >> 10);
	fflush(stdout);

	uint64_t t0 = monotonic_ns();
	for (int r = 0; r < BENCH_ROUNDS; r++) {
		sum = sum * 0x100000001b3u ^ bench_alu(sum + (uint64_t)r);
		sum = sum * 0x100000001b3u ^ bench_sort(&rng);
		sum = sum * 0x100000001b3u ^ bench_crc(&rng);
	}
	uint64_t t1 = monotonic_ns();

	print_ns("bench: elapsed", t1 - t0);
	printf("bench: checksum %016llx (%s)\n", (unsigned long long)sum,
	       sum == BENCH_CHECKSUM ? "ok" : "WRONG");
	return sum == BENCH_CHECKSUM ? 0 : 1;
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
};

static void power_off(void)
{
	fflush(NULL);
	sync();
	reboot(RB_POWER_OFF);
	/* PID 1 must not exit (the kernel would panic): report and stay. */
	fprintf(stderr, "init: power off failed: %s\n", strerror(errno));
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
	power_off();
	return 0;
}
