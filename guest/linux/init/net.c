/*
 * Network setup with plain ioctls (no netlink, no tools in the initramfs): the layout of
 * QEMU user networking (slirp), which ftvm follows too:
 *
 *   guest eth0 10.0.2.15/24, gateway (and host) 10.0.2.2, DNS 10.0.2.3 (unused here)
 *
 * A missing eth0 (no virtio-net device) is not an error: init warns and goes on with
 * loopback only, so hello and bench run on a machine without a NIC.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"

#define GUEST_ADDR "10.0.2.15"
#define GUEST_MASK "255.255.255.0"
#define GATEWAY "10.0.2.2"

static void set_in(struct sockaddr *sa, const char *dotted)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)sa;

	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, dotted, &sin->sin_addr);
}

static int if_up(int s, const char *name)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
		return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static int if_addr(int s, const char *name, unsigned long req, const char *dotted)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	set_in(&ifr.ifr_addr, dotted);
	return ioctl(s, req, &ifr);
}

static void warn(const char *what)
{
	printf("init: warning: %s: %s\n", what, strerror(errno));
}

void net_setup(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0) {
		warn("socket(AF_INET)");
		return;
	}
	/* Bringing lo up makes the kernel add 127.0.0.1/8 to it. */
	if (if_up(s, "lo") != 0)
		warn("lo up");

	struct ifreq probe;
	memset(&probe, 0, sizeof(probe));
	snprintf(probe.ifr_name, IFNAMSIZ, "eth0");
	if (ioctl(s, SIOCGIFFLAGS, &probe) != 0) {
		printf("init: warning: no eth0 (%s): loopback only\n", strerror(errno));
		close(s);
		return;
	}
	/* Address first (it also sets a classful mask), then the real mask, then up: the
	 * connected route 10.0.2.0/24 appears with the link, the default route needs it. */
	if (if_addr(s, "eth0", SIOCSIFADDR, GUEST_ADDR) != 0)
		warn("eth0 address " GUEST_ADDR);
	else if (if_addr(s, "eth0", SIOCSIFNETMASK, GUEST_MASK) != 0)
		warn("eth0 netmask " GUEST_MASK);
	else if (if_up(s, "eth0") != 0)
		warn("eth0 up");
	else {
		struct rtentry rt;

		memset(&rt, 0, sizeof(rt));
		set_in(&rt.rt_dst, "0.0.0.0");
		set_in(&rt.rt_genmask, "0.0.0.0");
		set_in(&rt.rt_gateway, GATEWAY);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = (char *)"eth0";
		if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST)
			warn("default route via " GATEWAY);
		else
			printf("net: eth0 " GUEST_ADDR "/24, default route via " GATEWAY "\n");
	}
	close(s);
}
