/* A pipe with data queued in it survives C/R: both ends open, bytes in order. */
#include <fcntl.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x9a1e
#define LEN 40000

static int fds[2] = { -1, -1 };

static int setup(void)
{
	static char buf[LEN];

	if (pipe(fds))
		return zdtm_err("pipe");
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(fds[1], buf, LEN) != LEN)
		return zdtm_err("write %d bytes into the pipe", LEN);
	return 0;
}

static int check(void)
{
	static char buf[LEN + 1];
	ssize_t n, bad;

	if (fcntl(fds[0], F_GETFD) < 0 || fcntl(fds[1], F_GETFD) < 0)
		return zdtm_fail("pipe ends %d/%d are not open", fds[0], fds[1]);
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK))
		return zdtm_err("set O_NONBLOCK on fd %d", fds[0]);
	n = zdtm_read_all(fds[0], buf, LEN + 1);
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != LEN)
		return zdtm_fail("pipe %d holds %zd bytes, expected %d", fds[0], n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("pipe %d: byte %zd differs", fds[0], bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
