/* Bound unix datagram sockets with datagrams queued, unread: each datagram keeps its size
 * (including an empty one), its contents, its order and its sender's address. One socket is
 * connected to its peer; an unnamed third socket sends too. */
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define PATH_A "uda.sock"
#define PATH_B "udb.sock"
#define SEED 0xd6a7

enum { A, B, C, NSK };
static const char *const names[NSK] = { "A (" PATH_A ")", "B (" PATH_B ")", "C (unnamed)" };
static const char *const paths[NSK] = { PATH_A, PATH_B, NULL };
static int sk[NSK] = { -1, -1, -1 };

/* The datagrams, in the order sent: from, to, size. */
static const struct dgram {
	int from, to, len;
} dgrams[] = {
	{ A, B, 1 },	{ C, B, 300 },	{ A, B, 65000 }, { B, A, 17 },	{ A, B, 0 },
	{ C, B, 4096 }, { B, A, 8000 }, { A, B, 2 },	 { B, A, 1 },	{ A, B, 1500 },
};
#define NDGRAMS (int)(sizeof(dgrams) / sizeof(dgrams[0]))
#define MAXLEN 65000

static socklen_t mkaddr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path, path);
	return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static int setup(void)
{
	static char buf[MAXLEN];
	struct sockaddr_un a;
	socklen_t alen;
	int i, bufsz = 1 << 20;

	for (i = 0; i < NSK; i++) {
		sk[i] = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (sk[i] < 0)
			return zdtm_err("socket");
		/* room for all the datagrams in the senders' accounts */
		if (setsockopt(sk[i], SOL_SOCKET, SO_SNDBUF, &bufsz, sizeof(bufsz)))
			return zdtm_err("SO_SNDBUF");
		if (paths[i]) {
			alen = mkaddr(&a, paths[i]);
			if (bind(sk[i], (struct sockaddr *)&a, alen))
				return zdtm_err("bind %s", paths[i]);
		}
	}
	alen = mkaddr(&a, PATH_B);
	if (connect(sk[A], (struct sockaddr *)&a, alen))
		return zdtm_err("connect A to B");

	for (i = 0; i < NDGRAMS; i++) {
		const struct dgram *d = &dgrams[i];
		ssize_t n;

		zdtm_fill(buf, d->len, SEED, i * 100000);
		if (d->from == A) {
			n = send(sk[A], buf, d->len, MSG_DONTWAIT);
		} else {
			alen = mkaddr(&a, paths[d->to]);
			n = sendto(sk[d->from], buf, d->len, MSG_DONTWAIT, (struct sockaddr *)&a, alen);
		}
		if (n != d->len)
			return zdtm_err("datagram %d (%d bytes) from %s to %s: sent %zd", i, d->len,
					names[d->from], names[d->to], n);
	}
	return 0;
}

static int check_name(int fd, const char *what, bool peer, const char *want)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);
	socklen_t wlen = want ? offsetof(struct sockaddr_un, sun_path) + strlen(want) + 1
			      : sizeof(sa_family_t);

	memset(&a, 0, sizeof(a));
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&a, &len))
		return zdtm_err("%s: get%sname", what, peer ? "peer" : "sock");
	if (a.sun_family != AF_UNIX || len != wlen || (want && strcmp(a.sun_path, want)))
		return zdtm_fail("%s: %s name is '%.*s' (len %u), expected '%s' (len %u)", what,
				 peer ? "peer" : "own", (int)(len > 2 ? len - 2 : 0), a.sun_path,
				 len, want ? want : "(unnamed)", wlen);
	return 0;
}

