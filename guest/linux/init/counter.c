/*
 * mode=counter: the example service of the fault-tolerance paper, a counter behind a TCP
 * line protocol on port 7777:
 *
 *   inc\n     -> the new value, as a decimal line ("1\n", "2\n", ...)
 *   get\n     -> the current value
 *   reboot\n  -> "ok\n", then reboot(RB_AUTOBOOT)        (disk mode only)
 *   other     -> "err\n"
 *
 * One reply line per request line, in order; a trailing '\r' is ignored (telnet, nc -C).
 * A connection may send many requests, split across reads or several per read; any
 * number of connections (up to MAX_CONNS at a time, the rest wait in the backlog) share
 * the one uint64 counter. A line longer than LINE_MAX bytes gets "err\n" and the
 * connection is closed. After the client's end of input (close or half-close) the complete
 * lines are still answered; an unfinished last line is dropped.
 *
 * One thread, one poll(2) loop, nonblocking sockets. Each connection has an input buffer
 * (LINE_MAX) and an output buffer; requests are only taken while the output buffer has
 * room for a reply, so a client that sends without reading is throttled, not buffered
 * without bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <unistd.h>

#include "init.h"

#define LINE_MAX 4096  /* input buffer: the longest request line, '\n' included */
#define OUT_MAX 4096   /* output buffer */
#define REPLY_MAX 24   /* "18446744073709551615\n" is 21 bytes */
#define MAX_CONNS 256
#define BACKLOG 64

struct conn {
	int fd;
	int eof;      /* the client has finished sending (its partial line is dropped) */
	int closing;  /* take no more requests (`reboot`, over-long line) */
	size_t in_len;
	size_t out_off, out_len;
	char in[LINE_MAX];
	char out[OUT_MAX];
};

static uint64_t counter;
static const struct counter_store *store;
static struct conn *conns[MAX_CONNS];
static size_t nconns;
static struct conn *rebooter; /* the connection that asked for `reboot` */

static void reply(struct conn *c, const char *s)
{
	size_t n = strlen(s);

	/* Callers check room first (REPLY_MAX); compact before appending. */
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
	}
	memcpy(c->out + c->out_len, s, n);
	c->out_len += n;
}

static void reply_u64(struct conn *c, uint64_t v)
{
	char buf[REPLY_MAX];

	snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
	reply(c, buf);
}

/* One request line, without its '\n'. */
static void handle_line(struct conn *c, char *line, size_t len)
{
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	if (strcmp(line, "inc") == 0) {
		if (store && store->persist && store->persist(counter + 1) != 0) {
			reply(c, "err\n"); /* not stored: the value must not be handed out */
			return;
		}
		reply_u64(c, ++counter);
	} else if (strcmp(line, "get") == 0) {
		reply_u64(c, counter);
	} else if (strcmp(line, "reboot") == 0 && store && store->allow_reboot) {
		reply(c, "ok\n");
		c->closing = 1;
		rebooter = c;
	} else {
		reply(c, "err\n");
	}
}

/* Answer the complete lines in c->in while the output buffer has room. */
static void process_input(struct conn *c)
{
	size_t start = 0;

	while (!c->closing && OUT_MAX - (c->out_len - c->out_off) >= REPLY_MAX) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		if (!nl)
			break;
		handle_line(c, c->in + start, (size_t)(nl - (c->in + start)));
		start = (size_t)(nl - c->in) + 1;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
	if (!c->closing && c->in_len == LINE_MAX && !memchr(c->in, '\n', c->in_len)) {
		/* A line longer than the buffer. */
		if (OUT_MAX - (c->out_len - c->out_off) >= REPLY_MAX)
			reply(c, "err\n");
		c->closing = 1;
	}
}

