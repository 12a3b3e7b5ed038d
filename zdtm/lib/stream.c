/* Checksummed two-way socket traffic between a test and its child (see stream.h). */
#include "stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define MAX_CHUNK 16384		/* a byte stream's largest send */
#define RBUF 65536		/* a byte stream's largest read */
#define MAX_MSG 4000		/* the largest message, header included */
#define PAUSE_NS 200000		/* per step: stay a light load next to other tests */
#define IDLE_NS 2000000		/* the child, done, waits for SIGTERM */

/* The head of a SOCK_SEQPACKET message. */
struct hdr {
	uint32_t seq;
	uint32_t len;		/* the whole message, header included */
	uint32_t crc;		/* of the payload */
	uint32_t pad;
};

static bool packets(const struct zdtm_stream *s)
{
	return s->type == SOCK_SEQPACKET;
}

/* What sent and received count, for the messages. */
static const char *unit(const struct zdtm_stream *s)
{
	return packets(s) ? "messages" : "bytes";
}

static void sleep_ns(long ns)
{
	struct timespec ts = { 0, ns };

	nanosleep(&ts, NULL);
}

static int wait_io(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };

	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		return zdtm_err("poll on fd %d", fd);
	return 0;
}

/* --- SOCK_STREAM: a checksummed byte stream -------------------------------------------- */

static uint64_t next_rnd(struct zdtm_stream_end *e)
{
	e->rnd ^= e->rnd << 13;
	e->rnd ^= e->rnd >> 7;
	e->rnd ^= e->rnd << 17;
	return e->rnd;
}

/* Write one chunk if there is room; 1 if some bytes went, 0 if none, -1 on failure. */
static int out_bytes(struct zdtm_stream_end *e)
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
static int in_bytes(struct zdtm_stream_end *e)
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

/* --- SOCK_SEQPACKET: numbered, checksummed messages ------------------------------------ */

static uint32_t msg_len(uint64_t seed, uint32_t seq)
{
	return sizeof(struct hdr) + 16 + (uint32_t)((seq * 2654435761u ^ seed) % (MAX_MSG - 32));
}

/* Send the next message if there is room: 1 sent, 0 no room, -1 failure. */
static int out_msg(struct zdtm_stream_end *e)
{
	static char buf[MAX_MSG];
	struct hdr *h = (struct hdr *)buf;
	uint32_t seq = (uint32_t)e->sent, len = msg_len(e->seed_out, seq);
	ssize_t n;

	zdtm_fill(buf + sizeof(*h), len - sizeof(*h), e->seed_out, (uint64_t)seq << 12);
	*h = (struct hdr){ seq, len, zdtm_crc32(buf + sizeof(*h), len - sizeof(*h)), 0 };
	n = send(e->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n != (ssize_t)len)
		return zdtm_err("%s: send of message #%u (%zd of %u bytes)", e->who, seq, n, len);
	e->sent++;
	return 1;
}

