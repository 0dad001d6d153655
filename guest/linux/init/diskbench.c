/*
 * mode=diskbench: disk throughput as the guest sees it, in rounds that never end (the
 * host stops the machine). Each round runs three phases on /dev/vda, raw, with O_DIRECT
 * (no page cache: every byte crosses virtio-blk):
 *
 *   seq-write   DISKBENCH_MIB MiB (default 8) from offset 1 MiB in 64 KiB writes, then
 *               fdatasync
 *   seq-read    the same range back in 64 KiB reads, each sector's stamp checked
 *   sync-write  64 single 4 KiB writes, each followed by fdatasync (a database commit's
 *               pattern), spread over the range
 *
 * and prints one line as each phase begins and one as it ends:
 *
 *   diskbench: round 3 seq-write begin
 *   diskbench: round 3 seq-write end 8388608 bytes
 *
 * Guest time is a function of the instruction count (DESIGN.md §2), so the guest does not
 * time itself: the host timestamps the lines as they arrive (scripts/bench-ft
 * --disk-cost). The disk must hold 1 MiB + DISKBENCH_MIB MiB; its contents are lost.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <unistd.h>

#include "init.h"

#define DISK_PATH "/dev/vda"
#define CHUNK (64 * 1024)
#define SYNC_BLOCK 4096
#define SYNC_WRITES 64
#define OFFSET (1024 * 1024)

/* Every 512-byte sector written in round `round` at byte `pos` of the range starts with
 * (pos, round), so a read that returned another sector's or an older round's data is
 * caught; the rest of the sector is a fixed pattern, so the guest's own work per byte
 * stays small beside the disk's. */
static void stamp(unsigned char *buf, size_t n, uint64_t pos, unsigned round)
{
	for (size_t s = 0; s < n; s += 512) {
		uint64_t tag[2] = { pos + s, round };

		memcpy(buf + s, tag, sizeof tag);
	}
}

static int stamped(const unsigned char *buf, size_t n, uint64_t pos, unsigned round)
{
	for (size_t s = 0; s < n; s += 512) {
		uint64_t tag[2] = { pos + s, round };

		if (memcmp(buf + s, tag, sizeof tag) != 0)
			return 0;
	}
	return 1;
}

static void phase(unsigned round, const char *name, const char *what, uint64_t bytes)
{
	if (bytes)
		printf("diskbench: round %u %s %s %" PRIu64 " bytes\n", round, name, what, bytes);
	else
		printf("diskbench: round %u %s %s\n", round, name, what);
	fflush(stdout);
}

int mode_diskbench(void)
{
	const char *mib_env = getenv("DISKBENCH_MIB");
	uint64_t mib = mib_env ? strtoull(mib_env, NULL, 10) : 8;
	uint64_t size = 0, len = mib * 1024 * 1024;
	unsigned char *buf;
	int fd = open(DISK_PATH, O_RDWR | O_DIRECT | O_CLOEXEC);

	if (fd < 0) {
		printf("diskbench: error: %s: %s (no virtio-blk disk?)\n", DISK_PATH, strerror(errno));
		return 1;
	}
	if (mib == 0 || ioctl(fd, BLKGETSIZE64, &size) != 0 || size < OFFSET + len) {
		printf("diskbench: error: %s holds %" PRIu64 " bytes, %" PRIu64 " needed\n", DISK_PATH,
		       size, (uint64_t)OFFSET + len);
		return 1;
	}
	if (posix_memalign((void **)&buf, 4096, CHUNK) != 0) {
		printf("diskbench: error: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < CHUNK; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	printf("diskbench: %s, %" PRIu64 " MiB per phase\n", DISK_PATH, mib);
	for (unsigned round = 1;; round++) {
		phase(round, "seq-write", "begin", 0);
		for (uint64_t pos = 0; pos < len; pos += CHUNK) {
			stamp(buf, CHUNK, pos, round);
			if (pwrite(fd, buf, CHUNK, OFFSET + pos) != CHUNK) {
				printf("diskbench: error: write at %" PRIu64 ": %s\n", pos, strerror(errno));
				return 1;
			}
		}
		if (fdatasync(fd) != 0) {
			printf("diskbench: error: fdatasync: %s\n", strerror(errno));
			return 1;
		}
		phase(round, "seq-write", "end", len);

		phase(round, "seq-read", "begin", 0);
		for (uint64_t pos = 0; pos < len; pos += CHUNK) {
			if (pread(fd, buf, CHUNK, OFFSET + pos) != CHUNK) {
				printf("diskbench: error: read at %" PRIu64 ": %s\n", pos, strerror(errno));
				return 1;
			}
			if (!stamped(buf, CHUNK, pos, round)) {
				printf("diskbench: error: the 64 KiB at %" PRIu64 " read back wrong\n", pos);
				return 1;
			}
		}
		phase(round, "seq-read", "end", len);

		phase(round, "sync-write", "begin", 0);
		for (unsigned i = 0; i < SYNC_WRITES; i++) {
			uint64_t pos = (uint64_t)i * (len / SYNC_WRITES) / SYNC_BLOCK * SYNC_BLOCK;

			stamp(buf, SYNC_BLOCK, pos, round);
			if (pwrite(fd, buf, SYNC_BLOCK, OFFSET + pos) != SYNC_BLOCK || fdatasync(fd) != 0) {
				printf("diskbench: error: sync write at %" PRIu64 ": %s\n", pos, strerror(errno));
				return 1;
			}
		}
		phase(round, "sync-write", "end", (uint64_t)SYNC_WRITES * SYNC_BLOCK);
	}
}
