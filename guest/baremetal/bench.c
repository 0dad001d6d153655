/* bench: deterministic integer/memory workload for MIPS measurement.
 * Each round does RMW_STEPS pseudo-random read-modify-writes over a 4 MiB array
 * (xorshift64 addresses, multiply/shift mixing), then a bitwise CRC-32 over 256
 * bytes and an insertion sort of 32 words taken from the array. At the end it
 * prints a checksum and instret, and checks the checksum for the default size.
 * BENCH_ITERS (rounds) defaults to about 2e9 instructions in total. */
#include "lib.h"

#ifndef BENCH_ITERS
#define BENCH_ITERS 48500
#define BENCH_DEFAULT 1
#endif
#define ARRAY_WORDS (4u << 20) / 8
#define RMW_STEPS 1024
#define SORT_N 32

static uint64_t arr[ARRAY_WORDS];

static uint32_t crc32(const uint8_t *p, unsigned n, uint32_t crc)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

static uint64_t sort_sum(const uint64_t *src)
{
    uint64_t a[SORT_N];
    for (unsigned i = 0; i < SORT_N; i++) {
        uint64_t v = src[i];
        unsigned j = i;
        for (; j > 0 && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
    uint64_t h = 0;
    for (unsigned i = 0; i < SORT_N; i++)
        h = h * 31 + a[i];
    return h;
}

int main(void)
{
    uint64_t x = 0x243f6a8885a308d3ULL, acc = 0, lcg = 1;
    uint32_t crc = 0;
    puts("bench: integer/memory workload, " );
    put_dec(BENCH_ITERS);
    puts(" rounds\n");
    for (unsigned i = 0; i < ARRAY_WORDS; i++) {
        lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
        arr[i] = lcg;
    }
    /* QEMU-friendly warm-up, harmless elsewhere: QEMU's softmmu TLB starts with 256
     * entries and only grows when flushed while full, so touch all 1024 pages and
     * sfence.vma a few times; and a full-range PMP entry (3.7) lets QEMU cache whole
     * pages in its TLB. Without both, QEMU runs this workload ~5x slower. */
    csr_write(pmpaddr0, ~0ULL >> 10);
    csr_write(pmpcfg0, 0x1f);
    for (int pass = 0; pass < 8; pass++) {
        for (unsigned i = 0; i < ARRAY_WORDS; i += 512)
            acc += ((volatile uint64_t *)arr)[i];
        __asm__ volatile("sfence.vma" ::: "memory");
    }
    uint64_t i0 = csr_read(instret);
    for (uint64_t r = 0; r < BENCH_ITERS; r++) {
        for (unsigned s = 0; s < RMW_STEPS; s++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint64_t *p = &arr[x & (ARRAY_WORDS - 1)];
            uint64_t v = *p;
            v = (v * 0x9e3779b97f4a7c15ULL + s) ^ (v >> 29);
            *p = v;
            acc += v ^ (acc << 1);
        }
        unsigned base = (unsigned)(x >> 40) & (ARRAY_WORDS - 64);
        crc = crc32((const uint8_t *)&arr[base], 256, crc);
        acc ^= sort_sum(&arr[base + 32]) + crc;
    }
    uint64_t i1 = csr_read(instret);
    uint64_t sum = acc ^ ((uint64_t)crc << 32);
    puts("bench: checksum ");
    put_hex(sum);
    puts("\nbench: instret ");
    put_dec(i1 - i0);
    puts("\n");
#ifdef BENCH_DEFAULT
    CHECK(1, sum, 0x53b830e7fe45ffb8ULL); /* measured on QEMU 7.2 */
#endif
    return 0;
}