/* Receive and check one message: 1 got one, 0 none (or EOF), -1 failure. */
static int in_msg(struct zdtm_stream_end *e)
{
	static char buf[MAX_MSG + 64];
	struct hdr *h = (struct hdr *)buf;
	uint32_t seq = (uint32_t)e->received, want = msg_len(e->seed_in, seq);
	ssize_t n, bad;

	n = recv(e->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return zdtm_err("%s: recv of message #%u", e->who, seq);
	if (n == 0) {
		e->eof = true;
		return 0;
	}
	if (n < (ssize_t)sizeof(*h) || h->seq != seq || h->len != want || n != (ssize_t)want)
		return zdtm_fail("%s: got a %zd-byte message #%u (len %u), expected #%u of %u "
				 "bytes", e->who, n, n >= (ssize_t)sizeof(*h) ? h->seq : 0,
				 n >= (ssize_t)sizeof(*h) ? h->len : 0, seq, want);
	if (zdtm_crc32(buf + sizeof(*h), n - sizeof(*h)) != h->crc)
		return zdtm_fail("%s: message #%u fails its crc", e->who, seq);
	bad = zdtm_verify(buf + sizeof(*h), n - sizeof(*h), e->seed_in, (uint64_t)seq << 12);
	if (bad >= 0)
		return zdtm_fail("%s: message #%u payload byte %zd differs", e->who, seq, bad);
	e->received++;
	return 1;
}

/* --- both sides ------------------------------------------------------------------------ */

static int pump_out(const struct zdtm_stream *s, struct zdtm_stream_end *e)
{
	return packets(s) ? out_msg(e) : out_bytes(e);
}

static int pump_in(const struct zdtm_stream *s, struct zdtm_stream_end *e)
{
	return packets(s) ? in_msg(e) : in_bytes(e);
}

/* e read EOF: the peer must have shut down after sending exactly what e got. */
static int check_eof(const struct zdtm_stream *s, const struct zdtm_stream_end *e,
		     const char *peer, const uint32_t *peer_done, uint64_t peer_sent)
{
	if (!__atomic_load_n(peer_done, __ATOMIC_SEQ_CST))
		return zdtm_fail("%s: EOF after %llu %s before the %s shut down", e->who,
				 (unsigned long long)e->received, unit(s), peer);
	if (e->received != peer_sent)
		return zdtm_fail("%s: got %llu %s before EOF, the %s sent %llu", e->who,
				 (unsigned long long)e->received, unit(s), peer,
				 (unsigned long long)peer_sent);
	return 0;
}

/* --- the child ------------------------------------------------------------------------- */

static int child_setup(void *arg)
{
	struct zdtm_stream *s = arg;

	close(s->parent.fd);
	s->parent.fd = -1;
	return 0;
}

static int child_step(void *arg)
{
	struct zdtm_stream *s = arg;
	struct zdtm_stream_end *e = &s->child;
	int in, out;

	if (e->eof) {		/* all done: wait for SIGTERM */
		sleep_ns(IDLE_NS);
		return 0;
	}
	in = pump_in(s, e);
	if (in < 0)
		return -1;
	if (e->eof) {
		if (check_eof(s, e, "parent", &s->tot->parent_done, s->tot->parent_sent))
			return -1;
		s->tot->child_sent = e->sent;
		__atomic_store_n(&s->tot->child_done, 1, __ATOMIC_SEQ_CST);
		if (shutdown(e->fd, SHUT_WR))
			return zdtm_err("child: shutdown");
		return 0;
	}
	out = pump_out(s, e);
	if (out < 0)
		return -1;
	if (!in && !out)
		return wait_io(e->fd, POLLIN | POLLOUT, 5);
	sleep_ns(PAUSE_NS);
	return 0;
}

static int child_check(void *arg)
{
	struct zdtm_stream *s = arg;

	if (!s->child.eof)
		return zdtm_fail("child: no EOF from the parent after %llu %s",
				 (unsigned long long)s->child.received, unit(s));
	return 0;
}

/* --- the parent ------------------------------------------------------------------------ */

int zdtm_stream_start(struct zdtm_stream *s, int parent_fd, int child_fd)
{
	const struct zdtm_task task = {
		.setup = child_setup, .step = child_step, .check = child_check, .arg = s,
	};

	s->tot = zdtm_shmem(sizeof(*s->tot));
	if (!s->tot)
		return zdtm_err("shared page");
	s->parent.fd = parent_fd;
	s->child.fd = child_fd;
	s->pid = zdtm_child(&task);
	if (s->pid < 0)
		return -1;
	close(child_fd);
	s->child.fd = -1;
	return 0;
}

int zdtm_stream_step(struct zdtm_stream *s)
{
	struct zdtm_stream_end *e = &s->parent;
	int in, out;

	out = pump_out(s, e);
	if (out < 0)
		return -1;
	in = pump_in(s, e);
	if (in < 0)
		return -1;
	if (e->eof)
		return zdtm_fail("parent: EOF from the child after %llu %s",
				 (unsigned long long)e->received, unit(s));
	if (!in && !out && wait_io(e->fd, POLLIN | POLLOUT, 5))
		return -1;
	sleep_ns(PAUSE_NS);
	s->steps++;
	return 0;
}

bool zdtm_stream_flowing(const struct zdtm_stream *s)
{
	return s->parent.sent && s->parent.received;
}

static int check_state(struct zdtm_stream *s, unsigned long min_steps)
{
	struct zdtm_stream_end *e = &s->parent;
	struct timespec t0, t;
	int type = -1;
	socklen_t tl = sizeof(type);

	if (!s->tot || s->pid <= 0 || e->fd < 0)
		return zdtm_fail("setup never ran: no child and socket (child %d, fd %d)", s->pid,
				 e->fd);
	if (s->steps < min_steps || !e->sent || !e->received)
		return zdtm_fail("the loop ran %lu steps (at least %lu expected), sent %llu, "
				 "received %llu %s", s->steps, min_steps,
				 (unsigned long long)e->sent, (unsigned long long)e->received,
				 unit(s));
	if (getsockopt(e->fd, SOL_SOCKET, SO_TYPE, &type, &tl) || type != s->type)
		return zdtm_fail("fd %d is not a %s socket (type %d)", e->fd,
				 packets(s) ? "seqpacket" : "stream", type);
	s->tot->parent_sent = e->sent;
	__atomic_store_n(&s->tot->parent_done, 1, __ATOMIC_SEQ_CST);
	if (shutdown(e->fd, SHUT_WR))
		return zdtm_err("parent: shutdown");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!e->eof) {
		int in = pump_in(s, e);

		if (in < 0)
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec >= 2)
			return zdtm_fail("parent: no EOF from the child within 2 s (%llu %s read)",
					 (unsigned long long)e->received, unit(s));
		if (!in && !e->eof && wait_io(e->fd, POLLIN, 100))
			return -1;
	}
	if (check_eof(s, e, "child", &s->tot->child_done, s->tot->child_sent))
		return -1;
	if (zdtm_child_stop(&s->pid))
		return -1;
	zdtm_msg("%lu steps; %llu %s to the child, %llu back", s->steps,
		 (unsigned long long)e->sent, unit(s), (unsigned long long)e->received);
	return 0;
}

int zdtm_stream_check(struct zdtm_stream *s, unsigned long min_steps)
{
	int rc = zdtm_failed() ? -1 : check_state(s, min_steps);

	zdtm_child_kill(&s->pid);	/* an early failure leaves the child running */
	return rc;
}
