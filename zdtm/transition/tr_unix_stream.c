/* Data flowing over a unix stream socketpair during C/R, both ways at once: the parent and
 * a child each write a checksummed stream (byte i is a function of i) in chunks of varying
 * size through non-blocking sockets, and each verifies every byte it reads at its stream
 * position. At check the parent shuts down its sending side; the child reads to EOF,
 * checks it got exactly what the parent sent, and shuts down its own side; the parent
 * reads to EOF and checks it got exactly what the child sent. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED_P2C 0x5e1d
#define SEED_C2P 0xc2b0
#define MAX_CHUNK 16384
#define RBUF 65536
#define MIN_STEPS 3
#define PAUSE_NS 200000	/* per step: stay a light load next to other tests */

struct totals {
	uint64_t parent_sent;	/* published by the parent before its shutdown */
	uint64_t child_sent;	/* published by the child before its shutdown */
	uint32_t parent_done, child_done;
};

struct end {
	const char *who;
	int fd;
	uint64_t seed_out, seed_in;
	uint64_t sent, received;
	uint64_t rnd;
	bool eof;
};

static int sv[2] = { -1, -1 };
static pid_t child;
static struct totals *tot;
static unsigned long steps;
static struct end parent_end = { "parent", -1, SEED_P2C, SEED_C2P, 0, 0, 1, false };
static struct end child_end = { "child", -1, SEED_C2P, SEED_P2C, 0, 0, 7, false };

static uint64_t next_rnd(struct end *e)
{
	e->rnd ^= e->rnd << 13;
	e->rnd ^= e->rnd >> 7;
	e->rnd ^= e->rnd << 17;
	return e->rnd;
}

/* Write one chunk if there is room; 1 if some bytes went, 0 if none, -1 on failure. */
static int pump_out(struct end *e)
{
	static char buf[MAX_CHUNK];
	size_t len = 1 + next_rnd(e) % MAX_CHUNK;
	ssize_t n;

	zdtm_fill(buf, len, e->seed_out, e->sent);
	n = send(e->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return zdtm_err("%s: send of %zu bytes at stream offset %llu", e->who, len,
				(unsigned long long)e->sent);
	e->sent += n;
	return 1;
}

/* Read what is there and verify it; 1 if some bytes came, 0 if none, -1 on failure. */
static int pump_in(struct end *e)
{
	static char buf[RBUF];
	ssize_t n, bad;

	n = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return zdtm_err("%s: recv at stream offset %llu", e->who,
				(unsigned long long)e->received);
	if (n == 0) {
		e->eof = true;
		return 0;
	}
	bad = zdtm_verify(buf, n, e->seed_in, e->received);
	if (bad >= 0)
		return zdtm_fail("%s: stream byte %llu differs (read of %zd bytes at %llu)",
				 e->who, (unsigned long long)(e->received + bad), n,
				 (unsigned long long)e->received);
	e->received += n;
	return 1;
}

static void pause_a_bit(void)
{
	struct timespec ts = { 0, PAUSE_NS };

	nanosleep(&ts, NULL);
}

static int wait_io(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		return zdtm_err("poll on fd %d", fd);
	return 0;
}

/* --- the child ------------------------------------------------------------------------ */

static int child_setup(void *arg)
{
	(void)arg;
	close(sv[0]);
	sv[0] = -1;
	child_end.fd = sv[1];
	return 0;
}

static int child_step(void *arg)
{
	struct end *e = &child_end;
	bool was_eof = e->eof;
	int in, out = 0;

	(void)arg;
	if (was_eof) {		/* all done: wait for SIGTERM */
		struct timespec ts = { 0, 2000000 };

		nanosleep(&ts, NULL);
		return 0;
	}
	in = pump_in(e);
	if (in < 0)
		return -1;
	if (e->eof) {
		if (!tot->parent_done)
			return zdtm_fail("child: EOF at %llu before the parent shut down",
					 (unsigned long long)e->received);
		if (e->received != tot->parent_sent)
			return zdtm_fail("child: got %llu bytes before EOF, the parent sent %llu",
					 (unsigned long long)e->received,
					 (unsigned long long)tot->parent_sent);
		tot->child_sent = e->sent;
		__atomic_store_n(&tot->child_done, 1, __ATOMIC_SEQ_CST);
		if (shutdown(e->fd, SHUT_WR))
			return zdtm_err("child: shutdown");
		return 0;
	}
	out = pump_out(e);
	if (out < 0)
		return -1;
	if (!in && !out)
		return wait_io(e->fd, POLLIN | POLLOUT, 5);
	pause_a_bit();
	return 0;
}

static int child_check(void *arg)
{
	(void)arg;
	if (!child_end.eof)
		return zdtm_fail("child: no EOF from the parent after %llu bytes",
				 (unsigned long long)child_end.received);
	return 0;
}

/* --- the parent ----------------------------------------------------------------------- */

static int build(void)
{
	static const struct zdtm_task task = {
		.setup = child_setup, .step = child_step, .check = child_check,
	};

	tot = zdtm_shmem(sizeof(*tot));
	if (!tot)
		return zdtm_err("shared page");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return zdtm_err("socketpair");
	child = zdtm_child(&task);
	if (child < 0)
		return -1;
	close(sv[1]);
	sv[1] = -1;
	parent_end.fd = sv[0];
	return 0;
}

static int step(void)
{
	struct end *e = &parent_end;
	int in, out;

	out = pump_out(e);
	if (out < 0)
		return -1;
	in = pump_in(e);
	if (in < 0)
		return -1;
	if (e->eof)
		return zdtm_fail("parent: EOF from the child at %llu bytes",
				 (unsigned long long)e->received);
	if (!in && !out && wait_io(e->fd, POLLIN | POLLOUT, 5))
		return -1;
	pause_a_bit();
	steps++;
	return 0;
}

/* The first steps run in setup: the check's minimum holds however soon SIGTERM comes. */
static int setup(void)
{
	struct timespec t0, t;

	if (build())
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (steps < MIN_STEPS || !parent_end.sent || !parent_end.received) {
		if (step())
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > 2000)
			return zdtm_fail("setup: the loop made only %lu steps in 2 s", steps);
	}
	return 0;
}

