/* An established loopback TCP connection with data in flight both ways, unread: the bytes
 * sit in the receivers' queues and the senders' write queues (SIOCINQ + SIOCOUTQ account for
 * every byte), and read back complete and in order after C/R; ports and state are kept.
 * IPv4 on 127.0.0.1 here; sock_tcp_ipv6.c builds the same test with FAMILY = AF_INET6. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#ifndef FAMILY
#define FAMILY AF_INET
#endif

#define C2S_MAX (1 << 20)	/* client -> server: as much as fits, up to this (--c2s) */
#define S2C_MAX 100000		/* server -> client */
#define SEED_C2S 0x7c25
#define SEED_S2C 0x75c2

static int csk = -1, ssk = -1;
static long c2s_len, s2c_len;	/* bytes written in setup */
static union {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
} caddr, saddr;			/* the client's and server's own addresses */

static socklen_t loopback(void *p)
{
	struct sockaddr_in *in = p;
	struct sockaddr_in6 *in6 = p;

	if (FAMILY == AF_INET) {
		memset(in, 0, sizeof(*in));
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return sizeof(*in);
	}
	memset(in6, 0, sizeof(*in6));
	in6->sin6_family = AF_INET6;
	in6->sin6_addr = in6addr_loopback;
	return sizeof(*in6);
}

static const char *fmt_addr(const void *p, char *buf, size_t len)
{
	const struct sockaddr_in *in = p;
	const struct sockaddr_in6 *in6 = p;
	char ip[INET6_ADDRSTRLEN] = "?";

	if (in->sin_family == AF_INET6)
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
	else if (in->sin_family == AF_INET)
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s port %d (family %d)", ip, ntohs(in->sin_port), in->sin_family);
	return buf;
}

/* Non-blocking writes of the seeded stream until max bytes or a full buffer. */
static long fill(int fd, uint64_t seed, long max)
{
	static char buf[65536];
	long done = 0;

	while (done < max) {
		long n = max - done > (long)sizeof(buf) ? (long)sizeof(buf) : max - done;

		zdtm_fill(buf, n, seed, done);
		n = send(fd, buf, n, MSG_DONTWAIT);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			return zdtm_err("send"), -1;
		done += n;
	}
	return done;
}

static int queued(int rfd, int wfd, int *inq, int *outq)
{
	if (ioctl(rfd, SIOCINQ, inq) || ioctl(wfd, SIOCOUTQ, outq))
		return zdtm_err("SIOCINQ/SIOCOUTQ");
	return 0;
}

/* Wait (up to ms) until every written byte is either in the receiver's queue or unacked in
 * the sender's: no ACK still on its way. Returns the last sum seen. */
static long settle(int rfd, int wfd, long written, int ms, int *inq, int *outq)
{
	int i;

	for (i = 0;; i++) {
		if (queued(rfd, wfd, inq, outq))
			return -1;
		if ((long)*inq + *outq == written || i >= ms)
			return (long)*inq + *outq;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
}

static int setup(void)
{
	union {
		struct sockaddr sa;
		struct sockaddr_storage ss;
	} a;
	socklen_t l = loopback(&a);
	int lsk, inq, outq;

	lsk = socket(FAMILY, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, &a.sa, l) || listen(lsk, 1) || getsockname(lsk, &a.sa, &l))
		return zdtm_err("listener on loopback port 0");
	csk = socket(FAMILY, SOCK_STREAM, 0);
	if (csk < 0 || connect(csk, &a.sa, l))
		return zdtm_err("connect");
	ssk = accept(lsk, NULL, NULL);
	if (ssk < 0)
		return zdtm_err("accept");
	close(lsk);
	l = sizeof(caddr);
	if (getsockname(csk, &caddr.sa, &l))
		return zdtm_err("getsockname");
	l = sizeof(saddr);
	if (getsockname(ssk, &saddr.sa, &l))
		return zdtm_err("getsockname");

	c2s_len = fill(csk, SEED_C2S, zdtm_opt_long("c2s", C2S_MAX));
	s2c_len = fill(ssk, SEED_S2C, S2C_MAX);
	if (c2s_len <= 0 || s2c_len <= 0)
		return zdtm_fail("wrote %ld/%ld bytes", c2s_len, s2c_len);
	if (settle(ssk, csk, c2s_len, 2000, &inq, &outq) != c2s_len)
		return zdtm_fail("client->server: %d queued + %d unacked != %ld written", inq, outq,
				 c2s_len);
	zdtm_msg("client->server: %ld bytes: %d in the receive queue, %d in the send queue",
		 c2s_len, inq, outq);
	if (settle(csk, ssk, s2c_len, 2000, &inq, &outq) != s2c_len)
		return zdtm_fail("server->client: %d queued + %d unacked != %ld written", inq, outq,
				 s2c_len);
	zdtm_msg("server->client: %ld bytes: %d in the receive queue, %d in the send queue",
		 s2c_len, inq, outq);
	return 0;
}

