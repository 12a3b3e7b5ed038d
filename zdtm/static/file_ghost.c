/* A file unlinked while open ("ghost") survives C/R: its data, size, mode and offsets, the
 * "(deleted)" path, nlink 0, and two separately opened fds still share one inode. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "ghost.dat"
#define SEED 0x6405
#define LEN 100000
#define MODE 0640
#define POS1 4321
#define POS2 77777

static int fd1 = -1, fd2 = -1;	/* O_RDWR and O_RDONLY, two open file descriptions */
static char gone[PATH_MAX + 64];	/* the path the fds must show */

static int setup(void)
{
	static char buf[LEN];
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(gone, sizeof(gone), "%s/%s (deleted)", cwd, NAME);
	fd1 = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0600);
	fd2 = open(NAME, O_RDONLY);
	if (fd1 < 0 || fd2 < 0)
		return zdtm_err("open %s", NAME);
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(fd1, buf, LEN) != LEN)
		return zdtm_err("write");
	if (fchmod(fd1, MODE) || unlink(NAME))
		return zdtm_err("fchmod/unlink %s", NAME);
	if (lseek(fd1, POS1, SEEK_SET) != POS1 || lseek(fd2, POS2, SEEK_SET) != POS2)
		return zdtm_err("lseek");
	return 0;
}

static int check_fd(int fd, off_t want_pos, struct stat *st)
{
	char link[64], target[PATH_MAX + 64];
	off_t pos;
	ssize_t n;

	if (fstat(fd, st))
		return zdtm_err("ghost fd %d is not open", fd);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, gone))
		return zdtm_fail("fd %d points to '%s', expected '%s'", fd, target, gone);
	if (!S_ISREG(st->st_mode) || (st->st_mode & 07777) != MODE)
		return zdtm_fail("fd %d: mode %#o, expected a regular file with %#o", fd,
				 st->st_mode, MODE);
	if (st->st_nlink != 0)
		return zdtm_fail("fd %d: nlink %lu, expected 0 (unlinked)", fd,
				 (unsigned long)st->st_nlink);
	if (st->st_size != LEN)
		return zdtm_fail("fd %d: size %lld, expected %d", fd, (long long)st->st_size, LEN);
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != want_pos)
		return zdtm_fail("fd %d: offset %lld, expected %lld", fd, (long long)pos,
				 (long long)want_pos);
	return 0;
}

static int check(void)
{
	static char buf[LEN + 1];
	struct stat st1, st2, pst;
	ssize_t n, bad;
	int fl1, fl2;

	if (fd1 < 0 || fd2 < 0)
		return zdtm_fail("the ghost file was never opened");
	if (check_fd(fd1, POS1, &st1) || check_fd(fd2, POS2, &st2))
		return -1;
	if (st1.st_ino != st2.st_ino || st1.st_dev != st2.st_dev)
		return zdtm_fail("fds %d and %d are different inodes (%lu, %lu): one ghost became two",
				 fd1, fd2, (unsigned long)st1.st_ino, (unsigned long)st2.st_ino);
	fl1 = fcntl(fd1, F_GETFL) & O_ACCMODE;
	fl2 = fcntl(fd2, F_GETFL) & O_ACCMODE;
	if (fl1 != O_RDWR || fl2 != O_RDONLY)
		return zdtm_fail("access modes %d/%d, expected O_RDWR/O_RDONLY", fl1, fl2);
	if (stat(NAME, &pst) == 0)
		return zdtm_fail("%s exists again (inode %lu): the ghost was left linked", NAME,
				 (unsigned long)pst.st_ino);

	n = pread(fd2, buf, LEN + 1, 0);
	if (n != LEN)
		return zdtm_fail("pread gave %zd bytes, expected %d", n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("ghost byte %zd differs", bad);

	/* A write through one fd is seen through the other: same inode, not a copy. */
	if (pwrite(fd1, "GHOST", 5, 10) != 5)
		return zdtm_err("pwrite to fd %d", fd1);
	if (pread(fd2, buf, 5, 10) != 5 || memcmp(buf, "GHOST", 5))
		return zdtm_fail("a write through fd %d is not seen through fd %d", fd1, fd2);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
