/* O_PATH descriptors (to a file, a directory and a symlink itself) survive C/R: F_GETFL,
 * the path, fstat, and O_PATH behaviour (no I/O, but usable as *at() anchors). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define DIR "opath.d"
#define FILE_IN_DIR "inner"
#define NAME "opath.dat"
#define LINK "opath.lnk"

struct pfd {
	const char *name;
	int flags;
	mode_t type;		/* S_IFREG, S_IFDIR, S_IFLNK */
	int fd;
	int fl;
	char path[PATH_MAX + 64];
};

static struct pfd fds[] = {
	{ .name = NAME, .flags = O_PATH, .type = S_IFREG, .fd = -1 },
	{ .name = DIR, .flags = O_PATH | O_DIRECTORY, .type = S_IFDIR, .fd = -1 },
	{ .name = LINK, .flags = O_PATH | O_NOFOLLOW, .type = S_IFLNK, .fd = -1 },
	{ .name = NAME, .flags = O_PATH | O_CLOEXEC, .type = S_IFREG, .fd = -1 },
};
#define NFDS (int)(sizeof(fds) / sizeof(fds[0]))

static int setup(void)
{
	char cwd[PATH_MAX];
	int fd;

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	fd = open(NAME, O_CREAT | O_TRUNC | O_WRONLY, 0640);
	if (fd < 0 || write(fd, "opath", 5) != 5 || close(fd))
		return zdtm_err("create %s", NAME);
	if (mkdir(DIR, 0750) || symlink(NAME, LINK))
		return zdtm_err("mkdir %s / symlink %s", DIR, LINK);
	fd = open(DIR "/" FILE_IN_DIR, O_CREAT | O_WRONLY, 0600);
	if (fd < 0 || close(fd))
		return zdtm_err("create %s", DIR "/" FILE_IN_DIR);
	for (int i = 0; i < NFDS; i++) {
		struct pfd *p = &fds[i];

		snprintf(p->path, sizeof(p->path), "%s/%s", cwd, p->name);
		p->fd = open(p->name, p->flags);
		if (p->fd < 0)
			return zdtm_err("open %s with %#o", p->name, p->flags);
		p->fl = fcntl(p->fd, F_GETFL);
		if (!(p->fl & O_PATH))
			return zdtm_fail("%s: F_GETFL %#o lacks O_PATH", p->name, p->fl);
	}
	return 0;
}

static int check_one(const struct pfd *p)
{
	char link[64], target[PATH_MAX + 64], c;
	struct stat fst, pst;
	ssize_t n;
	int fl, fdfl, tmp;

	fl = fcntl(p->fd, F_GETFL);
	if (fl < 0)
		return zdtm_err("O_PATH fd %d (%s) is not open", p->fd, p->name);
	if (fl != p->fl)
		return zdtm_fail("fd %d (%s): F_GETFL %#o, expected %#o", p->fd, p->name, fl, p->fl);
	fdfl = fcntl(p->fd, F_GETFD);
	if (fdfl != ((p->flags & O_CLOEXEC) ? FD_CLOEXEC : 0))
		return zdtm_fail("fd %d (%s): F_GETFD %d", p->fd, p->name, fdfl);

	snprintf(link, sizeof(link), "/proc/self/fd/%d", p->fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, p->path))
		return zdtm_fail("fd %d points to '%s', expected '%s'", p->fd, target, p->path);

	if (fstat(p->fd, &fst))
		return zdtm_err("fstat on O_PATH fd %d (%s)", p->fd, p->name);
	if (fstatat(AT_FDCWD, p->name, &pst, AT_SYMLINK_NOFOLLOW))
		return zdtm_err("lstat %s", p->name);
	if ((fst.st_mode & S_IFMT) != p->type)
		return zdtm_fail("fd %d (%s): file type %#o, expected %#o", p->fd, p->name,
				 fst.st_mode & S_IFMT, p->type);
	if (fst.st_ino != pst.st_ino || fst.st_dev != pst.st_dev)
		return zdtm_fail("fd %d is inode %lu, %s is inode %lu", p->fd,
				 (unsigned long)fst.st_ino, p->name, (unsigned long)pst.st_ino);

	/* Still an O_PATH fd: no I/O on it. */
	if (read(p->fd, &c, 1) != -1 || errno != EBADF)
		return zdtm_fail("fd %d (%s) can be read: not O_PATH any more", p->fd, p->name);

	switch (p->type) {
	case S_IFDIR:	/* an anchor for *at() calls */
		tmp = openat(p->fd, FILE_IN_DIR, O_RDONLY);
		if (tmp < 0)
			return zdtm_err("openat(fd %d, %s)", p->fd, FILE_IN_DIR);
		close(tmp);
		break;
	case S_IFLNK:	/* the link itself: readlinkat(fd, "") reads its target */
		n = readlinkat(p->fd, "", target, sizeof(target) - 1);
		if (n < 0)
			return zdtm_err("readlinkat(fd %d, \"\")", p->fd);
		target[n] = '\0';
		if (strcmp(target, NAME))
			return zdtm_fail("symlink fd %d reads '%s', expected '%s'", p->fd, target, NAME);
		break;
	case S_IFREG:	/* reopen through /proc/self/fd */
		tmp = open(link, O_RDONLY);
		if (tmp < 0)
			return zdtm_err("reopen %s", link);
		n = read(tmp, target, 5);
		close(tmp);
		if (n != 5 || memcmp(target, "opath", 5))
			return zdtm_fail("reopened fd %d reads %zd bytes, not 'opath'", p->fd, n);
		break;
	}
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NFDS; i++) {
		if (fds[i].fd < 0)
			return zdtm_fail("O_PATH fd for %s was never opened", fds[i].name);
		if (check_one(&fds[i]))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
