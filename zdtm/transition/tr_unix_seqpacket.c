/* Messages flowing over a unix seqpacket socketpair during C/R, both ways at once: the
 * parent and a child each send sequence-numbered, checksummed messages of 16..4000 bytes
 * through non-blocking sockets; each receiver checks every message arrives whole (its
 * boundary kept), in order, none lost or duplicated. At check the parent shuts down its
 * sending side; the child reads to EOF, checks it got exactly as many messages as the
 * parent sent and shuts down its side; the parent does the same with the child's. */
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED_P2C 0x5eb1
#define SEED_C2P 0xc5b2
#define MAX_MSG 4000
#define MIN_STEPS 3
#define PAUSE_NS 200000

struct hdr {
	uint32_t seq;
	uint32_t len;		/* the whole message, header included */
	uint32_t crc;		/* of the payload */
	uint32_t pad;
};

struct totals {
	uint32_t parent_sent, child_sent;	/* published before each side's shutdown */
	uint32_t parent_done, child_done;
};

struct end {
	const char *who;
	int fd;
	uint64_t seed_out, seed_in;
	uint32_t sent, received;
	bool eof;
};

static int sv[2] = { -1, -1 };
static pid_t child;
static struct totals *tot;
static unsigned long steps;
static struct end parent_end = { "parent", -1, SEED_P2C, SEED_C2P, 0, 0, false };
static struct end child_end = { "child", -1, SEED_C2P, SEED_P2C, 0, 0, false };

static uint32_t msg_len(uint64_t seed, uint32_t seq)
{
	return sizeof(struct hdr) + 16 + (uint32_t)((seq * 2654435761u ^ seed) % (MAX_MSG - 32));
}

/* Send the next message if there is room: 1 sent, 0 no room, -1 failure. */
static int pump_out(struct end *e)
{
	static char buf[MAX_MSG];
	struct hdr *h = (struct hdr *)buf;
	uint32_t len = msg_len(e->seed_out, e->sent);
	ssize_t n;

	zdtm_fill(buf + sizeof(*h), len - sizeof(*h), e->seed_out, (uint64_t)e->sent << 12);
	*h = (struct hdr){ e->sent, len, zdtm_crc32(buf + sizeof(*h), len - sizeof(*h)), 0 };
	n = send(e->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n != (ssize_t)len)
		return zdtm_err("%s: send of message #%u (%zd of %u bytes)", e->who, e->sent, n,
				len);
	e->sent++;
	return 1;
}

/* Receive and check one message: 1 got one, 0 none (or EOF), -1 failure. */
static int pump_in(struct end *e)
{
	static char buf[MAX_MSG + 64];
	struct hdr *h = (struct hdr *)buf;
	uint32_t want = msg_len(e->seed_in, e->received);
	ssize_t n, bad;

	n = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return zdtm_err("%s: recv of message #%u", e->who, e->received);
	if (n == 0) {
		e->eof = true;
		return 0;
	}
	if (n < (ssize_t)sizeof(*h) || h->seq != e->received || h->len != want ||
	    n != (ssize_t)want)
		return zdtm_fail("%s: got a %zd-byte message #%u (len %u), expected #%u of %u "
				 "bytes", e->who, n, n >= (ssize_t)sizeof(*h) ? h->seq : 0,
				 n >= (ssize_t)sizeof(*h) ? h->len : 0, e->received, want);
	if (zdtm_crc32(buf + sizeof(*h), n - sizeof(*h)) != h->crc)
		return zdtm_fail("%s: message #%u fails its crc", e->who, h->seq);
	bad = zdtm_verify(buf + sizeof(*h), n - sizeof(*h), e->seed_in,
			  (uint64_t)e->received << 12);
	if (bad >= 0)
		return zdtm_fail("%s: message #%u payload byte %zd differs", e->who, h->seq, bad);
	e->received++;
	return 1;
}

static int wait_io(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		return zdtm_err("poll on fd %d", fd);
	return 0;
}

static void pause_a_bit(void)
{
	struct timespec ts = { 0, PAUSE_NS };

	nanosleep(&ts, NULL);
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
	int in, out;

	(void)arg;
	if (e->eof) {		/* all done: wait for SIGTERM */
		pause_a_bit();
		return 0;
	}
	in = pump_in(e);
	if (in < 0)
		return -1;
	if (e->eof) {
		if (!tot->parent_done)
			return zdtm_fail("child: EOF after %u messages before the parent shut "
					 "down", e->received);
		if (e->received != tot->parent_sent)
			return zdtm_fail("child: got %u messages before EOF, the parent sent %u",
					 e->received, tot->parent_sent);
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
		return zdtm_fail("child: no EOF from the parent after %u messages",
				 child_end.received);
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
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
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
		return zdtm_fail("parent: EOF from the child after %u messages", e->received);
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
	int type;
	socklen_t tl = sizeof(type);

	if (!tot || child <= 0 || e->fd < 0)
		return zdtm_fail("setup never ran: no child and socket (child %d, fd %d)", child,
				 e->fd);
	if (steps < MIN_STEPS || !e->sent || !e->received)
		return zdtm_fail("the loop ran %lu steps (at least %d expected), sent %u, "
				 "received %u messages", steps, MIN_STEPS, e->sent, e->received);
	if (getsockopt(e->fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != SOCK_SEQPACKET)
		return zdtm_fail("fd %d is not a seqpacket socket (type %d)", e->fd, type);
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
			return zdtm_fail("parent: no EOF from the child within 2 s (%u messages)",
					 e->received);
		if (!in && !e->eof && wait_io(e->fd, POLLIN, 100))
			return -1;
	}
	if (!tot->child_done)
		return zdtm_fail("parent: EOF after %u messages before the child shut down",
				 e->received);
	if (e->received != tot->child_sent)
		return zdtm_fail("parent: got %u messages before EOF, the child sent %u",
				 e->received, tot->child_sent);
	c = child;
	child = 0;	/* zdtm_child_check reaps it */
	if (zdtm_child_check(c))
		return -1;
	zdtm_msg("%lu steps; %u messages to the child, %u back", steps, e->sent, e->received);
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