/* Send what is queued; -1 if the peer is gone. */
static int flush_output(struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

/* Read what is there and answer it; -1 on a connection error. */
static int read_input(struct conn *c)
{
	while (!c->eof && !c->closing && c->in_len < LINE_MAX) {
		ssize_t n = recv(c->fd, c->in + c->in_len, LINE_MAX - c->in_len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		if (n == 0) {
			c->eof = 1; /* complete lines still get answered */
			return 0;
		}
		c->in_len += (size_t)n;
		process_input(c);
	}
	return 0;
}

/* Nothing more to do for c once its output is sent? */
static int finished(const struct conn *c)
{
	return c->closing || (c->eof && !memchr(c->in, '\n', c->in_len));
}

static void drop(size_t i)
{
	close(conns[i]->fd);
	free(conns[i]);
	conns[i] = conns[--nconns];
}

static void accept_all(int lfd)
{
	while (nconns < MAX_CONNS) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				printf("counter: accept: %s\n", strerror(errno));
			return;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		conns[nconns++] = c;
	}
}

/* `reboot`: get the "ok" out, let the client see it, then reboot the machine. */
static void __attribute__((noreturn)) reboot_now(struct conn *c)
{
	int flags = fcntl(c->fd, F_GETFL);
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	char sink[256];

	fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
	flush_output(c);
	shutdown(c->fd, SHUT_WR);
	/* Up to 1 s for the client to close its side, so the reply is not lost in flight. */
	while (poll(&p, 1, 1000) > 0 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	printf("counter: reboot requested, value %" PRIu64 "\n", counter);
	machine_reset(RB_AUTOBOOT);
}

int counter_serve(uint64_t initial, const struct counter_store *s)
{
	static struct pollfd pfd[MAX_CONNS + 1];
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(COUNTER_PORT),
				    .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	counter = initial;
	store = s;
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, BACKLOG) != 0) {
		printf("counter: cannot listen on port %d: %s\n", COUNTER_PORT, strerror(errno));
		return 1;
	}
	printf("counter: listening on 0.0.0.0:%d, value %" PRIu64 "\n", COUNTER_PORT, counter);
	fflush(stdout);

	for (;;) {
		/* pfd[0] is the listener (left out while full), pfd[1 + i] is conns[i]. */
		pfd[0] = (struct pollfd){ .fd = nconns < MAX_CONNS ? lfd : -1, .events = POLLIN };
		for (size_t i = 0; i < nconns; i++) {
			struct conn *c = conns[i];
			int room = OUT_MAX - (c->out_len - c->out_off) >= REPLY_MAX;
			pfd[1 + i].fd = c->fd;
			pfd[1 + i].events = (!c->eof && !c->closing && room ? POLLIN : 0) |
					    (c->out_len > c->out_off ? POLLOUT : 0);
			pfd[1 + i].revents = 0;
		}
		size_t polled = nconns;
		if (poll(pfd, 1 + polled, -1) < 0) {
			if (errno != EINTR)
				printf("counter: poll: %s\n", strerror(errno));
			continue;
		}
		/* Backwards, so drop() (which moves the last connection into the hole) only
		 * moves connections already handled in this round. */
		for (size_t i = polled; i-- > 0;) {
			struct conn *c = conns[i];
			short ev = pfd[1 + i].revents;
			int bad = 0;

			if (ev == 0)
				continue;
			if (ev & (POLLIN | POLLERR | POLLHUP))
				bad = read_input(c) != 0;
			/* Sending frees room; take the requests that were waiting for it. */
			while (!bad && c->out_len > c->out_off) {
				size_t before = c->out_len - c->out_off;
				bad = flush_output(c) != 0;
				process_input(c);
				if (bad || c->out_len - c->out_off >= before)
					break;
			}
			if (c == rebooter)
				reboot_now(c); /* even if the client is already gone */
			rebooter = NULL;
			if (bad || (finished(c) && c->out_len == c->out_off))
				drop(i);
		}
		if (pfd[0].revents & POLLIN)
			accept_all(lfd);
	}
}

int mode_counter(void)
{
	return counter_serve(0, NULL);
}
