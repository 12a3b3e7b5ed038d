/* NETLINK_ROUTE sockets keep their port ids (one picked by the kernel, one chosen), their
 * multicast groups (bind groups, and memberships added above 32), their netlink flags, and
 * still get the kernel's answers to a request made after C/R. */
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include "zdtm.h"

#define BIND_GROUPS (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_ROUTE)
static const int add_groups[] = { RTNLGRP_NSID, RTNLGRP_BRVLAN };	/* 28 and 33 */

enum { AUTO, CHOSEN, NSK };
static const char *const names[NSK] = { "autobound socket", "socket with a chosen port id" };
static int sk[NSK] = { -1, -1 };
static struct sockaddr_nl bound[NSK];		/* getsockname as read in setup */
static uint32_t members[NSK][4];		/* NETLINK_LIST_MEMBERSHIPS in setup */
static socklen_t memberslen[NSK];

static const struct {
	int sock, name;
	const char *label;
} flags[] = {
	{ AUTO, NETLINK_PKTINFO, "NETLINK_PKTINFO" },
	{ AUTO, NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS" },
	{ AUTO, NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR" },
	{ CHOSEN, NETLINK_CAP_ACK, "NETLINK_CAP_ACK" },
	{ CHOSEN, NETLINK_EXT_ACK, "NETLINK_EXT_ACK" },
};
#define NFLAGS (int)(sizeof(flags) / sizeof(flags[0]))

static int setup(void)
{
	int i, one = 1;

	for (i = 0; i < NSK; i++) {
		struct sockaddr_nl a = { .nl_family = AF_NETLINK };

		if (i == AUTO)
			a.nl_groups = BIND_GROUPS;
		else
			a.nl_pid = 0x40000000 | getpid();	/* unique: has our pid */
		sk[i] = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
		if (sk[i] < 0)
			return zdtm_err("NETLINK_ROUTE socket");
		if (bind(sk[i], (struct sockaddr *)&a, sizeof(a)))
			return zdtm_err("bind %s", names[i]);
	}
	for (i = 0; i < (int)(sizeof(add_groups) / sizeof(add_groups[0])); i++)
		if (setsockopt(sk[AUTO], SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &add_groups[i],
			       sizeof(int)))
			return zdtm_err("NETLINK_ADD_MEMBERSHIP %d", add_groups[i]);
	for (i = 0; i < NFLAGS; i++)
		if (setsockopt(sk[flags[i].sock], SOL_NETLINK, flags[i].name, &one, sizeof(one)))
			return zdtm_err("%s: %s", names[flags[i].sock], flags[i].label);
	for (i = 0; i < NSK; i++) {
		socklen_t l = sizeof(bound[i]);

		if (getsockname(sk[i], (struct sockaddr *)&bound[i], &l))
			return zdtm_err("getsockname");
		zdtm_msg("%s: port id %u, groups %#x", names[i], bound[i].nl_pid,
			 bound[i].nl_groups);
		memberslen[i] = sizeof(members[i]);
		if (getsockopt(sk[i], SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, members[i],
			       &memberslen[i]))
			return zdtm_err("NETLINK_LIST_MEMBERSHIPS");
	}
	/* bit n-1 for group n: the bind groups, 28 and 33 */
	if (members[AUTO][0] != (BIND_GROUPS | 1u << 27) || members[AUTO][1] != 1u << 0)
		return zdtm_fail("groups read back as %#x %#x, not the ones asked for",
				 members[AUTO][0], members[AUTO][1]);
	return 0;
}

/* Ask the kernel for lo's link; the answer comes to this socket's port id. */
static int ask(int i, uint32_t seq)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = RTM_GETLINK,
			.nlmsg_flags = NLM_F_REQUEST, .nlmsg_seq = seq },
		.ifi = { .ifi_family = AF_UNSPEC, .ifi_index = (int)if_nametoindex("lo") },
	};
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	static char buf[16384];
	char cbuf[64];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf };
	struct pollfd pf = { .fd = sk[i], .events = POLLIN };

	if (sendto(sk[i], &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) !=
	    sizeof(req))
		return zdtm_err("%s: RTM_GETLINK request", names[i]);
	for (;;) {
		struct nlmsghdr *h;
		struct cmsghdr *ch;
		bool pktinfo = false;
		ssize_t n;

		if (poll(&pf, 1, 1000) != 1)
			return zdtm_fail("%s: no answer to RTM_GETLINK in 1 s", names[i]);
		mh.msg_controllen = sizeof(cbuf);
		n = recvmsg(sk[i], &mh, MSG_DONTWAIT);
		if (n < 0)
			return zdtm_err("%s: recvmsg", names[i]);
		for (ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch))
			if (ch->cmsg_level == SOL_NETLINK && ch->cmsg_type == NETLINK_PKTINFO)
				pktinfo = true;
		for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;	/* a multicast notification */
			if (h->nlmsg_type != RTM_NEWLINK)
				return zdtm_fail("%s: answer of type %d, not RTM_NEWLINK", names[i],
						 h->nlmsg_type);
			if (h->nlmsg_pid != bound[i].nl_pid)
				return zdtm_fail("%s: answer addressed to port %u, ours is %u",
						 names[i], h->nlmsg_pid, bound[i].nl_pid);
			if (pktinfo != (i == AUTO))
				return zdtm_fail("%s: NETLINK_PKTINFO cmsg %s", names[i],
						 pktinfo ? "present though not asked" : "missing");
			return 0;
		}
	}
}

static int check(void)
{
	struct sockaddr_nl a;
	uint32_t m[4];
	socklen_t l;
	int i, v;

	for (i = 0; i < NSK; i++) {
		if (sk[i] < 0)
			return zdtm_fail("%s does not exist (setup did not run)", names[i]);
		l = sizeof(v);
		if (getsockopt(sk[i], SOL_SOCKET, SO_PROTOCOL, &v, &l) || v != NETLINK_ROUTE)
			return zdtm_fail("%s (fd %d): protocol %d, not NETLINK_ROUTE", names[i],
					 sk[i], v);
		memset(&a, 0, sizeof(a));
		l = sizeof(a);
		if (getsockname(sk[i], (struct sockaddr *)&a, &l))
			return zdtm_err("%s: getsockname", names[i]);
		if (a.nl_pid != bound[i].nl_pid || a.nl_groups != bound[i].nl_groups)
			return zdtm_fail("%s: port id %u groups %#x, expected port id %u groups %#x",
					 names[i], a.nl_pid, a.nl_groups, bound[i].nl_pid,
					 bound[i].nl_groups);
		memset(m, 0, sizeof(m));
		l = sizeof(m);
		if (getsockopt(sk[i], SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, m, &l))
			return zdtm_err("NETLINK_LIST_MEMBERSHIPS");
		if (l != memberslen[i] || memcmp(m, members[i], sizeof(m)))
			return zdtm_fail("%s: groups %#x %#x (len %u), expected %#x %#x (len %u)",
					 names[i], m[0], m[1], l, members[i][0], members[i][1],
					 memberslen[i]);
	}
	for (i = 0; i < NFLAGS; i++) {
		l = sizeof(v);
		v = -1;
		if (getsockopt(sk[flags[i].sock], SOL_NETLINK, flags[i].name, &v, &l))
			return zdtm_err("%s: get %s", names[flags[i].sock], flags[i].label);
		if (v != 1)
			return zdtm_fail("%s: %s is %d, expected 1", names[flags[i].sock],
					 flags[i].label, v);
	}
	for (i = 0; i < NSK; i++)
		if (ask(i, 0x5eed0 + i))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