static int check_state(void)
{
	pid_t c;
	struct end *e = &parent_end;
	struct timespec t0, t;

	if (!tot || child <= 0 || e->fd < 0)
		return zdtm_fail("setup never ran: no child and socket (child %d, fd %d)", child,
				 e->fd);
	if (steps < MIN_STEPS || !e->sent || !e->received)
		return zdtm_fail("the loop ran %lu steps (at least %d expected), sent %llu, "
				 "received %llu bytes", steps, MIN_STEPS,
				 (unsigned long long)e->sent, (unsigned long long)e->received);
	tot->parent_sent = e->sent;
	__atomic_store_n(&tot->parent_done, 1, __ATOMIC_SEQ_CST);
	if (shutdown(e->fd, SHUT_WR))
		return zdtm_err("parent: shutdown");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!e->eof) {
		int in = pump_in(e);

		if (in < 0)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= 2)
			return zdtm_fail("parent: no EOF from the child within 2 s (%llu bytes read)",
					 (unsigned long long)e->received);
		if (!in && !e->eof && wait_io(e->fd, POLLIN, 100))
			return -1;
	}
	if (!tot->child_done)
		return zdtm_fail("parent: EOF at %llu bytes before the child shut down",
				 (unsigned long long)e->received);
	if (e->received != tot->child_sent)
		return zdtm_fail("parent: got %llu bytes before EOF, the child sent %llu",
				 (unsigned long long)e->received,
				 (unsigned long long)tot->child_sent);
	c = child;
	child = 0;	/* zdtm_child_check reaps it */
	if (zdtm_child_check(c))
		return -1;
	zdtm_msg("%lu steps; %llu bytes to the child, %llu back", steps,
		 (unsigned long long)e->sent, (unsigned long long)e->received);
	return 0;
}

/* An early failure leaves the child running: kill and reap it. */
static int check(void)
{
	int rc = zdtm_failed() ? -1 : check_state();

	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = 0;
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
