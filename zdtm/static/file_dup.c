/* fds made with dup, dup2, dup3 and F_DUPFD_CLOEXEC share one open file description with
 * the original after C/R (kcmp KCMP_FILE equal; offset and status flags move together),
 * while a second open() of the same file stays a description of its own. */
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "dup.dat"
#define NDUP 5
#define POS 1000
#define OTHER_POS 300

/* fds[0] is the original; the others are its duplicates */
static int fds[NDUP] = { -1, -1, -1, -1, -1 };
static const int want_fd[NDUP] = { 0, 0, 0, FD_CLOEXEC, FD_CLOEXEC };
static const char *how[NDUP] = { "open", "dup", "dup2", "F_DUPFD_CLOEXEC", "dup3" };
static int other = -1;	/* a separate open of the same file */
static int fl, other_fl;

static long kcmp_file(int a, int b)
{
	return syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b);
}

static int setup(void)
{
	static char buf[8192];

	fds[0] = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0644);
	other = open(NAME, O_RDONLY);
	if (fds[0] < 0 || other < 0)
		return zdtm_err("open %s", NAME);
	if (zdtm_write_all(fds[0], buf, sizeof(buf)) != sizeof(buf))
		return zdtm_err("write");
	fds[1] = dup(fds[0]);
	fds[2] = dup2(fds[0], 77);
	fds[3] = fcntl(fds[0], F_DUPFD_CLOEXEC, 90);
	fds[4] = dup3(fds[0], 95, O_CLOEXEC);
	for (int i = 1; i < NDUP; i++)
		if (fds[i] < 0)
			return zdtm_err("%s", how[i]);
	/* Offset and status flags set through one fd belong to the description. */
	if (lseek(fds[2], POS, SEEK_SET) != POS || fcntl(fds[3], F_SETFL, O_APPEND | O_NOATIME))
		return zdtm_err("lseek/F_SETFL");
	if (lseek(other, OTHER_POS, SEEK_SET) != OTHER_POS)
		return zdtm_err("lseek");
	fl = fcntl(fds[0], F_GETFL);
	other_fl = fcntl(other, F_GETFL);
	if (!(fl & O_APPEND) || (other_fl & O_APPEND))
		return zdtm_fail("F_SETFL did not act on the description: %#o/%#o", fl, other_fl);
	if (kcmp_file(fds[0], fds[1]))
		return zdtm_err("kcmp(KCMP_FILE) on a dup does not say equal");
	return 0;
}

static int check_offsets(off_t want, const char *when)
{
	for (int i = 0; i < NDUP; i++) {
		off_t pos = lseek(fds[i], 0, SEEK_CUR);

		if (pos != want)
			return zdtm_fail("fd %d (%s): offset %lld %s, expected %lld", fds[i], how[i],
					 (long long)pos, when, (long long)want);
	}
	return 0;
}

static int check(void)
{
	off_t pos;
	long r;

	if (fds[0] < 0 || other < 0)
		return zdtm_fail("the file was never opened");
	for (int i = 0; i < NDUP; i++) {
		int fdfl = fcntl(fds[i], F_GETFD);

		if (fdfl < 0)
			return zdtm_err("fd %d (%s) is not open", fds[i], how[i]);
		if (fdfl != want_fd[i])
			return zdtm_fail("fd %d (%s): F_GETFD %d, expected %d", fds[i], how[i], fdfl,
					 want_fd[i]);
		if (fcntl(fds[i], F_GETFL) != fl)
			return zdtm_fail("fd %d (%s): F_GETFL %#o, expected %#o", fds[i], how[i],
					 fcntl(fds[i], F_GETFL), fl);
		r = kcmp_file(fds[0], fds[i]);
		if (r)
			return zdtm_fail("kcmp(KCMP_FILE, %d, %d) = %ld: %s is a separate description",
					 fds[0], fds[i], r, how[i]);
	}
	r = kcmp_file(fds[0], other);
	if (r <= 0)
		return zdtm_fail("kcmp(KCMP_FILE, %d, %d) = %ld: the second open shares the "
				 "description", fds[0], other, r);
	if (fcntl(other, F_GETFL) != other_fl)
		return zdtm_fail("fd %d (second open): F_GETFL %#o, expected %#o", other,
				 fcntl(other, F_GETFL), other_fl);
	if (check_offsets(POS, "after C/R"))
		return -1;

	/* Move the offset through each duplicate in turn: all must follow. */
	for (int i = NDUP - 1; i >= 0; i--) {
		if (lseek(fds[i], 2000 + i, SEEK_SET) != 2000 + i)
			return zdtm_err("lseek fd %d", fds[i]);
		if (check_offsets(2000 + i, "after a seek through another dup"))
			return -1;
	}
	/* A flag change through one shows on all, not on the second open. */
	if (fcntl(fds[4], F_SETFL, fl & ~O_APPEND))
		return zdtm_err("F_SETFL");
	for (int i = 0; i < NDUP; i++)
		if (fcntl(fds[i], F_GETFL) & O_APPEND)
			return zdtm_fail("fd %d (%s) kept O_APPEND cleared through fd %d", fds[i],
					 how[i], fds[4]);
	pos = lseek(other, 0, SEEK_CUR);
	if (pos != OTHER_POS)
		return zdtm_fail("second open fd %d: offset %lld, expected %d", other, (long long)pos,
				 OTHER_POS);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
