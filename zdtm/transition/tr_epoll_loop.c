/* An epoll loop serving events during C/R: a child writes sequence-numbered messages into
 * two pipes and adds varying amounts to an eventfd; the parent's epoll set watches the
 * first pipe level-triggered (one message read per event), the second edge-triggered
 * (drained on each event) and the eventfd level-triggered, each with its own tag in the
 * event data. The parent checks the tags and that each pipe's messages are contiguous.
 * At check the registrations must still be there (EPOLL_CTL_ADD gives EEXIST); once the
 * child stopped, the parent drains through epoll and the totals must match what the child
 * sent exactly. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define NPIPES 2
#define NCH (NPIPES + 1)	/* channel NPIPES is the eventfd */
#define TAG 0xe9011000ULL
#define MAGIC 0x45504c4cu
#define MIN_STEPS 3
#define MIN_EVENTS 3

struct pmsg {
	uint32_t magic;
	uint32_t ch;
	uint32_t seq;
	uint32_t check;
};

struct sent {
	uint32_t msgs[NPIPES];	/* messages written per pipe */
	uint64_t efd_sum;	/* total added to the eventfd */
	uint32_t efd_writes;
};

static int pipes[NPIPES][2] = { { -1, -1 }, { -1, -1 } };
static int efd = -1, ep = -1;
static pid_t child;
static struct sent *sent;	/* shared with the child */
static unsigned long steps;
static uint64_t events, efd_sum;
static uint32_t got[NPIPES];
static bool eof[NPIPES];

static uint32_t msg_check(uint32_t ch, uint32_t seq)
{
	return (seq * 2654435761u) ^ (ch << 28) ^ MAGIC;
}

/* --- the child: the event source ------------------------------------------------------- */

static uint64_t rnd = 88172645463325252ULL;

static int child_setup(void *arg)
{
	(void)arg;
	close(ep);
	ep = -1;
	for (int i = 0; i < NPIPES; i++) {
		close(pipes[i][0]);
		pipes[i][0] = -1;
		if (fcntl(pipes[i][1], F_SETFL, O_NONBLOCK))
			return zdtm_err("child: O_NONBLOCK on pipe %d", pipes[i][1]);
	}
	return 0;
}

static int child_step(void *arg)
{
	struct timespec ts = { 0, 300000 };
	unsigned burst;

	(void)arg;
	rnd ^= rnd << 13;
	rnd ^= rnd >> 7;
	rnd ^= rnd << 17;
	burst = 1 + rnd % 4;
	for (unsigned b = 0; b < burst; b++) {
		unsigned ch = (rnd >> (8 + 2 * b)) % NCH;

		if (ch < NPIPES) {
			struct pmsg m = { MAGIC, ch, sent->msgs[ch], msg_check(ch, sent->msgs[ch]) };
			ssize_t n = write(pipes[ch][1], &m, sizeof(m));

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;	/* full: the parent is behind */
			if (n != sizeof(m))
				return zdtm_err("child: write to pipe %d (%zd bytes)", ch, n);
			sent->msgs[ch]++;
		} else {
			uint64_t v = 1 + (rnd >> 40) % 5;

			if (eventfd_write(efd, v))
				return zdtm_err("child: eventfd_write");
			sent->efd_sum += v;
			sent->efd_writes++;
		}
	}
	nanosleep(&ts, NULL);
	return 0;
}

/* --- the parent: the loop --------------------------------------------------------------- */

static int build(void)
{
	static const struct zdtm_task task = { .setup = child_setup, .step = child_step };
	struct epoll_event ev;

	sent = zdtm_shmem(sizeof(*sent));
	if (!sent)
		return zdtm_err("shared page");
	ep = epoll_create1(0);
	if (ep < 0)
		return zdtm_err("epoll_create1");
	efd = eventfd(0, EFD_NONBLOCK);
	if (efd < 0)
		return zdtm_err("eventfd");
	for (int i = 0; i < NPIPES; i++) {
		if (pipe2(pipes[i], O_NONBLOCK))
			return zdtm_err("pipe");
		ev.events = EPOLLIN | (i == 1 ? EPOLLET : 0);
		ev.data.u64 = TAG | i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, pipes[i][0], &ev))
			return zdtm_err("EPOLL_CTL_ADD pipe %d", pipes[i][0]);
	}
	ev.events = EPOLLIN;
	ev.data.u64 = TAG | NPIPES;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		return zdtm_err("EPOLL_CTL_ADD eventfd %d", efd);
	child = zdtm_child(&task);
	if (child < 0)
		return -1;
	for (int i = 0; i < NPIPES; i++) {
		close(pipes[i][1]);
		pipes[i][1] = -1;
	}
	return 0;
}

