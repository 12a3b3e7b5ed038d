/* Half-closed TCP connections on 127.0.0.1: one side wrote data then shut down for writing
 * (FIN_WAIT2), the other (CLOSE_WAIT) has not read it and has data of its own queued the other
 * way. After C/R the reader gets the data then EOF and can still write back; the closed side
 * gets EPIPE. Once with the client half-closed, once with the accepted side. */
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

#define NCONN 2
#define MAXLEN 20000
/* per connection: which end shuts down (0 client, 1 server) and the bytes queued each way */
static const struct conn_desc {
	const char *what;
	int closer;
	int closer_len;		/* written by the closer before its FIN */
	int other_len;		/* written by the other side, unread by the closer */
} conns[NCONN] = {
	{ "client half-closed", 0, 20000, 15000 },
	{ "server half-closed", 1, 5000, 7000 },
};
static int sk[NCONN][2] = { { -1, -1 }, { -1, -1 } };

static uint64_t seed(int c, int from)
{
	return 0x4a1f + c * 2 + from;
}

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	return ti.tcpi_state;
}

static int setup(void)
{
	static char buf[MAXLEN];
	int c, ms;

	for (c = 0; c < NCONN; c++) {
		const struct conn_desc *d = &conns[c];
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t l = sizeof(a);
		int ls = socket(AF_INET, SOCK_STREAM, 0), cl = d->closer, ot = !d->closer;

		if (ls < 0 || bind(ls, (struct sockaddr *)&a, l) || listen(ls, 1) ||
		    getsockname(ls, (struct sockaddr *)&a, &l))
			return zdtm_err("listener on 127.0.0.1");
		sk[c][0] = socket(AF_INET, SOCK_STREAM, 0);
		if (sk[c][0] < 0 || connect(sk[c][0], (struct sockaddr *)&a, l))
			return zdtm_err("connect");
		sk[c][1] = accept(ls, NULL, NULL);
		close(ls);
		if (sk[c][1] < 0)
			return zdtm_err("accept");
		zdtm_fill(buf, d->closer_len, seed(c, cl), 0);
		if (send(sk[c][cl], buf, d->closer_len, MSG_DONTWAIT) != d->closer_len)
			return zdtm_err("%s: send %d bytes", d->what, d->closer_len);
		if (shutdown(sk[c][cl], SHUT_WR))
			return zdtm_err("%s: shutdown", d->what);
		zdtm_fill(buf, d->other_len, seed(c, ot), 0);
		if (send(sk[c][ot], buf, d->other_len, MSG_DONTWAIT) != d->other_len)
			return zdtm_err("%s: send %d bytes back", d->what, d->other_len);
		for (ms = 0; tcp_state(sk[c][cl]) != TCP_FIN_WAIT2 ||
			     tcp_state(sk[c][ot]) != TCP_CLOSE_WAIT; ms++) {
			if (ms == 2000)
				return zdtm_fail("%s: states %d/%d after 2 s", d->what,
						 tcp_state(sk[c][cl]), tcp_state(sk[c][ot]));
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
	}
	return 0;
}

/* fd holds len bytes of the seeded stream (SIOCINQ exactly), then eof or nothing more. */
static int read_stream(int c, int end, uint64_t sd, int len, bool eof)
{
	static char buf[MAXLEN + 1];
	struct pollfd pf = { .fd = sk[c][end], .events = POLLIN };
	int inq = -1, got = 0;
	ssize_t n, bad;

	if (ioctl(sk[c][end], SIOCINQ, &inq))
		return zdtm_err("SIOCINQ");
	if (inq != len)
		return zdtm_fail("%s: %s has %d bytes queued (SIOCINQ), expected %d", conns[c].what,
				 end ? "server" : "client", inq, len);
	while (got < len) {
		if (poll(&pf, 1, 1000) != 1)
			return zdtm_fail("%s: stalled after %d of %d bytes", conns[c].what, got, len);
		n = recv(sk[c][end], buf + got, len - got, MSG_DONTWAIT);
		if (n <= 0)
			return zdtm_fail("%s: %s: recv gave %zd after %d of %d bytes", conns[c].what,
					 end ? "server" : "client", n, got, len);
		got += n;
	}
	bad = zdtm_verify(buf, len, sd, 0);
	if (bad >= 0)
		return zdtm_fail("%s: byte %zd of %d differs", conns[c].what, bad, len);
	n = recv(sk[c][end], buf, 1, MSG_DONTWAIT);
	if (eof ? n != 0 : (n >= 0 || errno != EAGAIN))
		return zdtm_fail("%s: %s: after the data recv gave %zd (%s), expected %s",
				 conns[c].what, end ? "server" : "client", n,
				 n < 0 ? strerror(errno) : n ? "data" : "EOF", eof ? "EOF" : "EAGAIN");
	return 0;
}

static int check_conn(int c)
{
	const struct conn_desc *d = &conns[c];
	struct pollfd pf;
	int cl = d->closer, ot = !d->closer, outq = -1;
	char buf[16] = "";
	ssize_t n;

	if (tcp_state(sk[c][cl]) != TCP_FIN_WAIT2 || tcp_state(sk[c][ot]) != TCP_CLOSE_WAIT)
		return zdtm_fail("%s: states %d/%d, expected FIN_WAIT2/CLOSE_WAIT (%d/%d)", d->what,
				 tcp_state(sk[c][cl]), tcp_state(sk[c][ot]), TCP_FIN_WAIT2,
				 TCP_CLOSE_WAIT);
	/* the FIN is acknowledged: nothing of the closer's is unacked */
	if (ioctl(sk[c][cl], SIOCOUTQ, &outq) || outq != 0)
		return zdtm_fail("%s: the half-closed side has %d bytes unacked", d->what, outq);
	if (read_stream(c, ot, seed(c, cl), d->closer_len, true) ||
	    read_stream(c, cl, seed(c, ot), d->other_len, false))
		return -1;
	/* the open direction works, the closed one does not */
	if (send(sk[c][ot], "late", 4, MSG_DONTWAIT | MSG_NOSIGNAL) != 4)
		return zdtm_err("%s: the CLOSE_WAIT side cannot write", d->what);
	pf = (struct pollfd){ .fd = sk[c][cl], .events = POLLIN };
	if (poll(&pf, 1, 1000) != 1 || recv(sk[c][cl], buf, sizeof(buf), MSG_DONTWAIT) != 4 ||
	    memcmp(buf, "late", 4))
		return zdtm_fail("%s: bytes written by the CLOSE_WAIT side after C/R did not arrive",
				 d->what);
	n = send(sk[c][cl], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n >= 0 || errno != EPIPE)
		return zdtm_fail("%s: write on the half-closed side gave %zd (%s), expected EPIPE",
				 d->what, n, n < 0 ? strerror(errno) : "written");
	return 0;
}

static int check(void)
{
	int c;

	for (c = 0; c < NCONN; c++)
		if (sk[c][0] < 0 || sk[c][1] < 0)
			return zdtm_fail("%s: connection does not exist (setup did not run)",
					 conns[c].what);
	for (c = 0; c < NCONN; c++)
		if (check_conn(c))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
