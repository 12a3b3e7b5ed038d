/* A connected unix stream pair, made with bind/listen/connect/accept on a relative path,
 * keeps its names and the data queued both ways (written in several chunks, unread). */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define PATH "sus.sock"
#define SEED_C2S 0x5c25
#define SEED_S2C 0x55c2
#define C2S_LEN 70000
#define S2C_LEN 30001

static int lsk = -1, csk = -1, ssk = -1;
/* chunk sizes of the writes: the stream must come out as one run of bytes anyway */
static const int chunks[] = { 1, 4095, 4096, 17, 65536, 100000 };

static int write_stream(int fd, uint64_t seed, size_t len)
{
	static char buf[C2S_LEN > S2C_LEN ? C2S_LEN : S2C_LEN];
	size_t done = 0;
	unsigned int i = 0;

	zdtm_fill(buf, len, seed, 0);
	while (done < len) {
		size_t n = chunks[i++ % (sizeof(chunks) / sizeof(chunks[0]))];

		if (n > len - done)
			n = len - done;
		if (zdtm_write_all(fd, buf + done, n) != (ssize_t)n)
			return zdtm_err("write %zu bytes at %zu on fd %d", n, done, fd);
		done += n;
	}
	return 0;
}

static int setup(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX, .sun_path = PATH };
	socklen_t alen = offsetof(struct sockaddr_un, sun_path) + sizeof(PATH);

	lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	csk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || csk < 0)
		return zdtm_err("socket");
	if (bind(lsk, (struct sockaddr *)&addr, alen) || listen(lsk, 4))
		return zdtm_err("bind/listen %s", PATH);
	if (connect(csk, (struct sockaddr *)&addr, alen))
		return zdtm_err("connect %s", PATH);
	ssk = accept(lsk, NULL, NULL);
	if (ssk < 0)
		return zdtm_err("accept");
	if (write_stream(csk, SEED_C2S, C2S_LEN) || write_stream(ssk, SEED_S2C, S2C_LEN))
		return -1;
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
	if (a.sun_family != AF_UNIX || len != wlen ||
	    (want && strcmp(a.sun_path, want)))
		return zdtm_fail("%s: %s name is '%.*s' (len %u), expected '%s' (len %u)", what,
				 peer ? "peer" : "own", (int)(len > 2 ? len - 2 : 0), a.sun_path,
				 len, want ? want : "(unnamed)", wlen);
	return 0;
}

static int check_sock(int fd, const char *what)
{
	int v = -1;
	socklen_t l = sizeof(v);

	if (fd < 0)
		return zdtm_fail("%s socket does not exist (setup did not run)", what);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l))
		return zdtm_err("%s socket fd %d: SO_TYPE", what, fd);
	if (v != SOCK_STREAM)
		return zdtm_fail("%s socket fd %d has type %d, not SOCK_STREAM", what, fd, v);
	return 0;
}

/* The receiver holds exactly len bytes of the seeded stream, then nothing. */
static int drain(int rfd, int wfd, const char *dir, uint64_t seed, int len)
{
	static char buf[C2S_LEN + 1];
	int inq = -1, outq = -1;
	ssize_t n, bad;

	if (ioctl(rfd, SIOCINQ, &inq) || ioctl(wfd, SIOCOUTQ, &outq))
		return zdtm_err("%s: SIOCINQ/SIOCOUTQ", dir);
	if (inq != len)
		return zdtm_fail("%s: receiver has %d bytes queued (SIOCINQ), expected %d", dir, inq,
				 len);
	/* unix SIOCOUTQ counts the sender's buffer memory in the peer's queue (>= the bytes) */
	if (outq < len)
		return zdtm_fail("%s: sender accounts %d bytes (SIOCOUTQ), less than the %d queued",
				 dir, outq, len);
	n = recv(rfd, buf, len + 1, MSG_DONTWAIT | MSG_WAITALL);
	if (n < 0)
		return zdtm_err("%s: recv", dir);
	if (n != len)
		return zdtm_fail("%s: read %zd bytes, expected %d", dir, n, len);
	bad = zdtm_verify(buf, len, seed, 0);
	if (bad >= 0)
		return zdtm_fail("%s: byte %zd of %d differs", dir, bad, len);
	n = recv(rfd, buf, 1, MSG_DONTWAIT);
	if (n >= 0 || errno != EAGAIN)
		return zdtm_fail("%s: after the data recv gave %zd (%s), expected EAGAIN", dir, n,
				 n < 0 ? strerror(errno) : n == 0 ? "EOF" : "extra byte");
	return 0;
}

/* The pair still talks: a new message each way arrives. */
static int ping(int a, int b, const char *dir)
{
	char out[32], in[32] = "";
	int len = snprintf(out, sizeof(out), "ping %d", getpid());
	struct pollfd p = { .fd = b, .events = POLLIN };

	if (write(a, out, len) != len)
		return zdtm_err("%s: write after drain", dir);
	if (poll(&p, 1, 1000) != 1)
		return zdtm_fail("%s: message written after C/R did not arrive in 1 s", dir);
	if (recv(b, in, sizeof(in), MSG_DONTWAIT) != len || memcmp(in, out, len))
		return zdtm_fail("%s: message after C/R came back as '%.32s'", dir, in);
	return 0;
}

static int check(void)
{
	if (check_sock(lsk, "listening") || check_sock(csk, "client") ||
	    check_sock(ssk, "accepted"))
		return -1;
	if (check_name(lsk, "listener", false, PATH) || check_name(ssk, "accepted", false, PATH) ||
	    check_name(csk, "client", true, PATH) || check_name(csk, "client", false, NULL) ||
	    check_name(ssk, "accepted", true, NULL))
		return -1;
	if (drain(ssk, csk, "client->server", SEED_C2S, C2S_LEN) ||
	    drain(csk, ssk, "server->client", SEED_S2C, S2C_LEN))
		return -1;
	if (ping(csk, ssk, "client->server") || ping(ssk, csk, "server->client"))
		return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
