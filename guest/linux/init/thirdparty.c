/*
 * mode thirdparty: run unmodified programs built elsewhere (guest/linux/thirdparty/:
 * Debian's busybox, a Go program) from /opt/thirdparty/bin, which only the full initrd
 * (initramfs-full.cpio = initramfs.cpio + thirdparty.cpio) has. Each check is one
 * fork + execve + waitpid with stdout and stderr captured through a pipe and compared
 * with an expected value; one line per check, then `thirdparty: N passed, M failed`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

#define BIN "/opt/thirdparty/bin"
#define BUSYBOX BIN "/busybox"
#define GOPROBE BIN "/goprobe"
#define DATA "/tmp/thirdparty-numbers"
#define OUT_MAX 65536

struct run {
	char out[OUT_MAX + 1]; /* stdout + stderr, NUL-terminated, cut at OUT_MAX */
	size_t len;
	int status;       /* waitpid status */
	int timed_out;
	uint64_t elapsed; /* ns */
};

/* fork + execve(argv[0]) with a fixed environment, output captured; the child gets its
 * own process group, killed whole on timeout. Returns 0, or -1 if it could not start. */
static int run_program(char *const argv[], int timeout_s, struct run *r)
{
	static char *const envp[] = { "PATH=" BIN ":/bin:/usr/bin", "HOME=/tmp", "TERM=dumb",
				      "LANG=C", NULL };
	int fds[2];
	uint64_t start = monotonic_ns(), deadline = start + (uint64_t)timeout_s * 1000000000u;

	memset(r, 0, sizeof(*r));
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		setpgid(0, 0);
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		int null = open("/dev/null", O_RDONLY);
		if (null >= 0)
			dup2(null, 0);
		execve(argv[0], argv, envp);
		dprintf(2, "execve %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	/* Read until EOF (every holder of the pipe gone) or the deadline. */
	for (;;) {
		uint64_t now = monotonic_ns();
		if (now >= deadline) {
			r->timed_out = 1;
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			break;
		}
		struct pollfd p = { .fd = fds[0], .events = POLLIN };
		int ms = (int)((deadline - now) / 1000000u) + 1;
		int n = poll(&p, 1, ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue; /* the deadline check above ends it */
		char buf[4096];
		ssize_t got = read(fds[0], buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		size_t keep = (size_t)got;
		if (keep > OUT_MAX - r->len)
			keep = OUT_MAX - r->len;
		memcpy(r->out + r->len, buf, keep);
		r->len += keep;
	}
	close(fds[0]);
	r->out[r->len] = '\0';
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
	r->elapsed = monotonic_ns() - start;
	/* PID 1 inherits orphans (background jobs of a shell): reap what has ended. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	return 0;
}

/* ---- output matchers: return NULL when fine, else what is wrong ---- */

static char why[256];

static int exited_ok(const struct run *r)
{
	return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

/* Every line of `want` (newline-separated) is a whole line of the output. */
static int has_line(const char *out, const char *line, size_t len)
{
	for (const char *p = out; *p;) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == len && memcmp(p, line, len) == 0)
			return 1;
		if (!e)
			break;
		p = e + 1;
	}
	return 0;
}

static const char *match_lines(const struct run *r, const char *want)
{
	for (const char *p = want; *p;) {
		const char *e = strchr(p, '\n');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (!has_line(r->out, p, l)) {
			snprintf(why, sizeof(why), "no line \"%.*s\"", (int)l, p);
			return why;
		}
		if (!e)
			break;
		p = e + 1;
	}
	return NULL;
}

/* The last non-empty line is `want`. */
static const char *match_last_line(const struct run *r, const char *want)
{
	size_t n = r->len;
	while (n > 0 && r->out[n - 1] == '\n')
		n--;
	size_t b = n;
	while (b > 0 && r->out[b - 1] != '\n')
		b--;
	if (n - b != strlen(want) || memcmp(r->out + b, want, n - b) != 0) {
		snprintf(why, sizeof(why), "last line \"%.*s\", want \"%s\"", (int)(n - b > 120 ? 120 : n - b),
			 r->out + b, want);
		return why;
	}
	return NULL;
}

/* ---- the checks ---- */

enum match { EXACT, LINES, LAST_LINE };

struct check {
	const char *name;
	char *const *argv;
	const char *want;
	enum match how;
	int timeout_s;
	double min_s, max_s; /* elapsed bounds (max 0: none) */
	int show_output;     /* print the output even when it passes */
};

#define ARGV(...) ((char *const[]){ __VA_ARGS__, NULL })
#define SH(script) ARGV(BUSYBOX, "sh", "-c", script)

/* md5 of DATA (below) and of `sort -n` of it, computed on the build host with coreutils. */
#define DATA_MD5 "56e56d992c3c9f770340d0d927b7c3e8"
#define SORTED_MD5 "5e7d2bf152f619dddb698ac386150969"

static const struct check checks[] = {
	{ "pipeline", SH("echo hello | busybox tr a-z A-Z"), "HELLO\n", EXACT, 30, 0, 0, 0 },
	{ "ls-proc", ARGV(BUSYBOX, "ls", "/proc"), "1\nself\nmeminfo\nuptime\nversion\ncpuinfo", LINES,
	  30, 0, 0, 0 },
	{ "md5sum", ARGV(BUSYBOX, "md5sum", DATA), DATA_MD5 "  " DATA "\n", EXACT, 30, 0, 0, 0 },
	{ "sort", SH("busybox sort -n " DATA " | busybox md5sum; busybox sort -u " DATA " | busybox wc -l"),
	  SORTED_MD5 "  -\n1979\n", EXACT, 30, 0, 0, 0 },
	{ "sleep", ARGV(BUSYBOX, "sleep", "0.2"), "", EXACT, 30, 0.2, 5.0, 0 },
	{ "subshells",
	  SH("i=0; s=0; while [ $i -lt 20 ]; do s=$((s + $(echo $i))); i=$((i + 1)); done; "
	     "(exit 3); r=$?; (busybox sleep 0.05; echo bg) & wait; "
	     "echo \"$s $r $(echo a; echo b | (read x; echo $x$x))\""),
	  "bg\n190 3 a\nbb\n", EXACT, 30, 0, 0, 0 },
	/* busybox awk's %d is printf("%d", (int)x): 2^40 does not fit, and RISC-V's fcvt.w.d
	 * saturates to INT32_MAX (x86's cvttsd2si would give INT32_MIN). */
	{ "awk-float",
	  ARGV(BUSYBOX, "awk", "BEGIN { printf \"%.6f %.4e %.0f %d\\n\", atan2(0, -1), exp(10), 2^40, 2^40 }"),
	  "3.141593 2.2026e+04 1099511627776 2147483647\n", EXACT, 30, 0, 0, 0 },
	{ "applet-links",
	  SH("busybox mkdir -p /tmp/bb && busybox --install -s /tmp/bb && PATH=/tmp/bb && "
	     "echo abc | tr b x && readlink /tmp/bb/tr"),
	  "axc\n" BUSYBOX "\n", EXACT, 30, 0, 0, 0 },
	{ "goprobe", ARGV(GOPROBE), "goprobe: ok", LAST_LINE, 300, 0, 0, 1 },
};

/* DATA: 2000 lines of a fixed LCG's values in 0..99999 (1979 distinct). */
static int write_data(void)
{
	FILE *f = fopen(DATA, "w");
	uint32_t x = 12345;

	if (!f)
		return -1;
	for (int i = 0; i < 2000; i++) {
		x = x * 1103515245u + 12345u;
		fprintf(f, "%u\n", (x >> 8) % 100000u);
	}
	return fclose(f);
}

static void print_indented(const char *out)
{
	for (const char *p = out; *p;) {
		const char *e = strchr(p, '\n');
		int l = e ? (int)(e - p) : (int)strlen(p);
		printf("    | %.*s\n", l, p);
		if (!e)
			break;
		p = e + 1;
	}
}

int mode_thirdparty(void)
{
	static struct run r;
	int passed = 0, failed = 0;

	if (access(BUSYBOX, X_OK) != 0 || access(GOPROBE, X_OK) != 0) {
		printf("thirdparty: %s/{busybox,goprobe} missing: boot with initramfs-full.cpio "
		       "(guest/linux/build.sh --thirdparty)\n", BIN);
		printf("thirdparty: 0 passed, 1 failed\n");
		return 1;
	}
	if (write_data() != 0) {
		printf("thirdparty: cannot write %s: %s\n", DATA, strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		const struct check *c = &checks[i];
		const char *bad = NULL;

		if (run_program(c->argv, c->timeout_s, &r) != 0) {
			snprintf(why, sizeof(why), "cannot start: %s", strerror(errno));
			bad = why;
		} else if (r.timed_out) {
			snprintf(why, sizeof(why), "timed out after %d s", c->timeout_s);
			bad = why;
		} else if (!exited_ok(&r)) {
			if (WIFSIGNALED(r.status))
				snprintf(why, sizeof(why), "killed by signal %d (%s)", WTERMSIG(r.status),
					 strsignal(WTERMSIG(r.status)));
			else
				snprintf(why, sizeof(why), "exit status %d", WEXITSTATUS(r.status));
			bad = why;
		} else if (c->how == EXACT && strcmp(r.out, c->want) != 0) {
			snprintf(why, sizeof(why), "output differs");
			bad = why;
		} else if (c->how == LINES) {
			bad = match_lines(&r, c->want);
		} else if (c->how == LAST_LINE) {
			bad = match_last_line(&r, c->want);
		}
		double s = (double)r.elapsed / 1e9;
		if (!bad && (s < c->min_s || (c->max_s > 0 && s > c->max_s))) {
			snprintf(why, sizeof(why), "took %.3f s, want %.1f..%.1f s", s, c->min_s, c->max_s);
			bad = why;
		}
		if (bad) {
			failed++;
			printf("thirdparty: FAIL %-12s %.3f s: %s\n", c->name, s, bad);
		} else {
			passed++;
			printf("thirdparty: ok   %-12s %.3f s\n", c->name, s);
		}
		if (bad || c->show_output) {
			if (bad && c->how == EXACT) {
				printf("    want:\n");
				print_indented(c->want);
				printf("    got:\n");
			}
			print_indented(r.out);
		}
		fflush(stdout);
	}
	printf("thirdparty: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
