/* Pipes with one end closed survive C/R as such: a pipe whose read end is gone gives EPIPE
 * to the writer; a pipe whose write end is gone gives its queued data, then EOF; an empty
 * one gives EOF at once. (A restore that leaves the other end open somewhere fails.) */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0xc10e
#define LEN 20000

static int wonly = -1;	/* write end; read end closed */
static int ronly = -1;	/* read end; write end closed, LEN bytes queued */
static int rempty = -1;	/* read end; write end closed, nothing queued */

static int setup(void)
{
	static char buf[LEN];
	int p[3][2];

	for (int i = 0; i < 3; i++)
		if (pipe(p[i]))
			return zdtm_err("pipe");
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(p[1][1], buf, LEN) != LEN)
		return zdtm_err("write");
	close(p[0][0]);
	close(p[1][1]);
	close(p[2][1]);
	wonly = p[0][1];
	ronly = p[1][0];
	rempty = p[2][0];
	return 0;
}

static int is_pipe(int fd, int fl)
{
	struct stat st;

	if (fstat(fd, &st))
		return zdtm_err("fd %d is not open", fd);
	if (!S_ISFIFO(st.st_mode))
		return zdtm_fail("fd %d: mode %#o, not a pipe", fd, st.st_mode);
	if (fcntl(fd, F_GETFL) != fl)
		return zdtm_fail("fd %d: F_GETFL %#o, expected %#o", fd, fcntl(fd, F_GETFL), fl);
	return 0;
}

static int check(void)
{
	static char buf[LEN + 1];
	ssize_t n, bad;

	if (wonly < 0 || ronly < 0 || rempty < 0)
		return zdtm_fail("the pipes were never set up");
	if (is_pipe(wonly, O_WRONLY) || is_pipe(ronly, O_RDONLY) || is_pipe(rempty, O_RDONLY))
		return -1;

	/* Empty, no writer: EOF at once (set O_NONBLOCK so a stray writer gives EAGAIN
	 * instead of a hang). */
	if (fcntl(rempty, F_SETFL, O_NONBLOCK) || fcntl(ronly, F_SETFL, O_NONBLOCK))
		return zdtm_err("O_NONBLOCK");
	n = read(rempty, buf, 1);
	if (n != 0)
		return zdtm_fail("empty pipe %d without a writer: read gave %zd (errno %d), "
				 "expected EOF", rempty, n, errno);

	/* Data, then EOF. */
	n = zdtm_read_all(ronly, buf, LEN + 1);
	if (n < 0 && errno == EAGAIN)
		return zdtm_fail("pipe %d: EAGAIN, so some task holds its write end", ronly);
	if (n != LEN)
		return zdtm_fail("pipe %d gave %zd bytes before EOF, expected %d", ronly, n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("pipe %d: byte %zd differs", ronly, bad);
	n = read(ronly, buf, 1);
	if (n != 0)
		return zdtm_fail("pipe %d: read after the data gave %zd (errno %d), expected EOF",
				 ronly, n, errno);

	/* No reader: EPIPE (with SIGPIPE ignored, set here). */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return zdtm_err("ignore SIGPIPE");
	n = write(wonly, "x", 1);
	if (n != -1 || errno != EPIPE)
		return zdtm_fail("pipe %d without a reader: write gave %zd (errno %d), expected "
				 "EPIPE", wonly, n, errno);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
