/* Semaphore-mode eventfds survive C/R: with EFD_SEMAPHORE every read takes 1 off the
 * counter, so counts of 5 and 2 (blocking) give exactly that many reads of 1 and then
 * EAGAIN / no more; a count above 32 bits goes down by one per read (fdinfo). */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtm.h"

struct efd {
	const char *name;
	uint64_t count;
	int flags;
	int fd;
};

static struct efd efds[] = {
	{ "sem 5", 5, EFD_SEMAPHORE | EFD_NONBLOCK, -1 },
	{ "sem 2 blocking", 2, EFD_SEMAPHORE | EFD_CLOEXEC, -1 },
	{ "sem 2^32+3", 0x100000003ULL, EFD_SEMAPHORE | EFD_NONBLOCK, -1 },
};
#define NEFD (sizeof(efds) / sizeof(efds[0]))
#define BIG 2

static bool set_up;

static int fdinfo(int fd, unsigned long long *count, int *sem)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	p = strstr(buf, "eventfd-count:");
	if (!p || sscanf(p, "eventfd-count: %llx", count) != 1)
		return zdtm_fail("fd %d is not an eventfd: fdinfo '%s'", fd, buf);
	p = strstr(buf, "eventfd-semaphore:");	/* only in newer kernels */
	*sem = p ? atoi(p + strlen("eventfd-semaphore:")) : -1;
	return 0;
}

static int setup(void)
{
	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];

		e->fd = eventfd(0, e->flags);
		if (e->fd < 0)
			return zdtm_err("eventfd(%s)", e->name);
		if (write(e->fd, &e->count, 8) != 8)
			return zdtm_err("write to eventfd %s", e->name);
	}
	set_up = true;
	return 0;
}

static int check(void)
{
	unsigned long long fi;
	uint64_t v;
	int sem;

	if (!set_up)
		return zdtm_fail("setup never ran: no eventfds");
	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];

		if (fdinfo(e->fd, &fi, &sem))
			return -1;
		if (fi != e->count || sem == 0)
			return zdtm_fail("eventfd %s: fdinfo count %#llx semaphore %d, expected %#llx 1",
					 e->name, fi, sem, (unsigned long long)e->count);
		if (!!(fcntl(e->fd, F_GETFL) & O_NONBLOCK) != !!(e->flags & EFD_NONBLOCK) ||
		    !!(fcntl(e->fd, F_GETFD) & FD_CLOEXEC) != !!(e->flags & EFD_CLOEXEC))
			return zdtm_fail("eventfd %s: fd flags changed", e->name);
	}

	for (size_t i = 0; i < NEFD; i++) {
		struct efd *e = &efds[i];
		uint64_t reads = i == BIG ? 3 : e->count;

		for (uint64_t k = 0; k < reads; k++) {
			v = 0;
			if (read(e->fd, &v, 8) != 8 || v != 1)
				return zdtm_fail("eventfd %s: read #%llu gave %llu (%s), expected 1",
						 e->name, (unsigned long long)k + 1,
						 (unsigned long long)v, strerror(errno));
		}
		if (i == BIG) {
			if (fdinfo(e->fd, &fi, &sem))
				return -1;
			if (fi != e->count - 3)
				return zdtm_fail("eventfd %s: count %#llx after 3 reads, expected %#llx",
						 e->name, fi, (unsigned long long)e->count - 3);
		} else if (e->flags & EFD_NONBLOCK) {
			if (read(e->fd, &v, 8) != -1 || errno != EAGAIN)
				return zdtm_fail("eventfd %s: a read after %llu did not fail with EAGAIN",
						 e->name, (unsigned long long)e->count);
		} else {
			struct pollfd p = { .fd = e->fd, .events = POLLIN };

			if (poll(&p, 1, 0) != 0)
				return zdtm_fail("eventfd %s: still readable after %llu reads", e->name,
						 (unsigned long long)e->count);
		}
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
