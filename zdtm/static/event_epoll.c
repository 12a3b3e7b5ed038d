/* An epoll set with many targets survives C/R: both ends of a pipe with data, an empty
 * pipe, eventfds with and without a count, socketpair ends (one with data, one whose peer
 * shut down writing), a dup of a registered fd registered on its own, each with its own
 * event mask and 64-bit data; and an epoll watching that epoll. Checked with fdinfo of the
 * epoll fds (tfd, events, data, inode), epoll_wait() results, and new readiness. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0xe9011
#define PIPE_LEN 100

enum { PIPE_R, PIPE_W, EMPTY_R, EVFD_SET, EVFD_ZERO, SOCK_DATA, SOCK_OUT, SOCK_RDHUP, DUP_R,
       NT };

struct target {
	const char *name;
	uint32_t events;	/* registered */
	uint32_t ready;		/* what epoll_wait must report at check */
	uint64_t data;
	int fd;
};

static struct target tg[NT] = {
	[PIPE_R] = { "pipe read end", EPOLLIN, EPOLLIN, 0x1100000000000001ULL, -1 },
	[PIPE_W] = { "pipe write end", EPOLLOUT, EPOLLOUT, 0x2200000000000002ULL, -1 },
	[EMPTY_R] = { "empty pipe", EPOLLIN | EPOLLPRI, 0, 0x3300000000000003ULL, -1 },
	[EVFD_SET] = { "eventfd 5", EPOLLIN | EPOLLOUT, EPOLLIN | EPOLLOUT, 0x4400000000000004ULL, -1 },
	[EVFD_ZERO] = { "eventfd 0", EPOLLIN, 0, 0x5500000000000005ULL, -1 },
	[SOCK_DATA] = { "socket with data", EPOLLIN | EPOLLRDHUP, EPOLLIN, 0x6600000000000006ULL, -1 },
	[SOCK_OUT] = { "socket writable", EPOLLOUT, EPOLLOUT, 0x7700000000000007ULL, -1 },
	[SOCK_RDHUP] = { "socket peer shut down", EPOLLIN | EPOLLRDHUP, EPOLLIN | EPOLLRDHUP,
			 0x8800000000000008ULL, -1 },
	[DUP_R] = { "dup of the pipe read end", EPOLLIN, EPOLLIN, 0x9900000000000009ULL, -1 },
};

#define OUTER_DATA 0xaa0000000000000aULL

static int ep = -1, outer = -1;
static int empty_w = -1, rdhup_peer = -1;

static int setup(void)
{
	char buf[PIPE_LEN];
	int p[2], q[2], s[2], t[2];
	uint64_t five = 5;
	struct epoll_event ev;

	if (pipe(p) || pipe(q) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, t))
		return zdtm_err("pipe/socketpair");
	tg[PIPE_R].fd = p[0];
	tg[PIPE_W].fd = p[1];
	tg[EMPTY_R].fd = q[0];
	empty_w = q[1];
	tg[EVFD_SET].fd = eventfd(0, EFD_NONBLOCK);
	tg[EVFD_ZERO].fd = eventfd(0, EFD_NONBLOCK);
	tg[SOCK_DATA].fd = s[0];
	tg[SOCK_OUT].fd = s[1];
	tg[SOCK_RDHUP].fd = t[0];
	rdhup_peer = t[1];
	tg[DUP_R].fd = dup(p[0]);
	if (tg[EVFD_SET].fd < 0 || tg[EVFD_ZERO].fd < 0 || tg[DUP_R].fd < 0)
		return zdtm_err("eventfd/dup");

	zdtm_fill(buf, PIPE_LEN, SEED, 0);
	if (write(p[1], buf, PIPE_LEN) != PIPE_LEN || write(s[1], buf, 10) != 10 ||
	    write(tg[EVFD_SET].fd, &five, 8) != 8 || shutdown(t[1], SHUT_WR))
		return zdtm_err("fill the targets");

	ep = epoll_create1(EPOLL_CLOEXEC);
	outer = epoll_create1(0);
	if (ep < 0 || outer < 0)
		return zdtm_err("epoll_create1");
	for (int i = 0; i < NT; i++) {
		ev = (struct epoll_event){ .events = tg[i].events, .data.u64 = tg[i].data };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, tg[i].fd, &ev))
			return zdtm_err("EPOLL_CTL_ADD %s (fd %d)", tg[i].name, tg[i].fd);
	}
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = OUTER_DATA };
	if (epoll_ctl(outer, EPOLL_CTL_ADD, ep, &ev))
		return zdtm_err("EPOLL_CTL_ADD epoll %d into epoll %d", ep, outer);
	return 0;
}

/* The registrations of epoll fd efd as fdinfo shows them. */
static int fdinfo_targets(int efd, int *tfd, uint32_t *events, uint64_t *data,
			  unsigned long *ino, int max)
{
	static char buf[8192];
	char path[64], *p;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", efd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	for (p = strstr(buf, "tfd:"); p && n < max; p = strstr(p + 1, "tfd:"), n++)
		if (sscanf(p, "tfd: %d events: %x data: %lx pos:%*d ino:%lx", &tfd[n], &events[n],
			   &data[n], &ino[n]) != 4)
			return zdtm_fail("epoll %d: cannot parse fdinfo line '%.80s'", efd, p);
	return n;
}

