/* UDP sockets on 127.0.0.1, bound (port 0) and one connected, with datagrams queued and
 * unread: each keeps its size (an empty one too), contents, order and source address; the
 * connected socket still filters out other senders. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define SEED 0x0d9

enum { A, B, C, NSK };	/* B is connected to A */
static const char *const names[NSK] = { "A (bound)", "B (connected to A)", "C (bound)" };
static int sk[NSK] = { -1, -1, -1 };
static struct sockaddr_in addr[NSK];

static const struct dgram {
	int from, to, len;
} dgrams[] = {
	{ C, A, 100 }, { B, A, 1 },  { C, A, 1400 }, { A, B, 3000 }, { B, A, 0 },
	{ C, A, 9000 }, { A, C, 5 }, { A, B, 1 },    { B, A, 30000 }, { C, A, 7 },
};
#define NDGRAMS (int)(sizeof(dgrams) / sizeof(dgrams[0]))
#define MAXLEN 30000

static int setup(void)
{
	static char buf[MAXLEN];
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t l;
	int i;

	for (i = 0; i < NSK; i++) {
		l = sizeof(addr[i]);
		addr[i] = (struct sockaddr_in){ .sin_family = AF_INET,
						.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		sk[i] = socket(AF_INET, SOCK_DGRAM, 0);
		if (sk[i] < 0 || bind(sk[i], (struct sockaddr *)&addr[i], l) ||
		    getsockname(sk[i], (struct sockaddr *)&addr[i], &l))
			return zdtm_err("UDP socket on 127.0.0.1:0");
	}
	if (connect(sk[B], (struct sockaddr *)&addr[A], sizeof(addr[A])))
		return zdtm_err("connect B to A");
	for (i = 0; i < NDGRAMS; i++) {
		const struct dgram *d = &dgrams[i];

		zdtm_fill(buf, d->len, SEED, i * 100000);
		if ((d->from == B ? send(sk[B], buf, d->len, 0)
				  : sendto(sk[d->from], buf, d->len, 0,
					   (struct sockaddr *)&addr[d->to], sizeof(addr[0]))) != d->len)
			return zdtm_err("datagram %d (%d bytes)", i, d->len);
	}
	/* loopback delivers at once: every datagram must be queued, none dropped */
	for (i = 0; i < NSK; i++) {
		l = sizeof(mem);
		if (getsockopt(sk[i], SOL_SOCKET, SO_MEMINFO, mem, &l))
			return zdtm_err("SO_MEMINFO");
		if (mem[SK_MEMINFO_DROPS])
			return zdtm_fail("%s dropped %u datagrams", names[i], mem[SK_MEMINFO_DROPS]);
	}
	return 0;
}

static int check_dgram(int i)
{
	static char buf[MAXLEN + 16];
	const struct dgram *d = &dgrams[i];
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int inq = -1;
	ssize_t n, bad;

	if (ioctl(sk[d->to], SIOCINQ, &inq))
		return zdtm_err("SIOCINQ");
	/* UDP SIOCINQ: the payload size of the next datagram */
	if (inq != d->len)
		return zdtm_fail("%s: next datagram is %d bytes (SIOCINQ), expected datagram %d of "
				 "%d bytes", names[d->to], inq, i, d->len);
	memset(&from, 0, sizeof(from));
	n = recvfrom(sk[d->to], buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC,
		     (struct sockaddr *)&from, &fl);
	if (n < 0)
		return zdtm_err("%s: datagram %d (%d bytes) from %s is gone", names[d->to], i,
				d->len, names[d->from]);
	if (n != d->len)
		return zdtm_fail("%s: datagram %d is %zd bytes, expected %d", names[d->to], i, n,
				 d->len);
	bad = zdtm_verify(buf, n, SEED, i * 100000);
	if (bad >= 0)
		return zdtm_fail("%s: datagram %d: byte %zd differs", names[d->to], i, bad);
	if (fl != sizeof(from) || from.sin_family != AF_INET ||
	    from.sin_addr.s_addr != addr[d->from].sin_addr.s_addr ||
	    from.sin_port != addr[d->from].sin_port)
		return zdtm_fail("%s: datagram %d comes from %s:%d, expected %s at port %d",
				 names[d->to], i, inet_ntoa(from.sin_addr), ntohs(from.sin_port),
				 names[d->from], ntohs(addr[d->from].sin_port));
	return 0;
}

static int check(void)
{
	struct sockaddr_in a;
	socklen_t l;
	int i, to, s;
	char c;

	for (i = 0; i < NSK; i++) {
		if (sk[i] < 0)
			return zdtm_fail("%s does not exist (setup did not run)", names[i]);
		l = sizeof(a);
		if (getsockname(sk[i], (struct sockaddr *)&a, &l) ||
		    a.sin_port != addr[i].sin_port || a.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
			return zdtm_fail("%s is bound to %s:%d, expected 127.0.0.1:%d", names[i],
					 inet_ntoa(a.sin_addr), ntohs(a.sin_port),
					 ntohs(addr[i].sin_port));
	}
	l = sizeof(a);
	if (getpeername(sk[B], (struct sockaddr *)&a, &l) || a.sin_port != addr[A].sin_port)
		return zdtm_fail("%s is not connected to A's port %d", names[B],
				 ntohs(addr[A].sin_port));
	l = sizeof(a);
	if (getpeername(sk[A], (struct sockaddr *)&a, &l) == 0)
		return zdtm_fail("%s got connected", names[A]);

	for (to = 0; to < NSK; to++) {
		for (i = 0; i < NDGRAMS; i++)
			if (dgrams[i].to == to && check_dgram(i))
				return -1;
		if (recv(sk[to], &c, 1, MSG_DONTWAIT) >= 0 || errno != EAGAIN)
			return zdtm_fail("%s holds more datagrams than were sent", names[to]);
	}

	/* B only takes datagrams from A: a stranger's is dropped, A's marker gets through */
	s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || sendto(s, "S", 1, 0, (struct sockaddr *)&addr[B], sizeof(addr[B])) != 1)
		return zdtm_err("send from a new socket");
	close(s);
	if (sendto(sk[A], "M", 1, 0, (struct sockaddr *)&addr[B], sizeof(addr[B])) != 1)
		return zdtm_err("send A -> B");
	c = 0;
	if (recv(sk[B], &c, 1, MSG_DONTWAIT) != 1 || c != 'M')
		return zdtm_fail("%s took '%c' instead of A's marker: not connected to A", names[B],
				 c);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
