/* A pipe filled to its full capacity survives C/R: still exactly full (a non-blocking
 * write gets EAGAIN), the same byte count and data come out, and once drained it takes
 * exactly its capacity again. */
#include <fcntl.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0xf011
#define CHUNK 4096
#define MAXCAP (1 << 20)

static int fds[2] = { -1, -1 };
static long cap;		/* F_GETPIPE_SZ at setup */
static ssize_t total;		/* bytes written until EAGAIN */
static int rfl, wfl;

/* Write the stream from pos until the pipe refuses: CHUNK-sized writes, then single bytes. */
static ssize_t fill(int fd, uint64_t pos)
{
	static char buf[CHUNK];
	ssize_t done = 0, n;

	for (size_t len = CHUNK; len; len = len == CHUNK ? 1 : 0) {
		for (;;) {
			zdtm_fill(buf, len, SEED, pos + done);
			n = write(fd, buf, len);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0)
				return -1;
			done += n;
			if (done > MAXCAP)
				return errno = EFBIG, -1;
		}
	}
	return done;
}

static int setup(void)
{
	if (pipe(fds))
		return zdtm_err("pipe");
	if (fcntl(fds[1], F_SETFL, O_NONBLOCK) || fcntl(fds[0], F_SETFL, O_NONBLOCK))
		return zdtm_err("O_NONBLOCK");
	cap = fcntl(fds[1], F_GETPIPE_SZ);
	total = fill(fds[1], 0);
	if (total < 0)
		return zdtm_err("fill the pipe");
	if (total != cap)
		return zdtm_fail("the pipe took %zd bytes, its size is %ld", total, cap);
	rfl = fcntl(fds[0], F_GETFL);
	wfl = fcntl(fds[1], F_GETFL);
	zdtm_msg("pipe %d/%d holds %zd bytes", fds[0], fds[1], total);
	return 0;
}

static int check(void)
{
	static char buf[MAXCAP + 1];
	ssize_t n, bad;
	long sz;

	if (fds[0] < 0 || fds[1] < 0 || total <= 0)
		return zdtm_fail("the pipe was never filled");
	if (fcntl(fds[0], F_GETFL) != rfl || fcntl(fds[1], F_GETFL) != wfl)
		return zdtm_fail("F_GETFL %#o/%#o, expected %#o/%#o", fcntl(fds[0], F_GETFL),
				 fcntl(fds[1], F_GETFL), rfl, wfl);
	sz = fcntl(fds[1], F_GETPIPE_SZ);
	if (sz != cap)
		return zdtm_fail("F_GETPIPE_SZ %ld, expected %ld", sz, cap);
	n = write(fds[1], "x", 1);
	if (n != -1 || errno != EAGAIN)
		return zdtm_fail("the full pipe took another byte (write gave %zd, errno %d)", n,
				 errno);

	n = zdtm_read_all(fds[0], buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != total)
		return zdtm_fail("pipe holds %zd bytes, expected %zd", n, total);
	bad = zdtm_verify(buf, n, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("pipe byte %zd of %zd differs", bad, n);

	n = fill(fds[1], total);
	if (n != cap)
		return zdtm_fail("the drained pipe takes %zd bytes, expected %ld", n, cap);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