static int check_fdinfo(void)
{
	int tfd[NT + 4], n, seen[NT] = { 0 };
	uint32_t events[NT + 4];
	uint64_t data[NT + 4];
	unsigned long ino[NT + 4];
	struct stat st;

	n = fdinfo_targets(ep, tfd, events, data, ino, NT + 4);
	if (n < 0)
		return -1;
	if (n != NT)
		return zdtm_fail("epoll %d has %d targets in fdinfo, expected %d", ep, n, NT);
	for (int k = 0; k < n; k++) {
		int i;

		for (i = 0; i < NT && tg[i].fd != tfd[k]; i++)
			;
		if (i == NT)
			return zdtm_fail("epoll %d: unexpected target fd %d (data %#lx)", ep, tfd[k],
					 data[k]);
		seen[i]++;
		/* the kernel adds EPOLLERR | EPOLLHUP to every registration */
		if (events[k] != (tg[i].events | EPOLLERR | EPOLLHUP) || data[k] != tg[i].data)
			return zdtm_fail("epoll %d, %s (fd %d): events %#x data %#lx, expected %#x %#lx",
					 ep, tg[i].name, tfd[k], events[k], data[k],
					 tg[i].events | EPOLLERR | EPOLLHUP, tg[i].data);
		if (fstat(tfd[k], &st) || st.st_ino != ino[k])
			return zdtm_fail("epoll %d, %s: fd %d is inode %lu, the epoll watches %lu", ep,
					 tg[i].name, tfd[k], (unsigned long)st.st_ino, ino[k]);
	}
	for (int i = 0; i < NT; i++)
		if (seen[i] != 1)
			return zdtm_fail("epoll %d: %s (fd %d) registered %d times", ep, tg[i].name,
					 tg[i].fd, seen[i]);

	n = fdinfo_targets(outer, tfd, events, data, ino, NT + 4);
	if (n < 0)
		return -1;
	if (n != 1 || tfd[0] != ep || events[0] != (EPOLLIN | EPOLLERR | EPOLLHUP) ||
	    data[0] != OUTER_DATA)
		return zdtm_fail("outer epoll %d: %d targets, first fd %d events %#x data %#lx; "
				 "expected epoll %d %#x %#llx", outer, n, n ? tfd[0] : -1,
				 n ? events[0] : 0, n ? data[0] : 0, ep,
				 EPOLLIN | EPOLLERR | EPOLLHUP, OUTER_DATA);
	return 0;
}

/* epoll_wait must report exactly the targets with a non-zero ready[]. */
static int check_ready(const char *when)
{
	struct epoll_event evs[NT + 4];
	int n, want = 0, seen[NT] = { 0 };

	n = epoll_wait(ep, evs, NT + 4, 0);
	if (n < 0)
		return zdtm_err("epoll_wait");
	for (int k = 0; k < n; k++) {
		int i;

		for (i = 0; i < NT && tg[i].data != evs[k].data.u64; i++)
			;
		if (i == NT)
			return zdtm_fail("%s: epoll_wait reported unknown data %#llx (events %#x)",
					 when, (unsigned long long)evs[k].data.u64, evs[k].events);
		if (evs[k].events != tg[i].ready)
			return zdtm_fail("%s: %s reported with events %#x, expected %#x", when,
					 tg[i].name, evs[k].events, tg[i].ready);
		seen[i]++;
	}
	for (int i = 0; i < NT; i++) {
		want += !!tg[i].ready;
		if (seen[i] != !!tg[i].ready)
			return zdtm_fail("%s: %s reported %d times, expected %d", when, tg[i].name,
					 seen[i], !!tg[i].ready);
	}
	if (n != want)
		return zdtm_fail("%s: %d events, expected %d", when, n, want);
	return 0;
}

static int check(void)
{
	struct epoll_event ev;
	char buf[PIPE_LEN + 1];
	ssize_t n, bad;

	if (ep < 0)
		return zdtm_fail("setup never ran: no epoll");
	if (check_fdinfo() || check_ready("after restore"))
		return -1;
	if (epoll_wait(outer, &ev, 1, 0) != 1 || ev.events != EPOLLIN ||
	    ev.data.u64 != OUTER_DATA)
		return zdtm_fail("the outer epoll does not report the inner one as readable");

	/* The pipe data is intact; once it is read, the pipe and its dup stop being ready. */
	fcntl(tg[PIPE_R].fd, F_SETFL, O_NONBLOCK);
	n = zdtm_read_all(tg[PIPE_R].fd, buf, sizeof(buf));
	if (n != PIPE_LEN)
		return zdtm_fail("pipe holds %zd bytes, expected %d", n, PIPE_LEN);
	bad = zdtm_verify(buf, PIPE_LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("pipe byte %zd differs", bad);
	tg[PIPE_R].ready = tg[DUP_R].ready = 0;
	/* and the empty pipe becomes ready when written to */
	if (write(empty_w, "x", 1) != 1)
		return zdtm_err("write to the empty pipe");
	tg[EMPTY_R].ready = EPOLLIN;
	return check_ready("after reading one pipe and writing another");
}

ZDTM_TEST(.setup = setup, .check = check);
