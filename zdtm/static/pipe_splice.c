/* Data moved into a pipe with splice (from a file, at its offset and at an explicit one)
 * and vmsplice (from memory), then duplicated into a second pipe with tee, survive C/R:
 * both pipes hold the same bytes in order, and the file offset moved by splice is kept. */
#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "splice.dat"
#define FSEED 0x5911	/* file contents: byte i is stream position i */
#define VSEED 0x5912	/* vmspliced memory */
#define FLEN 40000
#define POS0 1000	/* file offset before the first splice */
#define S1 8000		/* spliced at the file offset: [POS0, POS0 + S1) */
#define VLEN 6000	/* vmspliced */
#define S2OFF 20000	/* spliced at an explicit offset: [S2OFF, S2OFF + S2) */
#define S2 3000
#define TOTAL (S1 + VLEN + S2)

static int fd = -1;
static int p1[2] = { -1, -1 }, p2[2] = { -1, -1 };
static char vbuf[VLEN] __attribute__((aligned(4096)));	/* must not change: pipe pages */

static int setup(void)
{
	static char buf[FLEN];
	struct iovec iov = { vbuf, VLEN };
	loff_t off = S2OFF;
	ssize_t n, done;

	fd = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0644);
	zdtm_fill(buf, FLEN, FSEED, 0);
	if (fd < 0 || zdtm_write_all(fd, buf, FLEN) != FLEN || lseek(fd, POS0, SEEK_SET) != POS0)
		return zdtm_err("create %s", NAME);
	if (pipe(p1) || pipe(p2))
		return zdtm_err("pipe");
	for (done = 0; done < S1; done += n) {
		n = splice(fd, NULL, p1[1], NULL, S1 - done, 0);
		if (n <= 0)
			return zdtm_err("splice from %s at its offset", NAME);
	}
	zdtm_fill(vbuf, VLEN, VSEED, 0);
	for (done = 0; done < VLEN; done += n) {
		iov.iov_base = vbuf + done;
		iov.iov_len = VLEN - done;
		n = vmsplice(p1[1], &iov, 1, 0);
		if (n <= 0)
			return zdtm_err("vmsplice");
	}
	for (done = 0; done < S2; done += n) {
		n = splice(fd, &off, p1[1], NULL, S2 - done, 0);
		if (n <= 0)
			return zdtm_err("splice from %s at offset %lld", NAME, (long long)off);
	}
	n = tee(p1[0], p2[1], INT_MAX, SPLICE_F_NONBLOCK);
	if (n != TOTAL)
		return zdtm_fail("tee copied %zd bytes, expected %d", n, TOTAL);
	return 0;
}

/* The bytes both pipes must hold. */
static ssize_t verify(const char *buf)
{
	ssize_t bad;

	if ((bad = zdtm_verify(buf, S1, FSEED, POS0)) >= 0)
		return bad;
	if ((bad = zdtm_verify(buf + S1, VLEN, VSEED, 0)) >= 0)
		return S1 + bad;
	if ((bad = zdtm_verify(buf + S1 + VLEN, S2, FSEED, S2OFF)) >= 0)
		return S1 + VLEN + bad;
	return -1;
}

static int drain(int rfd, const char *which)
{
	static char buf[TOTAL + 1];
	ssize_t n, bad;

	if (fcntl(rfd, F_SETFL, O_NONBLOCK))
		return zdtm_err("%s: read end %d is not open", which, rfd);
	n = zdtm_read_all(rfd, buf, TOTAL + 1);
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != TOTAL)
		return zdtm_fail("%s holds %zd bytes, expected %d", which, n, TOTAL);
	bad = verify(buf);
	if (bad >= 0)
		return zdtm_fail("%s: byte %zd of %d differs", which, bad, TOTAL);
	return 0;
}

static int check(void)
{
	char buf[100];
	off_t pos;
	ssize_t n;

	if (fd < 0 || p1[0] < 0 || p2[0] < 0)
		return zdtm_fail("the file and pipes were never set up");
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != POS0 + S1)
		return zdtm_fail("file offset %lld, expected %d (moved by splice)", (long long)pos,
				 POS0 + S1);
	if (drain(p2[0], "the tee'd pipe") || drain(p1[0], "the spliced pipe"))
		return -1;
	/* The pipe and the file still splice: the next bytes come from the kept offset. */
	n = splice(fd, NULL, p1[1], NULL, sizeof(buf), 0);
	if (n != sizeof(buf))
		return zdtm_err("splice after C/R gave %zd", n);
	if (read(p1[0], buf, sizeof(buf)) != sizeof(buf) ||
	    zdtm_verify(buf, sizeof(buf), FSEED, POS0 + S1) >= 0)
		return zdtm_fail("splice after C/R did not bring file bytes from offset %d",
				 POS0 + S1);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
