/* Data flowing through pipes during C/R: the parent sends bursts of sequence-numbered,
 * checksummed PING messages to a child through one pipe; the child checks each one and
 * answers with a PONG through another pipe; the parent checks every answer. At check the
 * parent collects the answers still in flight, sends END with its count, and the child's
 * ACK must carry the same count: no message lost, duplicated or reordered either way. */
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define SEED_PING 0x9191
#define SEED_PONG 0x7070
#define MAGIC 0x50504e47u
#define MAX_BURST 8
#define MIN_STEPS 3
#define DATA_LEN 48

enum { PING = 1, PONG, END, ACK };

struct msg {
	uint32_t magic;
	uint32_t kind;
	uint32_t seq;
	uint32_t crc;
	uint8_t data[DATA_LEN];
};

static int to_child[2] = { -1, -1 }, to_parent[2] = { -1, -1 };
static pid_t child;
static unsigned long steps;
static uint32_t sent, answered;		/* parent: pings sent, pongs received */
static uint32_t child_seen;		/* child: pings received */
static bool child_got_end;

static void make(struct msg *m, uint32_t kind, uint32_t seq, uint64_t seed)
{
	m->magic = MAGIC;
	m->kind = kind;
	m->seq = seq;
	zdtm_fill(m->data, DATA_LEN, seed, (uint64_t)seq * DATA_LEN);
	m->crc = zdtm_crc32(m->data, DATA_LEN);
}

/* A message with this kind and seq, checksummed and filled from seed? */
static int verify(const struct msg *m, const char *who, uint32_t kind, uint32_t seq,
		  uint64_t seed)
{
	ssize_t bad;

	if (m->magic != MAGIC)
		return zdtm_fail("%s: message magic %08x, expected %08x", who, m->magic, MAGIC);
	if (m->kind != kind)
		return zdtm_fail("%s: message kind %u (seq %u), expected kind %u seq %u", who,
				 m->kind, m->seq, kind, seq);
	if (m->seq != seq)
		return zdtm_fail("%s: got message #%u, expected #%u (lost or duplicated)", who,
				 m->seq, seq);
	if (zdtm_crc32(m->data, DATA_LEN) != m->crc)
		return zdtm_fail("%s: message #%u fails its crc", who, seq);
	bad = zdtm_verify(m->data, DATA_LEN, seed, (uint64_t)seq * DATA_LEN);
	if (bad >= 0)
		return zdtm_fail("%s: message #%u byte %zd differs", who, seq, bad);
	return 0;
}

static int send_msg(int fd, const struct msg *m, const char *who)
{
	ssize_t n;

	while ((n = write(fd, m, sizeof(*m))) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(*m))
		return zdtm_err("%s: write of message #%u (%zd of %zu bytes)", who, m->seq, n,
				sizeof(*m));
	return 0;
}

/* 1: got a whole message, 0: none within timeout_ms (or SIGTERM came), -1: failure. */
static int recv_msg(int fd, struct msg *m, int timeout_ms, const char *who)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;
	int r;

	r = poll(&p, 1, timeout_ms);
	if (r < 0 && errno == EINTR)
		return 0;
	if (r < 0)
		return zdtm_err("%s: poll on fd %d", who, fd);
	if (r == 0)
		return 0;
	while ((n = read(fd, m, sizeof(*m))) < 0 && errno == EINTR)
		;
	if (n == 0)
		return zdtm_fail("%s: the pipe %d hit EOF: the other side is gone", who, fd);
	if (n != (ssize_t)sizeof(*m))
		return zdtm_err("%s: read %zd bytes of a %zu-byte message", who, n, sizeof(*m));
	return 1;
}

/* --- the child: answers pings until SIGTERM ---------------------------------------------- */

static int child_setup(void *arg)
{
	(void)arg;
	close(to_child[1]);
	close(to_parent[0]);
	to_child[1] = to_parent[0] = -1;
	return 0;
}

