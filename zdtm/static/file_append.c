/* Files open with O_APPEND keep the flag across C/R: a write at check lands at the end of
 * the file whatever the fd's offset, and leaves the offset at the new end. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "append.dat"
#define SEED 0xa99e
#define LEN 12345	/* written at setup */
#define ADD 777		/* appended by each fd at check */
#define POS 100		/* offset the write-only fd was moved to */

static int wfd = -1;	/* O_WRONLY | O_APPEND, offset moved back to POS */
static int rwfd = -1;	/* O_RDWR | O_APPEND, offset at the end */
static int wfl, rwfl;

static int setup(void)
{
	static char buf[LEN];

	wfd = open(NAME, O_CREAT | O_TRUNC | O_WRONLY | O_APPEND, 0644);
	rwfd = open(NAME, O_RDWR | O_APPEND);
	if (wfd < 0 || rwfd < 0)
		return zdtm_err("open %s", NAME);
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(wfd, buf, 5000) != 5000 ||
	    zdtm_write_all(rwfd, buf + 5000, LEN - 5000) != LEN - 5000)
		return zdtm_err("write %s", NAME);
	if (lseek(wfd, POS, SEEK_SET) != POS)
		return zdtm_err("lseek");
	wfl = fcntl(wfd, F_GETFL);
	rwfl = fcntl(rwfd, F_GETFL);
	if (!(wfl & O_APPEND) || !(rwfl & O_APPEND))
		return zdtm_fail("O_APPEND missing right after open: %#o %#o", wfl, rwfl);
	return 0;
}

static int check_pos(int fd, off_t want, const char *when)
{
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (pos != want)
		return zdtm_fail("fd %d: offset %lld %s, expected %lld", fd, (long long)pos, when,
				 (long long)want);
	return 0;
}

static int check(void)
{
	static char buf[LEN + 2 * ADD + 1];
	struct stat st;
	ssize_t n, bad;

	if (wfd < 0 || rwfd < 0)
		return zdtm_fail("append fds were never opened");
	if (fcntl(wfd, F_GETFL) != wfl || fcntl(rwfd, F_GETFL) != rwfl)
		return zdtm_fail("F_GETFL %#o/%#o, expected %#o/%#o", fcntl(wfd, F_GETFL),
				 fcntl(rwfd, F_GETFL), wfl, rwfl);
	if (check_pos(wfd, POS, "before the write") || check_pos(rwfd, LEN, "before the write"))
		return -1;

	/* Each write must go to the end, not to the fd's offset. */
	zdtm_fill(buf, 2 * ADD, SEED, LEN);
	if (write(wfd, buf, ADD) != ADD)
		return zdtm_err("write %d bytes to fd %d", ADD, wfd);
	if (check_pos(wfd, LEN + ADD, "after appending"))
		return -1;
	if (write(rwfd, buf + ADD, ADD) != ADD)
		return zdtm_err("write %d bytes to fd %d", ADD, rwfd);
	if (check_pos(rwfd, LEN + 2 * ADD, "after appending"))
		return -1;

	if (fstat(rwfd, &st))
		return zdtm_err("fstat");
	if (st.st_size != LEN + 2 * ADD)
		return zdtm_fail("file is %lld bytes after two appends, expected %d",
				 (long long)st.st_size, LEN + 2 * ADD);
	n = pread(rwfd, buf, sizeof(buf), 0);
	if (n != LEN + 2 * ADD)
		return zdtm_fail("pread gave %zd bytes, expected %d", n, LEN + 2 * ADD);
	bad = zdtm_verify(buf, n, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("byte %zd of %zd differs (an append overwrote data?)", bad, n);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
