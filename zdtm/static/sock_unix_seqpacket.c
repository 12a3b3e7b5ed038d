/* A connected unix seqpacket pair (bind/listen/connect/accept on a relative path) keeps the
 * records queued both ways: each record keeps its size, contents and order; a short read
 * still truncates one record and discards its rest. */
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define PATH "usq.sock"
#define SEED 0x5e9a
#define MAXLEN 40000

static int lsk = -1, csk = -1, ssk = -1;

/* records in the order sent; dir 0: client->server, 1: server->client */
static const struct rec {
	int dir, len;
} recs[] = {
	{ 0, 1 },    { 0, 777 }, { 1, 40000 }, { 0, 40000 }, { 1, 3 },   { 0, 2 },
	{ 0, 4096 }, { 1, 1 },	 { 1, 12345 }, { 0, 100 },   { 0, 9999 }, { 1, 64 },
};
#define NRECS (int)(sizeof(recs) / sizeof(recs[0]))
#define SHORT_READ_REC 9	/* the 100-byte record is read with a 10-byte buffer */

static int setup(void)
{
	static char buf[MAXLEN];
	struct sockaddr_un addr = { .sun_family = AF_UNIX, .sun_path = PATH };
	socklen_t alen = offsetof(struct sockaddr_un, sun_path) + sizeof(PATH);
	int i;

	lsk = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	csk = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (lsk < 0 || csk < 0)
		return zdtm_err("socket");
	if (bind(lsk, (struct sockaddr *)&addr, alen) || listen(lsk, 4))
		return zdtm_err("bind/listen %s", PATH);
	if (connect(csk, (struct sockaddr *)&addr, alen))
		return zdtm_err("connect %s", PATH);
	ssk = accept(lsk, NULL, NULL);
	if (ssk < 0)
		return zdtm_err("accept");
	for (i = 0; i < NRECS; i++) {
		zdtm_fill(buf, recs[i].len, SEED, i * 100000);
		if (send(recs[i].dir ? ssk : csk, buf, recs[i].len, MSG_DONTWAIT | MSG_EOR) !=
		    recs[i].len)
			return zdtm_err("send record %d (%d bytes)", i, recs[i].len);
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

static int check_rec(int i)
{
	static char buf[MAXLEN + 16];
	const char *dir = recs[i].dir ? "server->client" : "client->server";
	int fd = recs[i].dir ? csk : ssk, inq = -1, len = recs[i].len, left = 0, j;
	size_t room = i == SHORT_READ_REC ? 10 : sizeof(buf);
	struct iovec iov = { buf, room };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n, bad;

	/* unix seqpacket SIOCINQ: the bytes of all the records still queued */
	for (j = i; j < NRECS; j++)
		if (recs[j].dir == recs[i].dir)
			left += recs[j].len;
	if (ioctl(fd, SIOCINQ, &inq))
		return zdtm_err("%s: SIOCINQ", dir);
	if (inq != left)
		return zdtm_fail("%s: %d bytes queued (SIOCINQ) before record %d, expected %d", dir,
				 inq, i, left);
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0)
		return zdtm_err("%s: record %d (%d bytes) is gone", dir, i, len);
	if (i == SHORT_READ_REC) {
		if (n != 10 || !(mh.msg_flags & MSG_TRUNC))
			return zdtm_fail("%s: 10-byte read of the %d-byte record %d gave %zd bytes, "
					 "flags %#x (expected 10 and MSG_TRUNC)", dir, len, i, n,
					 mh.msg_flags);
		len = 10;
	} else if (n != len || (mh.msg_flags & MSG_TRUNC)) {
		return zdtm_fail("%s: record %d is %zd bytes (flags %#x), expected %d", dir, i, n,
				 mh.msg_flags, len);
	}
	bad = zdtm_verify(buf, len, SEED, i * 100000);
	if (bad >= 0)
		return zdtm_fail("%s: record %d: byte %zd of %d differs", dir, i, bad, len);
	return 0;
}

static int check(void)
{
	int fds[3] = { lsk, csk, ssk }, i, v;
	socklen_t l;
	char c;

	for (i = 0; i < 3; i++) {
		l = sizeof(v);
		if (fds[i] < 0)
			return zdtm_fail("socket %d of 3 does not exist (setup did not run)", i);
		if (getsockopt(fds[i], SOL_SOCKET, SO_TYPE, &v, &l) || v != SOCK_SEQPACKET)
			return zdtm_fail("fd %d is not a seqpacket socket", fds[i]);
	}
	if (check_name(lsk, "listener", false, PATH) || check_name(ssk, "accepted", false, PATH) ||
	    check_name(csk, "client", true, PATH) || check_name(csk, "client", false, NULL))
		return -1;
	for (i = 0; i < NRECS; i++)
		if (recs[i].dir == 0 && check_rec(i))
			return -1;
	for (i = 0; i < NRECS; i++)
		if (recs[i].dir == 1 && check_rec(i))
			return -1;
	for (i = 1; i < 3; i++) {
		ssize_t n = recv(fds[i], &c, 1, MSG_DONTWAIT);

		if (n >= 0 || errno != EAGAIN)
			return zdtm_fail("%s holds more than the records sent: recv gave %zd (%s)",
					 i == 1 ? "client" : "server", n,
					 n == 0 ? "EOF" : n > 0 ? "extra record" : strerror(errno));
	}
	if (send(csk, "ab", 2, MSG_DONTWAIT) != 2 || recv(ssk, &c, 1, MSG_DONTWAIT) != 1 ||
	    c != 'a')
		return zdtm_fail("a record sent after C/R did not arrive");
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
