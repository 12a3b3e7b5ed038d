/* A listening unix stream socket with connections pending, not accepted: each client already
 * wrote its own data (one then closed). At check time the connections are accepted in
 * order, and each carries its client's bytes and talks back to that client. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "zdtm.h"

#define PATH "ulis.sock"
#define BOUND_CLIENT 2
#define BOUND_PATH "ulc2.sock"
#define CLOSED_CLIENT 4
#define NCLI 5
#define MAXLEN 20000

static int lsk = -1;
static int cli[NCLI] = { -1, -1, -1, -1, -1 };

static int len_of(int i)
{
	return i * 4000 + 7;
}

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
	struct sockaddr_un a, b;
	socklen_t alen = mkaddr(&a, PATH), blen = mkaddr(&b, BOUND_PATH);
	int i;

	lsk = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lsk < 0 || bind(lsk, (struct sockaddr *)&a, alen) || listen(lsk, 16))
		return zdtm_err("listening socket on %s", PATH);
	for (i = 0; i < NCLI; i++) {
		cli[i] = socket(AF_UNIX, SOCK_STREAM, 0);
		if (cli[i] < 0)
			return zdtm_err("socket");
		if (i == BOUND_CLIENT && bind(cli[i], (struct sockaddr *)&b, blen))
			return zdtm_err("bind client to %s", BOUND_PATH);
		if (connect(cli[i], (struct sockaddr *)&a, alen))
			return zdtm_err("connect client %d", i);
		zdtm_fill(buf, len_of(i), 0x1150 + i, 0);
		if (write(cli[i], buf, len_of(i)) != len_of(i))
			return zdtm_err("client %d: write %d bytes", i, len_of(i));
	}
	close(cli[CLOSED_CLIENT]);
	cli[CLOSED_CLIENT] = -2;	/* closed on purpose */
	return 0;
}

static int check_conn(int i, int s)
{
	static char buf[MAXLEN + 1];
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	int inq = -1, len = len_of(i);
	char c = 0;
	ssize_t n, bad;

	if (ioctl(s, SIOCINQ, &inq))
		return zdtm_err("connection %d: SIOCINQ", i);
	if (inq != len)
		return zdtm_fail("connection %d accepted has %d bytes queued (SIOCINQ), expected "
				 "%d from client %d", i, inq, len, i);
	n = recv(s, buf, len + 1, MSG_DONTWAIT | MSG_WAITALL);
	if (n != len)
		return zdtm_fail("connection %d: read %zd bytes, expected %d", i, n, len);
	bad = zdtm_verify(buf, len, 0x1150 + i, 0);
	if (bad >= 0)
		return zdtm_fail("connection %d: byte %zd of %d differs: not client %d's data", i,
				 bad, len, i);
	memset(&a, 0, sizeof(a));
	if (getpeername(s, (struct sockaddr *)&a, &l))
		return zdtm_err("connection %d: getpeername", i);
	if (i == BOUND_CLIENT ? l != mkaddr(&(struct sockaddr_un){ 0 }, BOUND_PATH) ||
					strcmp(a.sun_path, BOUND_PATH)
			      : l != sizeof(sa_family_t))
		return zdtm_fail("connection %d: peer name '%.*s' (len %u), expected %s", i,
				 (int)(l > 2 ? l - 2 : 0), a.sun_path, l,
				 i == BOUND_CLIENT ? BOUND_PATH : "unnamed");
	l = sizeof(a);
	memset(&a, 0, sizeof(a));
	if (getsockname(s, (struct sockaddr *)&a, &l) || strcmp(a.sun_path, PATH))
		return zdtm_fail("connection %d: own name '%s', expected %s", i, a.sun_path, PATH);

	if (i == CLOSED_CLIENT) {
		n = recv(s, &c, 1, MSG_DONTWAIT);
		if (n != 0)
			return zdtm_fail("connection %d: its client closed, but recv gave %zd (%s), "
					 "not EOF", i, n, n < 0 ? strerror(errno) : "data");
		return 0;
	}
	n = recv(s, &c, 1, MSG_DONTWAIT);
	if (n >= 0 || errno != EAGAIN)
		return zdtm_fail("connection %d: after the data recv gave %zd, expected EAGAIN", i,
				 n);
	/* the accepted end is the one client i is connected to */
	c = 'a' + i;
	if (write(s, &c, 1) != 1)
		return zdtm_err("connection %d: write back", i);
	c = 0;
	if (recv(cli[i], &c, 1, MSG_DONTWAIT) != 1 || c != 'a' + i)
		return zdtm_fail("client %d did not get the byte written on connection %d", i, i);
	return 0;
}

static int check(void)
{
	int i, s, v;
	socklen_t l = sizeof(v);

	if (lsk < 0)
		return zdtm_fail("listening socket does not exist (setup did not run)");
	if (getsockopt(lsk, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || v != 1)
		return zdtm_fail("fd %d is not a listening socket", lsk);
	if (fcntl(lsk, F_SETFL, O_NONBLOCK))	/* never block in accept */
		return zdtm_err("O_NONBLOCK on the listener");
	for (i = 0; i < NCLI; i++) {
		struct sockaddr_un a;

		if (i == CLOSED_CLIENT)
			continue;
		if (cli[i] < 0)
			return zdtm_fail("client %d does not exist", i);
		l = sizeof(a);
		memset(&a, 0, sizeof(a));
		if (getpeername(cli[i], (struct sockaddr *)&a, &l) || strcmp(a.sun_path, PATH))
			return zdtm_fail("client %d is not connected to %s", i, PATH);
	}
	for (i = 0; i < NCLI; i++) {
		s = accept4(lsk, NULL, NULL, SOCK_NONBLOCK);
		if (s < 0)
			return zdtm_err("accept connection %d of %d", i, NCLI);
		v = check_conn(i, s);
		close(s);
		if (v)
			return -1;
	}
	s = accept4(lsk, NULL, NULL, SOCK_NONBLOCK);
	if (s >= 0 || errno != EAGAIN)
		return zdtm_fail("listener has more than the %d pending connections", NCLI);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
