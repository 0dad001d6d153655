/*
 * mode=disk: the counter service (counter.c) with the value kept on the virtio disk
 * /dev/vda, raw, no file system. Sector 0 holds a 512-byte header (the guest's byte order,
 * little-endian; the rest of the sector is zero):
 *
 *   offset 0   8 bytes  magic "FTVMCTR1"
 *   offset 8   u64      counter value
 *   offset 16  u64      FNV-1a 64 of bytes 0..15
 *
 * A disk without the magic (e.g. fresh from `truncate -s 1M`) starts at 0 and gets a
 * header; a header with the magic and a wrong check value stops init (a counter must
 * not go back to 0 silently). Each `inc` writes the new value with pwrite + fdatasync
 * before the reply is sent, so a value a client has seen survives a crash or a reboot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "init.h"

#define DISK_PATH "/dev/vda"
#define SECTOR 512
static const char magic[8] = { 'F', 'T', 'V', 'M', 'C', 'T', 'R', '1' };

static int disk_fd = -1;

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325u;

	while (n--)
		h = (h ^ *p++) * 0x100000001b3u;
	return h;
}

static int disk_store(uint64_t value)
{
	unsigned char sector[SECTOR] = { 0 };
	uint64_t check;

	memcpy(sector, magic, 8);
	memcpy(sector + 8, &value, 8);
	check = fnv1a64(sector, 16);
	memcpy(sector + 16, &check, 8);
	if (pwrite(disk_fd, sector, SECTOR, 0) != SECTOR || fdatasync(disk_fd) != 0) {
		printf("disk: writing %s: %s\n", DISK_PATH, strerror(errno));
		return -1;
	}
	return 0;
}

/* Open the disk and read the stored value (0 and a new header on a blank disk). */
static int disk_load(uint64_t *value)
{
	unsigned char sector[SECTOR];
	uint64_t check;

	disk_fd = open(DISK_PATH, O_RDWR | O_CLOEXEC);
	if (disk_fd < 0) {
		printf("disk: error: %s: %s (no virtio-blk disk?)\n", DISK_PATH, strerror(errno));
		return -1;
	}
	ssize_t n = pread(disk_fd, sector, SECTOR, 0);
	if (n != SECTOR) {
		printf("disk: error: reading sector 0 of %s: %s\n", DISK_PATH,
		       n < 0 ? strerror(errno) : "disk smaller than one sector");
		return -1;
	}
	if (memcmp(sector, magic, 8) != 0) {
		printf("disk: no counter header on %s, starting at 0\n", DISK_PATH);
		*value = 0;
		return disk_store(0);
	}
	memcpy(value, sector + 8, 8);
	memcpy(&check, sector + 16, 8);
	if (check != fnv1a64(sector, 16)) {
		printf("disk: error: bad counter header on %s (check value)\n", DISK_PATH);
		return -1;
	}
	printf("disk: %s: counter %" PRIu64 " loaded\n", DISK_PATH, *value);
	return 0;
}

int mode_disk(void)
{
	static const struct counter_store store = { .persist = disk_store, .allow_reboot = 1 };
	uint64_t value;

	if (disk_load(&value) != 0)
		return 1; /* init reports the failure and powers off */
	return counter_serve(value, &store);
}
