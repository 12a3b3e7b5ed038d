/* A named pipe open at both ends (and once O_RDWR) with data queued survives C/R: the fds
 * are the fifo at its path, flags are kept, the data come out in order, and all three fds
 * are still one pipe. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "fifo.p"
#define SEED 0xf1f0
#define LEN 30000

static int rfd = -1, wfd = -1, rwfd = -1;
static int rfl, wfl, rwfl;
static char path[PATH_MAX + 64];

static int setup(void)
{
	static char buf[LEN];
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(path, sizeof(path), "%s/%s", cwd, NAME);
	if (mkfifo(NAME, 0600))
		return zdtm_err("mkfifo %s", NAME);
	rfd = open(NAME, O_RDONLY | O_NONBLOCK);
	wfd = open(NAME, O_WRONLY);
	rwfd = open(NAME, O_RDWR);
	if (rfd < 0 || wfd < 0 || rwfd < 0)
		return zdtm_err("open %s", NAME);
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(wfd, buf, 10000) != 10000 ||
	    zdtm_write_all(rwfd, buf + 10000, LEN - 10000) != LEN - 10000)
		return zdtm_err("write %d bytes into the fifo", LEN);
	rfl = fcntl(rfd, F_GETFL);
	wfl = fcntl(wfd, F_GETFL);
	rwfl = fcntl(rwfd, F_GETFL);
	return 0;
}

static int check_fd(int fd, int fl, const struct stat *pst)
{
	char link[64], target[PATH_MAX + 64];
	struct stat st;
	ssize_t n;

	if (fstat(fd, &st))
		return zdtm_err("fifo fd %d is not open", fd);
	if (!S_ISFIFO(st.st_mode))
		return zdtm_fail("fd %d: mode %#o, not a fifo", fd, st.st_mode);
	if (st.st_ino != pst->st_ino || st.st_dev != pst->st_dev)
		return zdtm_fail("fd %d is inode %lu, %s is inode %lu", fd, (unsigned long)st.st_ino,
				 NAME, (unsigned long)pst->st_ino);
	if (fcntl(fd, F_GETFL) != fl)
		return zdtm_fail("fd %d: F_GETFL %#o, expected %#o", fd, fcntl(fd, F_GETFL), fl);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, path))
		return zdtm_fail("fd %d points to '%s', expected '%s'", fd, target, path);
	return 0;
}

static int check(void)
{
	static char buf[LEN + 1];
	struct pollfd pfd;
	struct stat pst;
	ssize_t n, bad;

	if (rfd < 0 || wfd < 0 || rwfd < 0)
		return zdtm_fail("the fifo was never opened");
	if (stat(NAME, &pst))
		return zdtm_err("stat %s", NAME);
	if (!S_ISFIFO(pst.st_mode))
		return zdtm_fail("%s is no longer a fifo (mode %#o)", NAME, pst.st_mode);
	if (check_fd(rfd, rfl, &pst) || check_fd(wfd, wfl, &pst) || check_fd(rwfd, rwfl, &pst))
		return -1;

	n = zdtm_read_all(rfd, buf, LEN + 1);	/* O_NONBLOCK: stops at EAGAIN */
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != LEN)
		return zdtm_fail("fifo holds %zd bytes, expected %d", n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("fifo byte %zd differs", bad);

	/* The three fds are one pipe: what goes in at one comes out at the others. */
	if (write(wfd, "w", 1) != 1 || write(rwfd, "x", 1) != 1)
		return zdtm_err("write to the fifo");
	pfd = (struct pollfd){ .fd = rwfd, .events = POLLIN };
	if (poll(&pfd, 1, 0) != 1)
		return zdtm_fail("O_RDWR fd %d does not see data written through fd %d", rwfd, wfd);
	if (read(rwfd, buf, 1) != 1 || buf[0] != 'w')
		return zdtm_fail("O_RDWR fd %d did not read the byte written through fd %d", rwfd, wfd);
	if (read(rfd, buf, 2) != 1 || buf[0] != 'x')
		return zdtm_fail("fd %d did not read the byte written through fd %d", rfd, rwfd);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
