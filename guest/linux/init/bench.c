/*
 * mode=bench: a fixed CPU/memory workload (~0.97e9 instructions) with a deterministic
 * checksum, compared with the one QEMU 7.2 computes.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "init.h"

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

int mode_bench(void)
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
