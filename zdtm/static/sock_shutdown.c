/* Unix and TCP (127.0.0.1) stream pairs shut down SHUT_WR, SHUT_RD and SHUT_RDWR keep the
 * behaviour that follows: queued data then EOF, EPIPE on write (SIGPIPE ignored), the open
 * direction still working, and the TCP states (FIN_WAIT2 / CLOSE_WAIT). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum { U_WR, U_RD, U_RDWR, T_WR, T_RD, T_RDWR, NPAIRS };
static const struct pair_desc {
	const char *what;
	bool tcp;
	int how;		/* shutdown of end 0 */
	const char *before;	/* queued towards end 1 (SHUT_WR) or end 0 (SHUT_RD) first */
} pairs[NPAIRS] = {
	[U_WR] = { "unix SHUT_WR", false, SHUT_WR, "queued-before-shut-wr" },
	[U_RD] = { "unix SHUT_RD", false, SHUT_RD, "queued-before-shut-rd" },
	[U_RDWR] = { "unix SHUT_RDWR", false, SHUT_RDWR, NULL },
	[T_WR] = { "tcp SHUT_WR", true, SHUT_WR, "tcp-queued-before-fin" },
	[T_RD] = { "tcp SHUT_RD", true, SHUT_RD, NULL },
	[T_RDWR] = { "tcp SHUT_RDWR", true, SHUT_RDWR, NULL },
};
static int sk[NPAIRS][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 },
			     { -1, -1 }, { -1, -1 }, { -1, -1 } };

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l))
		return -1;
	return ti.tcpi_state;
}

/* the TCP states each end must be in */
static void want_states(int i, int *s0, int *s1)
{
	*s0 = *s1 = TCP_ESTABLISHED;
	if (pairs[i].how != SHUT_RD) {
		*s0 = TCP_FIN_WAIT2;
		*s1 = TCP_CLOSE_WAIT;
	}
}

static int tcp_pair(int p[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	if (ls < 0 || bind(ls, (struct sockaddr *)&a, l) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &l))
		return zdtm_err("tcp listener on 127.0.0.1");
	p[0] = socket(AF_INET, SOCK_STREAM, 0);
	if (p[0] < 0 || connect(p[0], (struct sockaddr *)&a, l))
		return zdtm_err("tcp connect to 127.0.0.1:%d", ntohs(a.sin_port));
	p[1] = accept(ls, NULL, NULL);
	close(ls);
	if (p[1] < 0)
		return zdtm_err("accept");
	return 0;
}

static int setup(void)
{
	int i, s0, s1, ms;

	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		return zdtm_err("ignore SIGPIPE");
	for (i = 0; i < NPAIRS; i++) {
		const struct pair_desc *p = &pairs[i];

		if (p->tcp ? tcp_pair(sk[i]) : socketpair(AF_UNIX, SOCK_STREAM, 0, sk[i]))
			return zdtm_err("%s: make the pair", p->what);
		if (p->before) {
			int from = p->how == SHUT_WR ? 0 : 1;

			if (write(sk[i][from], p->before, strlen(p->before)) !=
			    (ssize_t)strlen(p->before))
				return zdtm_err("%s: write", p->what);
		}
		if (shutdown(sk[i][0], p->how))
			return zdtm_err("%s: shutdown", p->what);
	}
	/* let the FINs be acknowledged: the TCP states settle */
	for (i = T_WR; i < NPAIRS; i++) {
		want_states(i, &s0, &s1);
		for (ms = 0; tcp_state(sk[i][0]) != s0 || tcp_state(sk[i][1]) != s1; ms++) {
			if (ms == 2000)
				return zdtm_fail("%s: states %d/%d, not %d/%d after 2 s", pairs[i].what,
						 tcp_state(sk[i][0]), tcp_state(sk[i][1]), s0, s1);
			nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
		}
	}
	return 0;
}

