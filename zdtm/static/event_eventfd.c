/* eventfd counters survive C/R: zero, one, a 40-bit value, the maximum (0xffff...fe, where
 * any write would block) and a blocking eventfd, plus a dup sharing one counter. Checked
 * with fdinfo eventfd-count, the fd flags, read() and a write that must not fit. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtm.h"

struct efd {
	const char *name;
	uint64_t count;
	int flags;		/* EFD_NONBLOCK, EFD_CLOEXEC */
	int fd;
};

static struct efd efds[] = {
	{ "zero", 0, EFD_NONBLOCK, -1 },
	{ "one", 1, EFD_NONBLOCK | EFD_CLOEXEC, -1 },
	{ "40-bit", 0x123456789aULL, EFD_NONBLOCK, -1 },
	{ "max", 0xfffffffffffffffeULL, EFD_NONBLOCK | EFD_CLOEXEC, -1 },
	{ "blocking", 7, 0, -1 },
};
#define NEFD (sizeof(efds) / sizeof(efds[0]))
#define SHARED 2		/* efds[SHARED] has a dup */

static int dup_fd = -1;

static int setup(void)
{
	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];

		e->fd = eventfd(0, e->flags);
		if (e->fd < 0)
			return zdtm_err("eventfd(%s)", e->name);
		if (e->count && write(e->fd, &e->count, 8) != 8)
			return zdtm_err("write %#llx to eventfd %s", (unsigned long long)e->count,
					e->name);
	}
	dup_fd = dup(efds[SHARED].fd);
	if (dup_fd < 0)
		return zdtm_err("dup");
	return 0;
}

static int fdinfo_count(int fd, unsigned long long *count, int *sem)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	p = strstr(buf, "eventfd-count:");
	if (!p || sscanf(p, "eventfd-count: %llx", count) != 1)
		return zdtm_fail("fd %d is not an eventfd: fdinfo '%s'", fd, buf);
	p = strstr(buf, "eventfd-semaphore:");	/* only in newer kernels */
	*sem = p ? atoi(p + strlen("eventfd-semaphore:")) : 0;
	return 0;
}

static int check(void)
{
	unsigned long long fi;
	uint64_t v = 0, one = 1;
	struct stat a, b;
	int sem;

	if (dup_fd < 0)
		return zdtm_fail("setup never ran: no eventfds");
	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];
		int fl = fcntl(e->fd, F_GETFL), fdfl = fcntl(e->fd, F_GETFD);

		if (fl < 0 || fdfl < 0)
			return zdtm_err("eventfd %s: fd %d", e->name, e->fd);
		if (!!(fl & O_NONBLOCK) != !!(e->flags & EFD_NONBLOCK) ||
		    !!(fdfl & FD_CLOEXEC) != !!(e->flags & EFD_CLOEXEC))
			return zdtm_fail("eventfd %s: flags %#x, fd flags %#x; expected%s%s", e->name,
					 fl, fdfl, e->flags & EFD_NONBLOCK ? " O_NONBLOCK" : "",
					 e->flags & EFD_CLOEXEC ? " FD_CLOEXEC" : "");
		if (fdinfo_count(e->fd, &fi, &sem))
			return -1;
		if (fi != e->count || sem)
			return zdtm_fail("eventfd %s: fdinfo count %#llx semaphore %d, expected %#llx 0",
					 e->name, fi, sem, (unsigned long long)e->count);
	}
	if (fstat(dup_fd, &a) || fstat(efds[SHARED].fd, &b) || a.st_ino != b.st_ino)
		return zdtm_fail("fd %d is no longer a dup of eventfd %d", dup_fd, efds[SHARED].fd);

	/* the maximum leaves no room for even 1 */
	if (write(efds[3].fd, &one, 8) != -1 || errno != EAGAIN)
		return zdtm_fail("eventfd max: a write of 1 did not fail with EAGAIN");

	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];
		/* the shared counter is read through the dup */
		int fd = i == SHARED ? dup_fd : e->fd;
		ssize_t n = read(fd, &v, 8);

		if (!e->count) {
			if (n != -1 || errno != EAGAIN)
				return zdtm_fail("eventfd %s: read gave %zd (%#llx), expected EAGAIN",
						 e->name, n, (unsigned long long)v);
			continue;
		}
		if (n != 8 || v != e->count)
			return zdtm_fail("eventfd %s: read %zd bytes, %#llx, expected %#llx", e->name,
					 n, (unsigned long long)v, (unsigned long long)e->count);
	}
	if (read(efds[SHARED].fd, &v, 8) != -1 || errno != EAGAIN)
		return zdtm_fail("the dup of eventfd 40-bit has its own counter");
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
