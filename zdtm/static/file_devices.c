/* Character devices open with several flags survive C/R: each fd is still the same device
 * (st_rdev), with its flags and its path, and behaves like it. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "zdtm.h"

enum kind { NUL, ZERO, URANDOM, FULL };

struct dev {
	const char *path;
	enum kind kind;
	unsigned maj, min;
	int flags;
	int fd;
	int fl;
};

static struct dev devs[] = {
	{ "/dev/null", NUL, 1, 3, O_RDWR, -1, 0 },
	{ "/dev/null", NUL, 1, 3, O_WRONLY | O_APPEND | O_CLOEXEC, -1, 0 },
	{ "/dev/zero", ZERO, 1, 5, O_RDONLY, -1, 0 },
	{ "/dev/urandom", URANDOM, 1, 9, O_RDONLY | O_NONBLOCK, -1, 0 },
	{ "/dev/full", FULL, 1, 7, O_RDWR, -1, 0 },
};
#define NDEVS (int)(sizeof(devs) / sizeof(devs[0]))

static int setup(void)
{
	for (int i = 0; i < NDEVS; i++) {
		struct dev *d = &devs[i];
		struct stat st;

		d->fd = open(d->path, d->flags);
		if (d->fd < 0)
			return zdtm_err("open %s", d->path);
		if (fstat(d->fd, &st) || !S_ISCHR(st.st_mode) ||
		    st.st_rdev != makedev(d->maj, d->min))
			return zdtm_fail("%s is not the character device %u:%u", d->path, d->maj,
					 d->min);
		d->fl = fcntl(d->fd, F_GETFL);
	}
	return 0;
}

static int check_one(const struct dev *d)
{
	char link[64], target[PATH_MAX], buf[256];
	struct stat st;
	ssize_t n;
	int fdfl;

	if (fstat(d->fd, &st))
		return zdtm_err("fd %d (%s) is not open", d->fd, d->path);
	if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(d->maj, d->min))
		return zdtm_fail("fd %d: mode %#o rdev %u:%u, expected %s (char %u:%u)", d->fd,
				 st.st_mode, major(st.st_rdev), minor(st.st_rdev), d->path, d->maj,
				 d->min);
	if (fcntl(d->fd, F_GETFL) != d->fl)
		return zdtm_fail("fd %d (%s): F_GETFL %#o, expected %#o", d->fd, d->path,
				 fcntl(d->fd, F_GETFL), d->fl);
	fdfl = fcntl(d->fd, F_GETFD);
	if (fdfl != ((d->flags & O_CLOEXEC) ? FD_CLOEXEC : 0))
		return zdtm_fail("fd %d (%s): F_GETFD %d", d->fd, d->path, fdfl);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", d->fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, d->path))
		return zdtm_fail("fd %d points to '%s', expected '%s'", d->fd, target, d->path);

	switch (d->kind) {
	case NUL:
		if (write(d->fd, "abc", 3) != 3)
			return zdtm_err("write to %s (fd %d)", d->path, d->fd);
		if ((d->flags & O_ACCMODE) == O_RDWR && (n = read(d->fd, buf, sizeof(buf))) != 0)
			return zdtm_fail("read from %s (fd %d) gave %zd, expected EOF", d->path,
					 d->fd, n);
		break;
	case ZERO:
		memset(buf, 0x55, sizeof(buf));
		if (read(d->fd, buf, sizeof(buf)) != sizeof(buf))
			return zdtm_err("read from %s", d->path);
		for (size_t i = 0; i < sizeof(buf); i++)
			if (buf[i])
				return zdtm_fail("%s (fd %d) gave byte %#x at %zu", d->path, d->fd,
						 buf[i], i);
		if (write(d->fd, "a", 1) != -1 || errno != EBADF)
			return zdtm_fail("read-only fd %d (%s) can be written", d->fd, d->path);
		break;
	case URANDOM:
		memset(buf, 0, sizeof(buf));
		if (read(d->fd, buf, sizeof(buf)) != sizeof(buf))
			return zdtm_err("read from %s", d->path);
		n = 0;
		for (size_t i = 0; i < sizeof(buf); i++)
			n += buf[i] == 0;
		if (n > 32)
			return zdtm_fail("%s (fd %d) gave %zd zero bytes of %zu", d->path, d->fd, n,
					 sizeof(buf));
		break;
	case FULL:
		if (write(d->fd, "a", 1) != -1 || errno != ENOSPC)
			return zdtm_fail("write to %s (fd %d) did not fail with ENOSPC", d->path,
					 d->fd);
		if (read(d->fd, buf, 16) != 16 || buf[0] || buf[15])
			return zdtm_fail("read from %s (fd %d) did not give zeros", d->path, d->fd);
		break;
	}
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NDEVS; i++) {
		if (devs[i].fd < 0)
			return zdtm_fail("%s was never opened", devs[i].path);
		if (check_one(&devs[i]))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