/* fd delivers exactly want (NULL: nothing), then EOF if eof, else nothing more (EAGAIN). */
static int expect_read(int i, int end, const char *want, bool eof)
{
	char buf[128];
	size_t wl = want ? strlen(want) : 0, got = 0;
	struct pollfd pf = { .fd = sk[i][end], .events = POLLIN };
	ssize_t n;

	while (got < wl) {
		if (poll(&pf, 1, 1000) != 1)
			return zdtm_fail("%s: end %d got %zu of the %zu queued bytes within 1 s",
					 pairs[i].what, end, got, wl);
		n = recv(sk[i][end], buf + got, sizeof(buf) - got, MSG_DONTWAIT);
		if (n <= 0)
			return zdtm_fail("%s: end %d: recv gave %zd (%s) after %zu of %zu bytes",
					 pairs[i].what, end, n, n ? strerror(errno) : "EOF", got,
					 wl);
		got += n;
	}
	if (got != wl || (wl && memcmp(buf, want, wl)))
		return zdtm_fail("%s: end %d read '%.*s', expected '%s'", pairs[i].what, end,
				 (int)got, buf, want);
	if (eof && poll(&pf, 1, 1000) != 1)
		return zdtm_fail("%s: end %d: no EOF within 1 s", pairs[i].what, end);
	n = recv(sk[i][end], buf, sizeof(buf), MSG_DONTWAIT);
	if (eof && n != 0)
		return zdtm_fail("%s: end %d: recv gave %zd (%s), expected EOF", pairs[i].what, end,
				 n, n < 0 ? strerror(errno) : "data");
	if (!eof && (n >= 0 || errno != EAGAIN))
		return zdtm_fail("%s: end %d: recv gave %zd (%s), expected EAGAIN (no EOF)",
				 pairs[i].what, end, n, n < 0 ? strerror(errno) : "EOF");
	return 0;
}

static int expect_epipe(int i, int end)
{
	ssize_t n = write(sk[i][end], "x", 1);

	if (n >= 0 || errno != EPIPE)
		return zdtm_fail("%s: write on end %d gave %zd (%s), expected EPIPE", pairs[i].what,
				 end, n, n < 0 ? strerror(errno) : "written");
	return 0;
}

/* from end a to end b, a new message gets through */
static int expect_talk(int i, int a, int b)
{
	char msg[32];
	int n = snprintf(msg, sizeof(msg), "after-cr-%d-%d", i, a);

	if (write(sk[i][a], msg, n) != n)
		return zdtm_err("%s: write on the open direction from end %d", pairs[i].what, a);
	return expect_read(i, b, msg, false);
}

static int check(void)
{
	struct sigaction sa;
	int i, s0, s1;

	for (i = 0; i < NPAIRS; i++)
		if (sk[i][0] < 0 || sk[i][1] < 0)
			return zdtm_fail("%s: pair does not exist (setup did not run)",
					 pairs[i].what);
	if (sigaction(SIGPIPE, NULL, &sa) || sa.sa_handler != SIG_IGN)
		return zdtm_fail("SIGPIPE is no longer ignored: writes cannot be tested");
	for (i = T_WR; i < NPAIRS; i++) {
		want_states(i, &s0, &s1);
		if (tcp_state(sk[i][0]) != s0 || tcp_state(sk[i][1]) != s1)
			return zdtm_fail("%s: TCP states are %d/%d, expected %d/%d", pairs[i].what,
					 tcp_state(sk[i][0]), tcp_state(sk[i][1]), s0, s1);
	}
	/* SHUT_WR: the peer reads the data then EOF; writing fails; the other way works */
	for (i = 0; i < NPAIRS; i++) {
		const struct pair_desc *p = &pairs[i];

		switch (p->how) {
		case SHUT_WR:
			if (expect_read(i, 1, p->before, true) || expect_epipe(i, 0) ||
			    expect_talk(i, 1, 0))
				return -1;
			break;
		case SHUT_RD:
			/* the data queued before still reads, then EOF; the peer may not send
			 * (unix) or is not stopped (tcp: no message goes out for SHUT_RD) */
			if (expect_read(i, 0, p->before, true))
				return -1;
			if (!p->tcp && expect_epipe(i, 1))
				return -1;
			if (expect_talk(i, 0, 1))
				return -1;
			break;
		case SHUT_RDWR:
			if (expect_read(i, 0, NULL, true) || expect_read(i, 1, NULL, true) ||
			    expect_epipe(i, 0))
				return -1;
			/* the tcp peer would get a reset: its write is not tried */
			if (!p->tcp && expect_epipe(i, 1))
				return -1;
			break;
		}
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
