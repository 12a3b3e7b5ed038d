/* Resource limits survive C/R, per process: the root and a child each set a dozen limits
 * to their own values: soft below hard, hard limits lowered below what they inherited,
 * unlimited soft and hard limits kept, a soft limit of 0. Each checks its limits with
 * prlimit() and the "Max open files" line of /proc/self/limits, and that the lowered
 * RLIMIT_NOFILE really stops dup2() at the limit. Hard limits only go down: raising one
 * needs CAP_SYS_RESOURCE, which the test must not assume. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "zdtm.h"

#define INF RLIM_INFINITY

struct limit {
	int res;
	const char *name;
	rlim_t soft, hard;	/* wanted; INF or a cap below the inherited hard limit */
};

#define L(r, s, h) { r, #r, s, h }

/* Each value is clamped to the inherited hard limit in setup; "keep" (-2) keeps it. */
#define KEEP ((rlim_t)-2)

static struct limit root_want[] = {
	L(RLIMIT_NOFILE, 256, 1000),
	L(RLIMIT_CORE, 0, INF),
	L(RLIMIT_CPU, 86400, INF),
	L(RLIMIT_FSIZE, 1ULL << 30, 1ULL << 32),
	L(RLIMIT_DATA, INF, INF),
	L(RLIMIT_STACK, 8 << 20, 64 << 20),
	L(RLIMIT_AS, INF, INF),
	L(RLIMIT_NPROC, 4000, KEEP),
	L(RLIMIT_MEMLOCK, 64 << 10, KEEP),
	L(RLIMIT_LOCKS, 5000, 6000),
	L(RLIMIT_SIGPENDING, 1000, KEEP),
	L(RLIMIT_MSGQUEUE, 409600, KEEP),
	L(RLIMIT_NICE, 0, KEEP),
	L(RLIMIT_RTTIME, 5000000, INF),
};

static struct limit child_want[] = {
	L(RLIMIT_NOFILE, 100, 100),
	L(RLIMIT_CORE, 4096, 8192),
	L(RLIMIT_CPU, INF, INF),
	L(RLIMIT_FSIZE, INF, INF),
	L(RLIMIT_DATA, 1ULL << 34, 1ULL << 35),
	L(RLIMIT_STACK, 4 << 20, 4 << 20),
	L(RLIMIT_LOCKS, INF, INF),
	L(RLIMIT_SIGPENDING, 500, 700),
	L(RLIMIT_RTTIME, 1000000, 2000000),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static bool root_set;
static pid_t child;

static const char *str(rlim_t v, char *buf, size_t len)
{
	if (v == INF)
		return "unlimited";
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* Lower each limit to the wanted value (never above what the task already has). */
static int apply(struct limit *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct rlimit cur, want;

		if (getrlimit(l[i].res, &cur))
			return zdtm_err("getrlimit %s", l[i].name);
		want.rlim_max = l[i].hard == KEEP ? cur.rlim_max : l[i].hard;
		if (cur.rlim_max != INF && (want.rlim_max == INF || want.rlim_max > cur.rlim_max))
			want.rlim_max = cur.rlim_max;
		want.rlim_cur = l[i].soft;
		if (want.rlim_max != INF && (want.rlim_cur == INF || want.rlim_cur > want.rlim_max))
			want.rlim_cur = want.rlim_max;
		if (setrlimit(l[i].res, &want))
			return zdtm_err("setrlimit %s", l[i].name);
		l[i].soft = want.rlim_cur;
		l[i].hard = want.rlim_max;
	}
	return 0;
}

static int verify(const char *who, const struct limit *l, size_t n)
{
	char a[32], b[32], c[32], d[32], line[256], *p;
	static char limits[8192];
	rlim_t nofile = 0;

	for (size_t i = 0; i < n; i++) {
		struct rlimit cur;

		if (prlimit(0, l[i].res, NULL, &cur))
			return zdtm_err("%s: prlimit %s", who, l[i].name);
		if (cur.rlim_cur != l[i].soft || cur.rlim_max != l[i].hard)
			return zdtm_fail("%s: %s is %s/%s (soft/hard), expected %s/%s", who, l[i].name,
					 str(cur.rlim_cur, a, 32), str(cur.rlim_max, b, 32),
					 str(l[i].soft, c, 32), str(l[i].hard, d, 32));
		if (l[i].res == RLIMIT_NOFILE)
			nofile = l[i].soft;
	}

	/* the kernel's own rendering agrees */
	if (zdtm_read_file("/proc/self/limits", limits, sizeof(limits)) < 0)
		return zdtm_err("%s: read /proc/self/limits", who);
	p = strstr(limits, "Max open files");
	if (!p)
		return zdtm_fail("%s: no 'Max open files' in /proc/self/limits", who);
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(p, "\n"), p);
	if (sscanf(line, "Max open files %31s %31s", a, b) != 2 ||
	    strtoull(a, NULL, 10) != nofile)
		return zdtm_fail("%s: /proc/self/limits says '%s', expected soft %llu", who, line,
				 (unsigned long long)nofile);

	/* and enforces it: fd nofile-1 is allowed, fd nofile is not */
	if (nofile && nofile < 100000) {
		int fd = dup2(STDIN_FILENO, (int)nofile - 1);

		if (fd < 0)
			return zdtm_err("%s: dup2 to fd %d (just below RLIMIT_NOFILE)", who,
					(int)nofile - 1);
		close(fd);
		fd = dup2(STDIN_FILENO, (int)nofile);
		if (fd >= 0 || errno != EBADF)
			return zdtm_fail("%s: dup2 to fd %d (= RLIMIT_NOFILE) gave %d, expected EBADF",
					 who, (int)nofile, fd);
	}
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	return apply(child_want, N(child_want));
}

static int child_check(void *arg)
{
	(void)arg;
	return verify("child", child_want, N(child_want));
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_setup, .check = child_check };

	/* the child starts from the inherited limits, before the root lowers its own */
	child = zdtm_child(&t);
	if (child <= 0)
		return -1;
	if (apply(root_want, N(root_want)))
		return -1;
	root_set = true;
	return 0;
}

static int check(void)
{
	int rc;

	if (!root_set)
		return zdtm_fail("limits were never set: setup did not run");
	rc = verify("root", root_want, N(root_want));
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