/* The next datagram queued on sk[to] is dgrams[i]. */
static int check_dgram(int i)
{
	static char buf[MAXLEN + 16];
	const struct dgram *d = &dgrams[i];
	struct sockaddr_un from;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_name = &from, .msg_namelen = sizeof(from),
			     .msg_iov = &iov, .msg_iovlen = 1 };
	/* an unnamed sender gives no address at all */
	socklen_t wlen = d->from == C ? 0
				      : offsetof(struct sockaddr_un, sun_path) +
						strlen(paths[d->from]) + 1;
	int inq = -1;
	ssize_t n, bad;

	if (ioctl(sk[d->to], SIOCINQ, &inq))
		return zdtm_err("SIOCINQ on %s", names[d->to]);
	/* unix datagram SIOCINQ: the size of the next datagram */
	if (inq != d->len)
		return zdtm_fail("%s: next datagram is %d bytes (SIOCINQ), expected datagram %d "
				 "of %d bytes from %s", names[d->to], inq, i, d->len,
				 names[d->from]);
	memset(&from, 0, sizeof(from));
	n = recvmsg(sk[d->to], &mh, MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0)
		return zdtm_err("%s: datagram %d (%d bytes) from %s is gone", names[d->to], i,
				d->len, names[d->from]);
	if (n != d->len || (mh.msg_flags & MSG_TRUNC))
		return zdtm_fail("%s: datagram %d is %zd bytes, expected %d", names[d->to], i, n,
				 d->len);
	bad = zdtm_verify(buf, n, SEED, i * 100000);
	if (bad >= 0)
		return zdtm_fail("%s: datagram %d: byte %zd of %d differs", names[d->to], i, bad,
				 d->len);
	if (mh.msg_namelen != wlen || (wlen && from.sun_family != AF_UNIX) ||
	    (d->from != C && strcmp(from.sun_path, paths[d->from])))
		return zdtm_fail("%s: datagram %d comes from '%.*s' (len %u), expected %s",
				 names[d->to], i,
				 (int)(mh.msg_namelen > 2 ? mh.msg_namelen - 2 : 0),
				 from.sun_path, mh.msg_namelen, names[d->from]);
	return 0;
}

static int check(void)
{
	char c;
	int i, v;
	socklen_t l;

	for (i = 0; i < NSK; i++) {
		l = sizeof(v);
		if (sk[i] < 0)
			return zdtm_fail("socket %s does not exist (setup did not run)", names[i]);
		if (getsockopt(sk[i], SOL_SOCKET, SO_TYPE, &v, &l) || v != SOCK_DGRAM)
			return zdtm_fail("socket %s (fd %d) is not a datagram socket", names[i],
					 sk[i]);
	}
	if (check_name(sk[A], names[A], false, PATH_A) ||
	    check_name(sk[B], names[B], false, PATH_B) || check_name(sk[C], names[C], false, NULL) ||
	    check_name(sk[A], names[A], true, PATH_B))
		return -1;
	l = sizeof(struct sockaddr_un);
	if (getpeername(sk[B], (struct sockaddr *)&(struct sockaddr_un){ 0 }, &l) == 0)
		return zdtm_fail("%s got connected to a peer", names[B]);

	/* per receiver, the datagrams arrive in the order sent */
	for (i = 0; i < NDGRAMS; i++)
		if (dgrams[i].to == B && check_dgram(i))
			return -1;
	for (i = 0; i < NDGRAMS; i++)
		if (dgrams[i].to == A && check_dgram(i))
			return -1;
	for (i = 0; i < NSK; i++) {
		ssize_t n = recv(sk[i], &c, 1, MSG_DONTWAIT);

		if (n >= 0 || errno != EAGAIN)
			return zdtm_fail("%s holds an extra datagram (%zd bytes) after the %d sent",
					 names[i], n, NDGRAMS);
	}
	/* the connected A still reaches B */
	if (send(sk[A], "x", 1, MSG_DONTWAIT) != 1)
		return zdtm_err("send on connected %s after C/R", names[A]);
	if (recv(sk[B], &c, 1, MSG_DONTWAIT) != 1 || c != 'x')
		return zdtm_fail("%s did not get the datagram A sent after C/R", names[B]);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