static int child_step(void *arg)
{
	struct msg m, r;
	int got;

	(void)arg;
	got = recv_msg(to_child[0], &m, 5, "child");
	if (got <= 0)
		return got;
	if (child_got_end)
		return zdtm_fail("child: message kind %u #%u after END", m.kind, m.seq);
	if (m.kind == END) {
		if (verify(&m, "child", END, child_seen, SEED_PING))
			return -1;
		child_got_end = true;
		make(&r, ACK, child_seen, SEED_PONG);
		return send_msg(to_parent[1], &r, "child");
	}
	if (verify(&m, "child", PING, child_seen, SEED_PING))
		return -1;
	make(&r, PONG, child_seen, SEED_PONG);
	child_seen++;
	return send_msg(to_parent[1], &r, "child");
}

static int child_check(void *arg)
{
	struct pollfd p = { .fd = to_child[0], .events = POLLIN };

	(void)arg;
	if (!child_got_end)
		return zdtm_fail("child: no END message after %u pings", child_seen);
	if (poll(&p, 1, 0) != 0)
		return zdtm_fail("child: pipe %d is not empty after END (revents %x)",
				 to_child[0], p.revents);
	return 0;
}

/* --- the parent ---------------------------------------------------------------------------- */

static int build(void)
{
	static const struct zdtm_task task = {
		.setup = child_setup, .step = child_step, .check = child_check,
	};

	if (pipe(to_child) || pipe(to_parent))
		return zdtm_err("pipe");
	child = zdtm_child(&task);
	if (child < 0)
		return -1;
	close(to_child[0]);
	close(to_parent[1]);
	to_child[0] = to_parent[1] = -1;
	return 0;
}

/* 1: got the next answer, checked; 0: none within timeout_ms; -1: failure. */
static int get_pong(int timeout_ms)
{
	struct msg m;
	int got;

	got = recv_msg(to_parent[0], &m, timeout_ms, "parent");
	if (got <= 0)
		return got;
	if (verify(&m, "parent", PONG, answered, SEED_PONG))
		return -1;
	answered++;
	return 1;
}

static int step(void)
{
	static const struct timespec pause = { 0, 200000 };
	unsigned burst = 1 + steps % MAX_BURST;
	struct msg m;

	/* A burst is sent only once the previous one is fully answered; a slow answer
	 * (or SIGTERM) just ends the step, the next step goes on waiting. */
	if (answered == sent) {
		for (unsigned i = 0; i < burst; i++) {
			make(&m, PING, sent, SEED_PING);
			if (send_msg(to_child[1], &m, "parent"))
				return -1;
			sent++;
		}
	}
	while (answered < sent) {
		int r = get_pong(5);

		if (r <= 0)
			return r;
	}
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check_state(void)
{
	struct pollfd p;
	struct msg m;
	int got;

	if (child <= 0 || to_child[1] < 0 || to_parent[0] < 0)
		return zdtm_fail("setup never ran: no child and pipes (child %d, fds %d/%d)",
				 child, to_child[1], to_parent[0]);
	if (steps < MIN_STEPS)
		return zdtm_fail("the ping-pong loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	/* Answers to the last burst may still be in flight. */
	while (answered < sent) {
		got = get_pong(1000);
		if (got < 0)
			return -1;
		if (got == 0)
			return zdtm_fail("parent: %u pings sent, only %u answered", sent, answered);
	}
	make(&m, END, sent, SEED_PING);
	if (send_msg(to_child[1], &m, "parent"))
		return -1;
	got = recv_msg(to_parent[0], &m, 1000, "parent");
	if (got < 0)
		return -1;
	if (got == 0)
		return zdtm_fail("parent: no ACK to END after %u pings", sent);
	if (verify(&m, "parent: ACK", ACK, sent, SEED_PONG))
		return -1;
	p = (struct pollfd){ .fd = to_parent[0], .events = POLLIN };
	if (poll(&p, 1, 0) != 0)
		return zdtm_fail("parent: pipe %d is not empty after ACK (revents %x)",
				 to_parent[0], p.revents);
	if (zdtm_child_stop(&child))
		return -1;
	zdtm_msg("%lu steps, %u pings answered", steps, sent);
	return 0;
}

static int check(void)
{
	return zdtm_child_guard(check_state, &child);
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