static int check_names(int fd, const char *who, const void *own, const void *peer)
{
	union {
		struct sockaddr sa;
		struct sockaddr_storage ss;
	} a;
	char x[96], y[96];
	socklen_t l = sizeof(a), want = FAMILY == AF_INET ? sizeof(struct sockaddr_in)
							  : sizeof(struct sockaddr_in6);

	memset(&a, 0, sizeof(a));
	if (getsockname(fd, &a.sa, &l))
		return zdtm_err("%s: getsockname", who);
	if (l != want || memcmp(&a, own, want))
		return zdtm_fail("%s: own address is %s, expected %s", who, fmt_addr(&a, x, 96),
				 fmt_addr(own, y, 96));
	memset(&a, 0, sizeof(a));
	l = sizeof(a);
	if (getpeername(fd, &a.sa, &l))
		return zdtm_err("%s: getpeername", who);
	if (l != want || memcmp(&a, peer, want))
		return zdtm_fail("%s: peer address is %s, expected %s", who, fmt_addr(&a, x, 96),
				 fmt_addr(peer, y, 96));
	return 0;
}

static int drain(int rfd, int wfd, const char *dir, uint64_t seed, long len)
{
	static char buf[65536];
	struct pollfd pf = { .fd = rfd, .events = POLLIN };
	int inq = -1, outq = -1;
	long got = 0, sum;
	ssize_t n, bad;

	sum = settle(rfd, wfd, len, 1000, &inq, &outq);
	if (sum != len)
		return zdtm_fail("%s: %d bytes queued (SIOCINQ) + %d unacked (SIOCOUTQ) = %ld, "
				 "expected the %ld written", dir, inq, outq, sum, len);
	if (inq <= 0 || inq > len || outq < 0 || outq > len)
		return zdtm_fail("%s: SIOCINQ %d / SIOCOUTQ %d out of range for %ld bytes", dir,
				 inq, outq, len);
	while (got < len) {
		if (poll(&pf, 1, 1000) != 1)
			return zdtm_fail("%s: stalled after %ld of %ld bytes", dir, got, len);
		n = recv(rfd, buf, sizeof(buf) < (size_t)(len - got) ? sizeof(buf)
								  : (size_t)(len - got),
			 MSG_DONTWAIT);
		if (n <= 0)
			return zdtm_fail("%s: recv gave %zd (%s) after %ld of %ld bytes", dir, n,
					 n ? strerror(errno) : "EOF", got, len);
		bad = zdtm_verify(buf, n, seed, got);
		if (bad >= 0)
			return zdtm_fail("%s: byte %ld of %ld differs", dir, got + bad, len);
		got += n;
	}
	n = recv(rfd, buf, 1, MSG_DONTWAIT);
	if (n >= 0 || errno != EAGAIN)
		return zdtm_fail("%s: recv after the %ld bytes gave %zd (%s)", dir, len, n,
				 n ? "extra data" : "EOF");
	if (ioctl(wfd, SIOCOUTQ, &outq) == 0 && outq != 0)
		zdtm_msg("%s: %d bytes still unacked right after the drain", dir, outq);
	return 0;
}

static int ping(int a, int b, const char *dir)
{
	struct pollfd pf = { .fd = b, .events = POLLIN };
	char c = 0;

	if (send(a, "p", 1, MSG_DONTWAIT) != 1)
		return zdtm_err("%s: send after drain", dir);
	if (poll(&pf, 1, 1000) != 1 || recv(b, &c, 1, MSG_DONTWAIT) != 1 || c != 'p')
		return zdtm_fail("%s: a byte sent after the drain did not arrive in 1 s", dir);
	return 0;
}

static int check(void)
{
	struct tcp_info ti;
	socklen_t l;
	int i, fds[2] = { csk, ssk };

	if (csk < 0 || ssk < 0)
		return zdtm_fail("the connection does not exist (setup did not run)");
	for (i = 0; i < 2; i++) {
		l = sizeof(ti);
		if (getsockopt(fds[i], IPPROTO_TCP, TCP_INFO, &ti, &l))
			return zdtm_err("fd %d: TCP_INFO", fds[i]);
		if (ti.tcpi_state != TCP_ESTABLISHED)
			return zdtm_fail("%s: TCP state %d, not ESTABLISHED", i ? "server" : "client",
					 ti.tcpi_state);
	}
	if (check_names(csk, "client", &caddr, &saddr) || check_names(ssk, "server", &saddr, &caddr))
		return -1;
	if (drain(ssk, csk, "client->server", SEED_C2S, c2s_len) ||
	    drain(csk, ssk, "server->client", SEED_S2C, s2c_len))
		return -1;
	if (ping(csk, ssk, "client->server") || ping(ssk, csk, "server->client"))
		return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
