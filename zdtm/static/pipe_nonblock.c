/* O_NONBLOCK set on one end of a pipe only (each end in turn, and cleared again on a
 * pipe2(O_NONBLOCK) pipe) survives C/R: F_GETFL exact on all six ends, and each end
 * behaves as its flag says (EAGAIN at once, or a read that blocks until a signal). */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x0b10
#define NPIPES 3

struct npipe {
	const char *what;
	int rfl, wfl;		/* F_GETFL meant for each end */
	int queued;
	int fds[2];
};

static struct npipe pipes[NPIPES] = {
	{ "read end O_NONBLOCK", O_RDONLY | O_NONBLOCK, O_WRONLY, 1000, { -1, -1 } },
	{ "write end O_NONBLOCK", O_RDONLY, O_WRONLY | O_NONBLOCK, 500, { -1, -1 } },
	{ "pipe2(O_NONBLOCK), cleared on the read end", O_RDONLY, O_WRONLY | O_NONBLOCK, 0,
	  { -1, -1 } },
};

static void on_alarm(int sig)
{
	(void)sig;
}

/* A read from an empty pipe: must block (interrupted by a timer after 50 ms: EINTR) if
 * blocking, or fail with EAGAIN at once if not. */
static int empty_read(struct npipe *p)
{
	struct sigaction sa = { .sa_handler = on_alarm }, old;
	struct itimerval it = { .it_value = { 0, 50000 } }, off = { { 0, 0 }, { 0, 0 } };
	bool nonblock = p->rfl & O_NONBLOCK;
	ssize_t n;
	char c;
	int err;

	sigemptyset(&sa.sa_mask);	/* no SA_RESTART: the read ends with EINTR */
	if (sigaction(SIGALRM, &sa, &old) || setitimer(ITIMER_REAL, &it, NULL))
		return zdtm_err("timer");
	n = read(p->fds[0], &c, 1);
	err = errno;
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	if (n != -1 || err != (nonblock ? EAGAIN : EINTR))
		return zdtm_fail("%s: read of the empty pipe gave %zd errno %d, expected %s", p->what,
				 n, err, nonblock ? "EAGAIN at once" : "to block (EINTR)");
	return 0;
}

static int setup(void)
{
	static char buf[1000];

	for (int i = 0; i < NPIPES; i++) {
		struct npipe *p = &pipes[i];

		if (i == 2 ? pipe2(p->fds, O_NONBLOCK) : pipe(p->fds))
			return zdtm_err("pipe");
		zdtm_fill(buf, p->queued, SEED + i, 0);
		if (zdtm_write_all(p->fds[1], buf, p->queued) != p->queued)
			return zdtm_err("write");
	}
	if (fcntl(pipes[0].fds[0], F_SETFL, O_NONBLOCK) ||
	    fcntl(pipes[1].fds[1], F_SETFL, O_NONBLOCK) || fcntl(pipes[2].fds[0], F_SETFL, 0))
		return zdtm_err("F_SETFL");
	for (int i = 0; i < NPIPES; i++)
		if (fcntl(pipes[i].fds[0], F_GETFL) != pipes[i].rfl ||
		    fcntl(pipes[i].fds[1], F_GETFL) != pipes[i].wfl)
			return zdtm_fail("%s: F_GETFL is not as meant right after setup", pipes[i].what);
	return 0;
}

static int check_pipe(struct npipe *p)
{
	static char buf[65536 + 1];
	struct pollfd pfd = { .fd = p->fds[0], .events = POLLIN };
	int rfl = fcntl(p->fds[0], F_GETFL), wfl = fcntl(p->fds[1], F_GETFL);
	ssize_t n, bad;

	if (rfl < 0 || wfl < 0)
		return zdtm_err("%s: fds %d/%d are not open", p->what, p->fds[0], p->fds[1]);
	if (rfl != p->rfl || wfl != p->wfl)
		return zdtm_fail("%s: F_GETFL %#o/%#o, expected %#o/%#o", p->what, rfl, wfl, p->rfl,
				 p->wfl);
	n = poll(&pfd, 1, 0);
	if (n != (p->queued ? 1 : 0))
		return zdtm_fail("%s: poll says %zd, with %d bytes queued", p->what, n, p->queued);
	if (p->queued) {
		/* Data is there: even a blocking read returns at once. */
		n = read(p->fds[0], buf, sizeof(buf));
		if (n != p->queued)
			return zdtm_fail("%s: read %zd bytes, expected %d", p->what, n, p->queued);
		bad = zdtm_verify(buf, n, SEED + (p - pipes), 0);
		if (bad >= 0)
			return zdtm_fail("%s: byte %zd differs", p->what, bad);
	}
	if (empty_read(p))
		return -1;
	if (p->wfl & O_NONBLOCK) {
		/* A non-blocking writer fills the pipe and gets EAGAIN instead of blocking. */
		for (n = 0; n <= 65536;) {
			ssize_t w = write(p->fds[1], buf, 4096);

			if (w < 0 && errno == EAGAIN)
				break;
			if (w < 0)
				return zdtm_err("%s: write", p->what);
			n += w;
		}
		if (n != 65536)
			return zdtm_fail("%s: the writer put %zd bytes before EAGAIN, expected 65536",
					 p->what, n);
	}
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NPIPES; i++) {
		if (pipes[i].fds[0] < 0)
			return zdtm_fail("pipe %d was never created", i);
		if (check_pipe(&pipes[i]))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
