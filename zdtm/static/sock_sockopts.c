/* Socket options survive C/R: on an established loopback TCP connection (buffers, keepalive
 * timings, nodelay, linger, TOS, TTL, timeouts, congestion control...), on a UDP socket and
 * on a unix socket (SO_PEEK_OFF with data queued). Each option reads back at check time
 * exactly as it read back in setup (the kernel doubles SO_RCVBUF/SO_SNDBUF: the value read
 * back is the reference). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "zdtm.h"

enum { TCP, UDP, UNX, NSK };
static const char *const sknames[NSK] = { "tcp", "udp", "unix" };
static int sk[NSK] = { -1, -1, -1 };
static int tcp_peer = -1, unix_peer = -1;

#define INT(v) &(int){ v }, sizeof(int)

#define ADJ 1	/* the kernel stores something else (buffers: doubled, timeouts: in jiffies) */
#define OPT 2	/* may be refused (privilege): then skipped */

static const struct opt {
	int sock, level, name;
	const char *label;
	const void *val;
	socklen_t len;
	int flags;
} opts[] = {
	{ TCP, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", INT(65536), ADJ },
	{ TCP, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", INT(32768), ADJ },
	{ TCP, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", INT(1), 0 },
	{ TCP, IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", INT(123), 0 },
	{ TCP, IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", INT(17), 0 },
	{ TCP, IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", INT(5), 0 },
	{ TCP, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", INT(1), 0 },
	{ TCP, IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", INT(4567), 0 },
	{ TCP, IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", INT(16384), 0 },
	{ TCP, IPPROTO_TCP, TCP_CONGESTION, "TCP_CONGESTION", "reno", 5, 0 },
	{ TCP, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", INT(1), 0 },
	{ TCP, SOL_SOCKET, SO_LINGER, "SO_LINGER", &(struct linger){ 1, 7 },
	  sizeof(struct linger), 0 },
	{ TCP, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", INT(1), 0 },
	/* IP_TOS also sets the priority (6 for LOWDELAY): SO_PRIORITY must come after it */
	{ TCP, IPPROTO_IP, IP_TOS, "IP_TOS", INT(IPTOS_LOWDELAY), 0 },
	{ TCP, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", INT(3), 0 },
	{ TCP, SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", INT(10), 0 },
	{ TCP, SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO", &(struct timeval){ 2, 500000 },
	  sizeof(struct timeval), ADJ },
	{ TCP, SOL_SOCKET, SO_SNDTIMEO, "SO_SNDTIMEO", &(struct timeval){ 1, 250000 },
	  sizeof(struct timeval), ADJ },
	{ TCP, SOL_SOCKET, SO_MARK, "SO_MARK", INT(0x5a17), OPT },
	{ TCP, IPPROTO_IP, IP_TTL, "IP_TTL", INT(33), 0 },
	{ UDP, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", INT(100000), ADJ },
	{ UDP, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", INT(1), 0 },
	{ UDP, SOL_SOCKET, SO_NO_CHECK, "SO_NO_CHECK", INT(1), 0 },
	{ UDP, SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", INT(1), 0 },
	{ UDP, IPPROTO_IP, IP_TTL, "IP_TTL", INT(5), 0 },
	{ UDP, IPPROTO_IP, IP_TOS, "IP_TOS", INT(0x28), 0 },
	{ UDP, IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", INT(7), 0 },
	{ UDP, IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", INT(0), 0 },
	{ UDP, IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", INT(1), 0 },
	{ UDP, IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", INT(1), 0 },
	{ UDP, IPPROTO_IP, IP_RECVERR, "IP_RECVERR", INT(1), 0 },
	{ UNX, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", INT(50000), ADJ },
	{ UNX, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", INT(5), 0 },
};
#define NOPTS (int)(sizeof(opts) / sizeof(opts[0]))

static struct {
	bool set;		/* setup set it */
	char got[64];		/* as read back in setup */
	socklen_t gotlen;
} st[NOPTS];
#define UNIX_DATA "0123456789abcdef"

static const char *show(const void *v, socklen_t len, char *buf, size_t blen)
{
	const unsigned char *p = v;
	int n = 0;

	if (len == sizeof(int)) {
		snprintf(buf, blen, "%d", *(const int *)v);
		return buf;
	}
	if (len == sizeof(struct timeval)) {
		snprintf(buf, blen, "%ld.%06ld s", (long)((const struct timeval *)v)->tv_sec,
			 (long)((const struct timeval *)v)->tv_usec);
		return buf;
	}
	if (len == sizeof(struct linger)) {
		snprintf(buf, blen, "{onoff %d, linger %d}", ((const struct linger *)v)->l_onoff,
			 ((const struct linger *)v)->l_linger);
		return buf;
	}
	for (socklen_t i = 0; i < len && n < (int)blen - 3; i++)
		n += snprintf(buf + n, blen - n, "%c", p[i] >= 32 && p[i] < 127 ? p[i] : '.');
	return buf;
}

/* Every option set reads back as recorded; returns the number that differ. */
static int compare_all(void)
{
	char buf[64], x[80], y[80];
	socklen_t l;
	int i, fails = 0;

	for (i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];

		if (!st[i].set)
			continue;
		l = sizeof(buf);
		memset(buf, 0, sizeof(buf));
		if (getsockopt(sk[o->sock], o->level, o->name, buf, &l)) {
			zdtm_err("%s: get %s", sknames[o->sock], o->label);
			fails++;
		} else if (l != st[i].gotlen || memcmp(buf, st[i].got, l)) {
			zdtm_fail("%s socket: %s is %s, expected %s", sknames[o->sock], o->label,
				  show(buf, l, x, 80), show(st[i].got, st[i].gotlen, y, 80));
			fails++;
		}
	}
	return fails;
}

static int tcp_conn(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int ls = socket(AF_INET, SOCK_STREAM, 0);

	if (ls < 0 || bind(ls, (struct sockaddr *)&a, l) || listen(ls, 1) ||
	    getsockname(ls, (struct sockaddr *)&a, &l))
		return zdtm_err("listener on 127.0.0.1");
	sk[TCP] = socket(AF_INET, SOCK_STREAM, 0);
	if (sk[TCP] < 0 || connect(sk[TCP], (struct sockaddr *)&a, l))
		return zdtm_err("connect");
	tcp_peer = accept(ls, NULL, NULL);
	close(ls);
	if (tcp_peer < 0)
		return zdtm_err("accept");
	return 0;
}

static int setup(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	char x[80], y[80];
	int i, up[2];

	if (tcp_conn())
		return -1;
	sk[UDP] = socket(AF_INET, SOCK_DGRAM, 0);
	if (sk[UDP] < 0 || bind(sk[UDP], (struct sockaddr *)&a, sizeof(a)))
		return zdtm_err("UDP socket on 127.0.0.1:0");
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, up))
		return zdtm_err("socketpair");
	sk[UNX] = up[0];
	unix_peer = up[1];
	if (write(unix_peer, UNIX_DATA, strlen(UNIX_DATA)) != (ssize_t)strlen(UNIX_DATA))
		return zdtm_err("write");

	for (i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];

		if (setsockopt(sk[o->sock], o->level, o->name, o->val, o->len)) {
			if ((o->flags & OPT) && (errno == EPERM || errno == EACCES)) {
				zdtm_msg("%s %s refused (%s): not tested", sknames[o->sock], o->label,
					 strerror(errno));
				continue;
			}
			return zdtm_err("%s: set %s", sknames[o->sock], o->label);
		}
		st[i].gotlen = sizeof(st[i].got);
		if (getsockopt(sk[o->sock], o->level, o->name, st[i].got, &st[i].gotlen))
			return zdtm_err("%s: get %s", sknames[o->sock], o->label);
		st[i].set = true;
		if (!(o->flags & ADJ) &&
		    (st[i].gotlen < o->len || memcmp(st[i].got, o->val, o->len)))
			return zdtm_fail("%s: %s reads back as %s, set to %s", sknames[o->sock],
					 o->label, show(st[i].got, st[i].gotlen, x, 80),
					 show(o->val, o->len, y, 80));
		if (o->flags & ADJ)
			zdtm_msg("%s: %s set to %s reads back as %s", sknames[o->sock], o->label,
				 show(o->val, o->len, y, 80), show(st[i].got, st[i].gotlen, x, 80));
	}
	/* no option changed another one afterwards */
	return compare_all() ? -1 : 0;
}

static int check(void)
{
	char buf[64];
	int i, fails;
	ssize_t n;

	for (i = 0; i < NSK; i++)
		if (sk[i] < 0)
			return zdtm_fail("the %s socket does not exist (setup did not run)", sknames[i]);
	fails = compare_all();
	if (fails)
		return zdtm_fail("%d of %d socket options differ (the first is the reason)", fails,
				 NOPTS);
	/* SO_PEEK_OFF at work: a peek starts 5 bytes into the queued data */
	n = recv(sk[UNX], buf, 3, MSG_PEEK | MSG_DONTWAIT);
	if (n != 3 || memcmp(buf, UNIX_DATA + 5, 3))
		return zdtm_fail("unix: MSG_PEEK with SO_PEEK_OFF 5 gave '%.*s', expected '%.3s'",
				 (int)(n > 0 ? n : 0), buf, UNIX_DATA + 5);
	n = recv(sk[UNX], buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)strlen(UNIX_DATA) || memcmp(buf, UNIX_DATA, n))
		return zdtm_fail("unix: queued data is '%.*s', expected '%s'", (int)(n > 0 ? n : 0),
				 buf, UNIX_DATA);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
