/* Pipes resized with F_SETPIPE_SZ (one large, one a single page) survive C/R with their
 * size on both ends, their data, and their real capacity once drained. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "zdtm.h"

#define NPIPES 2
#define CHUNK 4096

struct spipe {
	long want;	/* size asked for */
	long queued;	/* bytes written at setup */
	uint64_t seed;
	int fds[2];
	long size;	/* F_GETPIPE_SZ at setup */
};

static struct spipe pipes[NPIPES] = {
	{ .seed = 0x5123, .fds = { -1, -1 } },
	{ .want = 4096, .queued = 4096, .seed = 0x5124, .fds = { -1, -1 } },
};
static char *buf;

/* Write the stream from pos until the non-blocking pipe refuses. */
static long fill(int fd, uint64_t seed, uint64_t pos, long max)
{
	long done = 0;
	ssize_t n;

	for (size_t len = CHUNK; len; len = len == CHUNK ? 1 : 0) {
		for (;;) {
			zdtm_fill(buf, len, seed, pos + done);
			n = write(fd, buf, len);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0)
				return -1;
			done += n;
			if (done > max)
				return done;
		}
	}
	return done;
}

static int setup(void)
{
	long big = zdtm_opt_long("size", 1 << 20);

	pipes[0].want = big;
	pipes[0].queued = big * 2 / 3 + 1;
	buf = malloc(big + 1);
	if (!buf)
		return zdtm_fail("malloc %ld", big);
	for (int i = 0; i < NPIPES; i++) {
		struct spipe *p = &pipes[i];

		if (pipe(p->fds))
			return zdtm_err("pipe");
		if (fcntl(p->fds[1], F_SETPIPE_SZ, p->want) < 0)
			return zdtm_err("F_SETPIPE_SZ %ld", p->want);
		p->size = fcntl(p->fds[0], F_GETPIPE_SZ);
		if (p->size != p->want)
			return zdtm_fail("F_SETPIPE_SZ %ld gave %ld", p->want, p->size);
		zdtm_fill(buf, p->queued, p->seed, 0);
		if (zdtm_write_all(p->fds[1], buf, p->queued) != p->queued)
			return zdtm_err("write %ld bytes", p->queued);
	}
	return 0;
}

static int check_pipe(struct spipe *p)
{
	long sz, n;
	ssize_t bad;

	for (int e = 0; e < 2; e++) {
		sz = fcntl(p->fds[e], F_GETPIPE_SZ);
		if (sz != p->size)
			return zdtm_fail("pipe %d/%d: F_GETPIPE_SZ on fd %d is %ld, expected %ld",
					 p->fds[0], p->fds[1], p->fds[e], sz, p->size);
		if (fcntl(p->fds[e], F_GETFL) != (e ? O_WRONLY : O_RDONLY))
			return zdtm_fail("fd %d: F_GETFL %#o", p->fds[e], fcntl(p->fds[e], F_GETFL));
		if (fcntl(p->fds[e], F_SETFL, O_NONBLOCK))
			return zdtm_err("O_NONBLOCK on fd %d", p->fds[e]);
	}
	n = zdtm_read_all(p->fds[0], buf, p->size + 1);
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != p->queued)
		return zdtm_fail("pipe %d (size %ld) holds %ld bytes, expected %ld", p->fds[0],
				 p->size, n, p->queued);
	bad = zdtm_verify(buf, n, p->seed, 0);
	if (bad >= 0)
		return zdtm_fail("pipe %d: byte %zd differs", p->fds[0], bad);
	n = fill(p->fds[1], p->seed, p->queued, p->size);
	if (n != p->size)
		return zdtm_fail("drained pipe %d/%d takes %ld bytes, its size is %ld", p->fds[0],
				 p->fds[1], n, p->size);
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NPIPES; i++) {
		if (pipes[i].fds[0] < 0 || pipes[i].fds[1] < 0 || !buf)
			return zdtm_fail("pipe %d was never created", i);
		if (check_pipe(&pipes[i]))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
