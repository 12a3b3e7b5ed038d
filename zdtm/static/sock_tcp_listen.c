/* Listening TCP sockets on 127.0.0.1 (port 0 picked by the kernel) keep their port, their
 * backlog (seen with sock_diag) and their options, and accept a connection made at check time. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>

#include "zdtm.h"

#define NLSN 2
static const int backlogs[NLSN] = { 7, 3 };
static int lsk[NLSN] = { -1, -1 };
static int ports[NLSN];

static int setup(void)
{
	int i, one = 1;

	for (i = 0; i < NLSN; i++) {
		struct sockaddr_in a = { .sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t l = sizeof(a);

		lsk[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (lsk[i] < 0)
			return zdtm_err("socket");
		if (i == 1 && setsockopt(lsk[i], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
			return zdtm_err("SO_REUSEADDR");
		if (bind(lsk[i], (struct sockaddr *)&a, l) || listen(lsk[i], backlogs[i]) ||
		    getsockname(lsk[i], (struct sockaddr *)&a, &l))
			return zdtm_err("listener %d on 127.0.0.1:0", i);
		ports[i] = ntohs(a.sin_port);
		zdtm_msg("listener %d: port %d, backlog %d", i, ports[i], backlogs[i]);
	}
	return 0;
}

/* sock_diag: the accept queue length and backlog of the TCP listener with this inode. */
static int diag_listener(ino_t ino, int port, unsigned int *rq, unsigned int *wq)
{
	struct {
		struct nlmsghdr nh;
		struct inet_diag_req_v2 r;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.r = { .sdiag_family = AF_INET, .sdiag_protocol = IPPROTO_TCP,
		       .idiag_states = 1 << TCP_LISTEN },
	};
	static char buf[32768];
	int nl, found = -1;
	ssize_t n;

	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return zdtm_err("NETLINK_SOCK_DIAG socket");
	if (send(nl, &req, sizeof(req), 0) != sizeof(req)) {
		close(nl);
		return zdtm_err("sock_diag request");
	}
	for (;;) {
		struct pollfd pf = { .fd = nl, .events = POLLIN };
		struct nlmsghdr *h;

		if (poll(&pf, 1, 1000) != 1) {
			zdtm_fail("sock_diag: no answer in 1 s");
			break;
		}
		n = recv(nl, buf, sizeof(buf), 0);
		if (n <= 0) {
			zdtm_err("sock_diag recv");
			break;
		}
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				goto out;
			if (h->nlmsg_type == NLMSG_ERROR) {
				zdtm_fail("sock_diag: error answer");
				goto out;
			}
			if (m->idiag_inode == ino && ntohs(m->id.idiag_sport) == port) {
				*rq = m->idiag_rqueue;
				*wq = m->idiag_wqueue;
				found = 0;
			}
		}
	}
out:
	close(nl);
	return found;
}

static int check_listener(int i)
{
	struct sockaddr_in a, b, c;
	socklen_t l = sizeof(a);
	struct tcp_info ti;
	struct stat st;
	unsigned int rq = ~0u, wq = ~0u;
	struct pollfd pf = { .fd = lsk[i], .events = POLLIN };
	int v, cs, as, rc = -1;
	char ch = 0;

	l = sizeof(v);
	if (getsockopt(lsk[i], SOL_SOCKET, SO_ACCEPTCONN, &v, &l) || v != 1)
		return zdtm_fail("listener %d (fd %d) is not listening", i, lsk[i]);
	l = sizeof(v);
	if (getsockopt(lsk[i], SOL_SOCKET, SO_REUSEADDR, &v, &l) || v != (i == 1))
		return zdtm_fail("listener %d: SO_REUSEADDR is %d, expected %d", i, v, i == 1);
	l = sizeof(ti);
	if (getsockopt(lsk[i], IPPROTO_TCP, TCP_INFO, &ti, &l) || ti.tcpi_state != TCP_LISTEN)
		return zdtm_fail("listener %d: TCP state %d, not LISTEN", i, ti.tcpi_state);
	l = sizeof(a);
	if (getsockname(lsk[i], (struct sockaddr *)&a, &l))
		return zdtm_err("listener %d: getsockname", i);
	if (a.sin_family != AF_INET || a.sin_addr.s_addr != htonl(INADDR_LOOPBACK) ||
	    ntohs(a.sin_port) != ports[i])
		return zdtm_fail("listener %d is bound to %s:%d, expected 127.0.0.1:%d", i,
				 inet_ntoa(a.sin_addr), ntohs(a.sin_port), ports[i]);
	if (fstat(lsk[i], &st))
		return zdtm_err("fstat");
	if (diag_listener(st.st_ino, ports[i], &rq, &wq)) {
		if (!zdtm_failed())
			zdtm_fail("listener %d: sock_diag does not list 127.0.0.1:%d inode %lu", i,
				  ports[i], (unsigned long)st.st_ino);
		return -1;
	}
	if (wq != (unsigned int)backlogs[i] || rq != 0)
		return zdtm_fail("listener %d: sock_diag backlog %u with %u pending, expected %d "
				 "with 0", i, wq, rq, backlogs[i]);

	/* a connection made now reaches it */
	cs = socket(AF_INET, SOCK_STREAM, 0);
	if (cs < 0)
		return zdtm_err("socket");
	if (fcntl(lsk[i], F_SETFL, O_NONBLOCK) || connect(cs, (struct sockaddr *)&a, sizeof(a))) {
		zdtm_err("listener %d: connect to 127.0.0.1:%d after C/R", i, ports[i]);
		close(cs);
		return -1;
	}
	if (poll(&pf, 1, 1000) != 1 || (as = accept(lsk[i], NULL, NULL)) < 0) {
		zdtm_fail("listener %d: the connection made after C/R is not accepted", i);
		close(cs);
		return -1;
	}
	l = sizeof(b);
	getsockname(as, (struct sockaddr *)&b, &l);
	l = sizeof(c);
	getpeername(as, (struct sockaddr *)&c, &l);
	l = sizeof(a);
	getsockname(cs, (struct sockaddr *)&a, &l);
	pf.fd = as;
	if (ntohs(b.sin_port) != ports[i] || c.sin_port != a.sin_port)
		zdtm_fail("listener %d: accepted socket is :%d <- :%d, client is :%d", i,
			  ntohs(b.sin_port), ntohs(c.sin_port), ntohs(a.sin_port));
	else if (write(cs, "h", 1) != 1 || poll(&pf, 1, 1000) != 1 || read(as, &ch, 1) != 1 ||
		 ch != 'h')
		zdtm_fail("listener %d: the accepted connection carries no data", i);
	else
		rc = 0;
	close(as);
	close(cs);
	return rc;
}

static int check(void)
{
	int i;

	for (i = 0; i < NLSN; i++)
		if (lsk[i] < 0)
			return zdtm_fail("listener %d does not exist (setup did not run)", i);
	for (i = 0; i < NLSN; i++)
		if (check_listener(i))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
