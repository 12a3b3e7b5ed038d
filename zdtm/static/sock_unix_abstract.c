/* Unix sockets in the abstract namespace keep their exact names (the length counts, an
 * embedded NUL included; an autobind name too) and stay reachable by them. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define SEED 0xab57
#define DATA_LEN 5000

enum { LST, DGR, CLI, ACC, NSK };
static const char *const what[NSK] = { "abstract listener", "abstract dgram socket",
				       "autobound client", "accepted socket" };
static int sk[NSK] = { -1, -1, -1, -1 };
/* names as setup bound them (getpid() makes them unique) */
static struct sockaddr_un lname, dname, cname;
static socklen_t llen, dlen, clen;

static socklen_t mkabs(struct sockaddr_un *a, const char *name, size_t len)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, name, len);	/* sun_path[0] = 0: abstract */
	return offsetof(struct sockaddr_un, sun_path) + 1 + len;
}

static int setup(void)
{
	char name[64], buf[DATA_LEN];
	int n;

	n = snprintf(name, sizeof(name), "zdtm.sua.%d.listen", getpid());
	llen = mkabs(&lname, name, n);
	/* the name runs on past an embedded NUL: only its length ends it */
	n = snprintf(name, sizeof(name), "zdtm.sua.%d", getpid());
	memcpy(name + n + 1, "dg", 2);
	dlen = mkabs(&dname, name, n + 3);

	sk[LST] = socket(AF_UNIX, SOCK_STREAM, 0);
	sk[DGR] = socket(AF_UNIX, SOCK_DGRAM, 0);
	sk[CLI] = socket(AF_UNIX, SOCK_STREAM, 0);
	if (sk[LST] < 0 || sk[DGR] < 0 || sk[CLI] < 0)
		return zdtm_err("socket");
	if (bind(sk[LST], (struct sockaddr *)&lname, llen) || listen(sk[LST], 8))
		return zdtm_err("bind/listen the abstract listener");
	if (bind(sk[DGR], (struct sockaddr *)&dname, dlen))
		return zdtm_err("bind the abstract dgram socket");
	/* autobind: the kernel picks a 5-hex-digit abstract name */
	if (bind(sk[CLI], (struct sockaddr *)&(struct sockaddr_un){ .sun_family = AF_UNIX },
		 sizeof(sa_family_t)))
		return zdtm_err("autobind");
	clen = sizeof(cname);
	if (getsockname(sk[CLI], (struct sockaddr *)&cname, &clen))
		return zdtm_err("getsockname");
	zdtm_msg("autobind name: '\\0%.*s'", (int)(clen - 3), cname.sun_path + 1);
	if (connect(sk[CLI], (struct sockaddr *)&lname, llen))
		return zdtm_err("connect");
	sk[ACC] = accept(sk[LST], NULL, NULL);
	if (sk[ACC] < 0)
		return zdtm_err("accept");
	zdtm_fill(buf, DATA_LEN, SEED, 0);
	if (write(sk[CLI], buf, DATA_LEN) != DATA_LEN)
		return zdtm_err("write");
	if (sendto(sk[CLI], "dgram", 5, 0, (struct sockaddr *)&dname, dlen) >= 0)
		return zdtm_fail("sendto on a connected stream socket worked");
	if (sendto(sk[DGR], "self", 4, 0, (struct sockaddr *)&dname, dlen) != 4)
		return zdtm_err("send a datagram to the abstract name");
	return 0;
}

static int same_name(int fd, bool peer, const struct sockaddr_un *want, socklen_t wlen,
		     const char *who)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);

	memset(&got, 0, sizeof(got));
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&got, &l))
		return zdtm_err("%s: get%sname", who, peer ? "peer" : "sock");
	if (l != wlen || memcmp(&got, want, wlen))
		return zdtm_fail("%s: %s name is '\\0%.*s' (len %u), expected '\\0%.*s' (len %u)",
				 who, peer ? "peer" : "own", (int)(l > 3 ? l - 3 : 0),
				 got.sun_path + 1, l, (int)(wlen - 3), want->sun_path + 1, wlen);
	return 0;
}

static int check(void)
{
	char buf[DATA_LEN + 1], c = 0;
	struct sockaddr_un from;
	socklen_t fl = sizeof(from);
	int i, s, inq = -1;
	ssize_t n, bad;

	for (i = 0; i < NSK; i++)
		if (sk[i] < 0)
			return zdtm_fail("%s does not exist (setup did not run)", what[i]);
	if (same_name(sk[LST], false, &lname, llen, what[LST]) ||
	    same_name(sk[DGR], false, &dname, dlen, what[DGR]) ||
	    same_name(sk[CLI], false, &cname, clen, what[CLI]) ||
	    same_name(sk[CLI], true, &lname, llen, what[CLI]) ||
	    same_name(sk[ACC], false, &lname, llen, what[ACC]) ||
	    same_name(sk[ACC], true, &cname, clen, what[ACC]))
		return -1;

	/* queued data: the stream bytes and the datagram the socket sent itself */
	if (ioctl(sk[ACC], SIOCINQ, &inq))
		return zdtm_err("SIOCINQ");
	if (inq != DATA_LEN)
		return zdtm_fail("accepted socket: %d bytes queued (SIOCINQ), expected %d", inq,
				 DATA_LEN);
	n = recv(sk[ACC], buf, sizeof(buf), MSG_DONTWAIT | MSG_WAITALL);
	if (n != DATA_LEN)
		return zdtm_fail("accepted socket holds %zd bytes, expected %d", n, DATA_LEN);
	bad = zdtm_verify(buf, DATA_LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("accepted socket: byte %zd differs", bad);
	memset(&from, 0, sizeof(from));
	n = recvfrom(sk[DGR], buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
	if (n != 4 || memcmp(buf, "self", 4))
		return zdtm_fail("dgram socket: queued datagram is %zd bytes, expected 'self'", n);
	if (fl != dlen || memcmp(&from, &dname, dlen))
		return zdtm_fail("dgram socket: queued datagram's source has len %u, expected its "
				 "own name (len %u)", fl, dlen);

	/* the names still lead to the sockets */
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || sendto(s, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&dname, dlen) != 1)
		return zdtm_err("send to the abstract dgram name after C/R");
	close(s);
	if (recv(sk[DGR], &c, 1, MSG_DONTWAIT) != 1 || c != 'x')
		return zdtm_fail("a datagram sent to the abstract name did not reach fd %d",
				 sk[DGR]);
	if (fcntl(sk[LST], F_SETFL, O_NONBLOCK))	/* never block in accept */
		return zdtm_err("O_NONBLOCK on the listener");
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&lname, llen))
		return zdtm_err("connect to the abstract listener name after C/R");
	i = accept4(sk[LST], NULL, NULL, SOCK_NONBLOCK);
	if (i < 0)
		return zdtm_err("listener fd %d: no connection after connecting to its name",
				sk[LST]);
	if (write(s, "y", 1) != 1 || read(i, &c, 1) != 1 || c != 'y')
		return zdtm_fail("the new connection to the abstract listener carries no data");
	close(i);
	close(s);
	if (write(sk[ACC], "z", 1) != 1 || recv(sk[CLI], &c, 1, MSG_DONTWAIT) != 1 || c != 'z')
		return zdtm_fail("accepted -> client: a byte sent after C/R did not arrive");
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
