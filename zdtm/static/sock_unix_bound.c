/* Unix sockets bound to filesystem paths (relative, one in a subdirectory, one whose file
 * was unlinked) keep their exact names, and the paths still lead to the sockets held. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define DIR_ "ubdir"

enum { LSTREAM, DGRAM, LSEQ, GONE, NSK };
static const struct bsock {
	const char *what, *path;
	int type;
	mode_t umask;	/* at bind time: gives the socket file's mode */
} socks[NSK] = {
	[LSTREAM] = { "stream listener", "ubl.sock", SOCK_STREAM, 077 },
	[DGRAM] = { "dgram socket", "ubd.sock", SOCK_DGRAM, 022 },
	[LSEQ] = { "seqpacket listener", DIR_ "/s.sock", SOCK_SEQPACKET, 0 },
	[GONE] = { "dgram socket with its file unlinked", "ubx.sock", SOCK_DGRAM, 022 },
};
static int sk[NSK] = { -1, -1, -1, -1 };

static socklen_t mkaddr(struct sockaddr_un *a, const char *path)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path, path);
	return offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1;
}

static int setup(void)
{
	struct sockaddr_un a;
	int i;

	if (mkdir(DIR_, 0755))
		return zdtm_err("mkdir %s", DIR_);
	for (i = 0; i < NSK; i++) {
		socklen_t alen = mkaddr(&a, socks[i].path);
		mode_t old;
		int rc;

		sk[i] = socket(AF_UNIX, socks[i].type, 0);
		if (sk[i] < 0)
			return zdtm_err("socket");
		old = umask(socks[i].umask);
		rc = bind(sk[i], (struct sockaddr *)&a, alen);
		umask(old);
		if (rc)
			return zdtm_err("bind %s", socks[i].path);
		if (socks[i].type != SOCK_DGRAM && listen(sk[i], 8))
			return zdtm_err("listen %s", socks[i].path);
	}
	if (unlink(socks[GONE].path))
		return zdtm_err("unlink %s", socks[GONE].path);
	return 0;
}

/* A fresh socket reaches the held one through the path. */
static int reach(int i)
{
	const struct bsock *b = &socks[i];
	struct sockaddr_un a;
	socklen_t alen = mkaddr(&a, b->path);
	int c, s, rc = -1;
	char ch = 0;

	c = socket(AF_UNIX, b->type, 0);
	if (c < 0)
		return zdtm_err("socket");
	if (b->type == SOCK_DGRAM) {
		if (sendto(c, "d", 1, MSG_DONTWAIT, (struct sockaddr *)&a, alen) != 1)
			zdtm_err("%s: send to %s after C/R", b->what, b->path);
		else if (recv(sk[i], &ch, 1, MSG_DONTWAIT) != 1 || ch != 'd')
			zdtm_fail("%s (fd %d): a datagram sent to %s did not arrive", b->what, sk[i],
				  b->path);
		else
			rc = 0;
	} else if (fcntl(sk[i], F_SETFL, O_NONBLOCK)) {	/* never block in accept */
		zdtm_err("%s: O_NONBLOCK", b->what);
	} else if (connect(c, (struct sockaddr *)&a, alen)) {
		zdtm_err("%s: connect to %s after C/R", b->what, b->path);
	} else {
		s = accept4(sk[i], NULL, NULL, SOCK_NONBLOCK);
		if (s < 0)
			zdtm_err("%s (fd %d): no connection to accept after connecting to %s",
				 b->what, sk[i], b->path);
		else if (write(c, "c", 1) != 1 || read(s, &ch, 1) != 1 || ch != 'c')
			zdtm_fail("%s: the connection through %s does not carry data", b->what,
				  b->path);
		else
			rc = 0;
		if (s >= 0)
			close(s);
	}
	close(c);
	return rc;
}

static int check(void)
{
	struct sockaddr_un a, got;
	struct stat st;
	int i, v;
	socklen_t l;

	for (i = 0; i < NSK; i++) {
		const struct bsock *b = &socks[i];
		socklen_t want = mkaddr(&a, b->path);

		if (sk[i] < 0)
			return zdtm_fail("%s does not exist (setup did not run)", b->what);
		l = sizeof(v);
		if (getsockopt(sk[i], SOL_SOCKET, SO_TYPE, &v, &l) || v != b->type)
			return zdtm_fail("%s (fd %d) has type %d, expected %d", b->what, sk[i], v,
					 b->type);
		l = sizeof(v);
		if (getsockopt(sk[i], SOL_SOCKET, SO_ACCEPTCONN, &v, &l) ||
		    v != (b->type != SOCK_DGRAM))
			return zdtm_fail("%s (fd %d): SO_ACCEPTCONN is %d", b->what, sk[i], v);
		memset(&got, 0, sizeof(got));
		l = sizeof(got);
		if (getsockname(sk[i], (struct sockaddr *)&got, &l))
			return zdtm_err("%s: getsockname", b->what);
		if (l != want || got.sun_family != AF_UNIX || strcmp(got.sun_path, b->path))
			return zdtm_fail("%s: bound to '%.*s' (len %u), expected '%s' (len %u)",
					 b->what, (int)(l > 2 ? l - 2 : 0), got.sun_path, l, b->path,
					 want);
		if (i == GONE) {
			if (lstat(b->path, &st) == 0 || errno != ENOENT)
				return zdtm_fail("%s: %s exists again after C/R", b->what, b->path);
			continue;
		}
		if (lstat(b->path, &st))
			return zdtm_err("%s: socket file %s", b->what, b->path);
		if (st.st_mode != (S_IFSOCK | (0777 & ~b->umask)))
			return zdtm_fail("%s: %s has mode %06o, expected %06o", b->what, b->path,
					 st.st_mode, S_IFSOCK | (0777 & ~b->umask));
	}
	for (i = 0; i < NSK; i++)
		if (i != GONE && reach(i))
			return -1;
	/* nothing reaches the unlinked one by its old name */
	mkaddr(&a, socks[GONE].path);
	v = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (v >= 0 && sendto(v, "x", 1, MSG_DONTWAIT, (struct sockaddr *)&a,
			     offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1) >= 0) {
		close(v);
		return zdtm_fail("a datagram to the unlinked %s was accepted", socks[GONE].path);
	}
	if (v >= 0)
		close(v);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