/* Read one message from pipe ch; 1 read, 0 empty, -1 failure. */
static int read_msg(int ch, bool eof_ok)
{
	struct pmsg m;
	ssize_t n = read(pipes[ch][0], &m, sizeof(m));

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n == 0) {
		if (!eof_ok)
			return zdtm_fail("pipe %d hit EOF after %u messages: the child is gone",
					 ch, got[ch]);
		eof[ch] = true;
		return 0;
	}
	if (n != sizeof(m))
		return zdtm_err("pipe %d: read %zd bytes of a %zu-byte message", ch, n, sizeof(m));
	if (m.magic != MAGIC || m.ch != (uint32_t)ch || m.seq != got[ch] ||
	    m.check != msg_check(ch, m.seq))
		return zdtm_fail("pipe %d: got message magic %08x channel %u #%u check %08x, "
				 "expected #%u", ch, m.magic, m.ch, m.seq, m.check, got[ch]);
	got[ch]++;
	return 1;
}

static int serve(const struct epoll_event *ev, bool eof_ok)
{
	uint64_t ch = ev->data.u64 & 0xfff;
	int r;

	if ((ev->data.u64 & ~0xfffULL) != TAG || ch >= NCH)
		return zdtm_fail("epoll returned unknown data %#" PRIx64 " (events %#x)",
				 ev->data.u64, ev->events);
	if ((ev->events & (EPOLLERR | EPOLLHUP)) && !eof_ok)
		return zdtm_fail("channel %d reports events %#x while the child runs",
				 (int)ch, ev->events);
	if (ch == NPIPES) {
		eventfd_t v;

		if (eventfd_read(efd, &v)) {
			if (errno == EAGAIN)
				return zdtm_fail("eventfd reported readable but holds 0");
			return zdtm_err("eventfd_read");
		}
		efd_sum += v;
		return 0;
	}
	if (ch == 0)		/* level-triggered: one message per event */
		return read_msg(ch, eof_ok) < 0 ? -1 : 0;
	while ((r = read_msg(ch, eof_ok)) > 0)	/* edge-triggered: drain */
		;
	return r;
}

static int step(void)
{
	struct epoll_event evs[8];
	int n = epoll_wait(ep, evs, 8, 5);

	if (n < 0 && errno == EINTR)
		return 0;
	if (n < 0)
		return zdtm_err("epoll_wait");
	for (int i = 0; i < n; i++)
		if (serve(&evs[i], false))
			return -1;
	events += n;
	steps++;
	return 0;
}

/* The loop served events already. */
static bool served(void)
{
	return events >= MIN_EVENTS;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, served);
}

static int check_state(void)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct timespec t0, t;
	int fds[NCH];

	if (!sent || child <= 0 || ep < 0)
		return zdtm_fail("setup never ran: no epoll set or child (child %d, epoll fd %d)",
				 child, ep);
	if (steps < MIN_STEPS || events < MIN_EVENTS)
		return zdtm_fail("the epoll loop ran %lu steps serving %llu events, expected at "
				 "least %d and %d", steps, (unsigned long long)events, MIN_STEPS,
				 MIN_EVENTS);
	for (int i = 0; i < NPIPES; i++)
		fds[i] = pipes[i][0];
	fds[NPIPES] = efd;
	for (int i = 0; i < NCH; i++)
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) == 0 || errno != EEXIST)
			return zdtm_fail("fd %d is no longer in epoll set %d (EPOLL_CTL_ADD: %s)",
					 fds[i], ep, strerror(errno));
	if (zdtm_child_stop(&child))
		return -1;

	/* The child is gone: serve what is left, until the pipes hit EOF. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!eof[0] || !eof[1]) {
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, 100);

		if (n < 0 && errno != EINTR)
			return zdtm_err("epoll_wait");
		for (int i = 0; i < n; i++)
			if (serve(&evs[i], true))
				return -1;
		for (int c = 0; c < NPIPES; c++)
			if (eof[c] && epoll_ctl(ep, EPOLL_CTL_DEL, pipes[c][0], NULL) &&
			    errno != ENOENT)
				return zdtm_err("EPOLL_CTL_DEL pipe %d", pipes[c][0]);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 1)
			return zdtm_fail("pipes still not at EOF after 1 s (eof %d/%d)", eof[0],
					 eof[1]);
	}
	for (int c = 0; c < NPIPES; c++)
		if (got[c] != sent->msgs[c])
			return zdtm_fail("pipe %d: received %u messages, the child sent %u", c,
					 got[c], sent->msgs[c]);
	if (efd_sum != sent->efd_sum)
		return zdtm_fail("eventfd: read a total of %llu, the child added %llu in %u writes",
				 (unsigned long long)efd_sum, (unsigned long long)sent->efd_sum,
				 sent->efd_writes);
	zdtm_msg("%lu steps, %llu events: %u + %u messages, eventfd total %llu", steps,
		 (unsigned long long)events, got[0], got[1], (unsigned long long)efd_sum);
	return 0;
}

static int check(void)
{
	return zdtm_child_guard(check_state, &child);
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
