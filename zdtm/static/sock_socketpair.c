/* Unix socketpairs of each type (stream, datagram, seqpacket) keep the data queued both ways:
 * SIOCINQ and SIOCOUTQ agree with it, and it reads back with its message boundaries. */
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define NTYPES 3
#define NMSG 5
#define MAXTOTAL 100000

static const int types[NTYPES] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
static const char *const tnames[NTYPES] = { "stream", "dgram", "seqpacket" };
/* message sizes per type and direction (0: end 0 -> end 1, 1: end 1 -> end 0) */
static const int sizes[NTYPES][2][NMSG] = {
	{ { 1, 30000, 2, 4096, 20000 }, { 5000, 1, 1, 1, 9 } },
	{ { 700, 1, 16000, 3, 8192 }, { 60000, 10, 1, 2, 5 } },
	{ { 2, 2, 50000, 100, 1 }, { 1, 9000, 4000, 77, 1024 } },
};
static int sp[NTYPES][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 } };

static uint64_t seed(int t, int d)
{
	return 0x50c0 + t * 2 + d;
}

static int total(int t, int d, int from)
{
	int i, sum = 0;

	for (i = from; i < NMSG; i++)
		sum += sizes[t][d][i];
	return sum;
}

static int setup(void)
{
	static char buf[MAXTOTAL];
	int t, d, i, sz = 1 << 20;

	for (t = 0; t < NTYPES; t++) {
		if (socketpair(AF_UNIX, types[t], 0, sp[t]))
			return zdtm_err("socketpair(%s)", tnames[t]);
		for (d = 0; d < 2; d++) {
			int pos = 0;

			if (setsockopt(sp[t][d], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)))
				return zdtm_err("SO_SNDBUF");
			zdtm_fill(buf, total(t, d, 0), seed(t, d), 0);
			for (i = 0; i < NMSG; i++) {
				int len = sizes[t][d][i];

				if (send(sp[t][d], buf + pos, len, MSG_DONTWAIT) != len)
					return zdtm_err("%s: send message %d (%d bytes) from end %d",
							tnames[t], i, len, d);
				pos += len;
			}
		}
	}
	return 0;
}

/* Everything end d sent is queued at end !d. */
static int check_dir(int t, int d)
{
	static char buf[MAXTOTAL + 16];
	int rfd = sp[t][!d], wfd = sp[t][d], all = total(t, d, 0);
	int inq = -1, outq = -1, i, pos = 0;
	ssize_t n, bad;

	if (ioctl(rfd, SIOCINQ, &inq) || ioctl(wfd, SIOCOUTQ, &outq))
		return zdtm_err("%s: SIOCINQ/SIOCOUTQ", tnames[t]);
	/* SIOCOUTQ counts the sender's memory in the queue: at least the bytes */
	if (outq < all)
		return zdtm_fail("%s: end %d accounts %d bytes in flight (SIOCOUTQ), less than the "
				 "%d it sent", tnames[t], d, outq, all);
	for (i = 0; i < NMSG; i++) {
		int len = sizes[t][d][i];
		/* SIOCINQ: stream and seqpacket count all the bytes, dgram the next message */
		int want = types[t] == SOCK_DGRAM ? len : total(t, d, i);

		if (types[t] == SOCK_STREAM && i)
			break;
		if (i && ioctl(rfd, SIOCINQ, &inq))
			return zdtm_err("%s: SIOCINQ", tnames[t]);
		if (inq != want)
			return zdtm_fail("%s: end %d has %d bytes (SIOCINQ) before message %d, "
					 "expected %d", tnames[t], !d, inq, i, want);
		if (types[t] == SOCK_STREAM)
			len = all;
		n = recv(rfd, buf, types[t] == SOCK_STREAM ? (size_t)all + 1 : sizeof(buf),
			 MSG_DONTWAIT | (types[t] == SOCK_STREAM ? MSG_WAITALL : MSG_TRUNC));
		if (n != len)
			return zdtm_fail("%s: end %d: message %d is %zd bytes, expected %d",
					 tnames[t], !d, i, n, len);
		bad = zdtm_verify(buf, len, seed(t, d), pos);
		if (bad >= 0)
			return zdtm_fail("%s: end %d: message %d: byte %zd of %d differs", tnames[t],
					 !d, i, bad, len);
		pos += len;
	}
	n = recv(rfd, buf, 1, MSG_DONTWAIT);
	if (n >= 0 || errno != EAGAIN)
		return zdtm_fail("%s: end %d: recv after the %d bytes gave %zd (%s)", tnames[t], !d,
				 all, n, n == 0 ? "EOF" : n > 0 ? "extra data" : strerror(errno));
	return 0;
}

static int check(void)
{
	int t, d, v;
	socklen_t l;

	for (t = 0; t < NTYPES; t++)
		for (d = 0; d < 2; d++) {
			l = sizeof(v);
			if (sp[t][d] < 0)
				return zdtm_fail("%s socketpair does not exist (setup did not run)",
						 tnames[t]);
			if (getsockopt(sp[t][d], SOL_SOCKET, SO_TYPE, &v, &l) || v != types[t])
				return zdtm_fail("%s socketpair end %d (fd %d) has type %d",
						 tnames[t], d, sp[t][d], v);
		}
	for (t = 0; t < NTYPES; t++)
		for (d = 0; d < 2; d++)
			if (check_dir(t, d))
				return -1;
	/* each pair is still connected to itself */
	for (t = 0; t < NTYPES; t++) {
		char c = 0;

		if (send(sp[t][1], "z", 1, MSG_DONTWAIT) != 1 ||
		    recv(sp[t][0], &c, 1, MSG_DONTWAIT) != 1 || c != 'z')
			return zdtm_fail("%s socketpair: a byte sent after C/R did not arrive",
					 tnames[t]);
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
