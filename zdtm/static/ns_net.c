/* Private network namespaces survive C/R with their devices, addresses and routes, and
 * still carry traffic. Child B unshares a network namespace and binds a UDP socket; child
 * A unshares another and, over rtnetlink, creates a veth pair whose peer it puts into B's
 * namespace, then configures both sides (it enters B's namespace only to open a netlink
 * socket there): lo up in both, zv-a 10.199.1.1/24 (MTU 1400, fixed MAC), zv-b
 * 10.199.1.2/24 (MTU 1300, another MAC), and in A a route to 10.199.2.0/24 via B.
 * After C/R each side checks its devices (index, flags UP and RUNNING, MTU, MAC, address,
 * netmask); A checks its route by connecting a UDP socket through it and sends a datagram
 * to B over the veth; B receives it (from 10.199.1.1) and sends one to itself over lo.
 * The root checks that A, B and itself are in three different network namespaces. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define IF_A "zv-a"
#define IF_B "zv-b"
#define ADDR_A "10.199.1.1"
#define ADDR_B "10.199.1.2"
#define ROUTE_DST "10.199.2.0"
#define ROUTE_PROBE "10.199.2.5"
#define INDEX_A 17
#define INDEX_B 23

struct side {
	const char *ifname, *addr;
	int mtu;
	uint8_t mac[6];
	int ifindex;		/* as created, to compare after C/R */
};

struct shared {
	struct side a, b;
	uint16_t b_port;	/* B's UDP socket, network order */
	uint32_t b_done;	/* B finished its check: A (the veth's owner) may go */
	char payload[64];
};

static struct shared *sh;
static int b_sock = -1;
static pid_t a_pid, b_pid;

/* --- rtnetlink ------------------------------------------------------------------------ */

struct nlreq {
	struct nlmsghdr n;
	char buf[2048];
};

static struct rtattr *add_attr(struct nlmsghdr *n, int type, const void *data, size_t len)
{
	struct rtattr *rta = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));

	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
	return rta;
}

static void end_nest(struct nlmsghdr *n, struct rtattr *nest)
{
	nest->rta_len = (char *)n + n->nlmsg_len - (char *)nest;
}

static void *add_raw(struct nlmsghdr *n, size_t len)
{
	void *p = (char *)n + NLMSG_ALIGN(n->nlmsg_len);

	memset(p, 0, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + NLMSG_ALIGN(len);
	return p;
}

static void init_req(struct nlreq *r, int type, int flags)
{
	memset(r, 0, sizeof(*r));
	r->n.nlmsg_len = NLMSG_HDRLEN;
	r->n.nlmsg_type = type;
	r->n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
}

static int talk(int nl, struct nlreq *r, const char *what)
{
	char buf[4096];
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	ssize_t n;

	r->n.nlmsg_seq++;
	if (send(nl, r, r->n.nlmsg_len, 0) != (ssize_t)r->n.nlmsg_len)
		return zdtm_err("netlink send (%s)", what);
	n = recv(nl, buf, sizeof(buf), 0);
	if (n < (ssize_t)NLMSG_HDRLEN || h->nlmsg_type != NLMSG_ERROR)
		return zdtm_fail("netlink: no ack for %s", what);
	errno = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
	if (errno)
		return zdtm_err("netlink: %s", what);
	return 0;
}

static int link_up(int nl, int ifindex, const char *name)
{
	struct nlreq r;
	struct ifinfomsg *ifi;

	init_req(&r, RTM_NEWLINK, 0);
	ifi = add_raw(&r.n, sizeof(*ifi));
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return talk(nl, &r, name);
}

static int add_addr(int nl, int ifindex, const char *addr)
{
	struct nlreq r;
	struct ifaddrmsg *ifa;
	struct in_addr a;

	inet_pton(AF_INET, addr, &a);
	init_req(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	ifa = add_raw(&r.n, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = 24;
	ifa->ifa_index = ifindex;
	add_attr(&r.n, IFA_LOCAL, &a, 4);
	add_attr(&r.n, IFA_ADDRESS, &a, 4);
	return talk(nl, &r, addr);
}

static int add_route(int nl, const char *dst, const char *gw)
{
	struct nlreq r;
	struct rtmsg *rt;
	struct in_addr d, g;

	inet_pton(AF_INET, dst, &d);
	inet_pton(AF_INET, gw, &g);
	init_req(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
	rt = add_raw(&r.n, sizeof(*rt));
	rt->rtm_family = AF_INET;
	rt->rtm_dst_len = 24;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_STATIC;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	add_attr(&r.n, RTA_DST, &d, 4);
	add_attr(&r.n, RTA_GATEWAY, &g, 4);
	return talk(nl, &r, "route " ROUTE_DST "/24");
}

static int create_veth(int nl, int peer_ns_fd)
{
	struct nlreq r;
	struct ifinfomsg *ifi;
	struct rtattr *linkinfo, *data, *peer;
	uint32_t mtu_a = sh->a.mtu, mtu_b = sh->b.mtu;

	/* Explicit, different indexes: with equal ones the kernel takes the peer for the
	 * device itself and delays its operstate (RUNNING) by up to a second. */
	init_req(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
	ifi = add_raw(&r.n, sizeof(*ifi));
	ifi->ifi_index = INDEX_A;
	add_attr(&r.n, IFLA_IFNAME, IF_A, strlen(IF_A) + 1);
	add_attr(&r.n, IFLA_MTU, &mtu_a, 4);
	add_attr(&r.n, IFLA_ADDRESS, sh->a.mac, 6);
	linkinfo = add_attr(&r.n, IFLA_LINKINFO, NULL, 0);
	add_attr(&r.n, IFLA_INFO_KIND, "veth", 4);
	data = add_attr(&r.n, IFLA_INFO_DATA, NULL, 0);
	peer = add_attr(&r.n, VETH_INFO_PEER, NULL, 0);
	ifi = add_raw(&r.n, sizeof(*ifi));
	ifi->ifi_index = INDEX_B;
	add_attr(&r.n, IFLA_IFNAME, IF_B, strlen(IF_B) + 1);
	add_attr(&r.n, IFLA_MTU, &mtu_b, 4);
	add_attr(&r.n, IFLA_ADDRESS, sh->b.mac, 6);
	add_attr(&r.n, IFLA_NET_NS_FD, &peer_ns_fd, 4);
	end_nest(&r.n, peer);
	end_nest(&r.n, data);
	end_nest(&r.n, linkinfo);
	return talk(nl, &r, "create veth " IF_A "/" IF_B);
}

/* --- device checks (ioctl, in the caller's namespace) --------------------------------- */

static int check_dev(const char *who, const char *name, int ifindex, int mtu, const uint8_t *mac,
		     const char *addr, bool need_running)
{
	struct ifreq ifr = { 0 };
	char got[INET_ADDRSTRLEN];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = -1;
	int idx = if_nametoindex(name);

	if (s < 0)
		return zdtm_err("%s: socket", who);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (!idx) {
		zdtm_fail("%s: no device %s", who, name);
		goto out;
	}
	if (ifindex && idx != ifindex) {
		zdtm_fail("%s: %s has index %d, was %d", who, name, idx, ifindex);
		goto out;
	}
	/* RUNNING follows the carrier asynchronously (linkwatch): allow it some time */
	for (int i = 0; i < 200; i++) {
		if (ioctl(s, SIOCGIFFLAGS, &ifr)) {
			zdtm_err("%s: SIOCGIFFLAGS %s", who, name);
			goto out;
		}
		if (!need_running || (ifr.ifr_flags & IFF_RUNNING))
			break;
		usleep(10000);
	}
	if (!(ifr.ifr_flags & IFF_UP) || (need_running && !(ifr.ifr_flags & IFF_RUNNING))) {
		zdtm_fail("%s: %s flags are %#x: not UP%s", who, name, ifr.ifr_flags,
			  need_running ? " and RUNNING" : "");
		goto out;
	}
	if (mtu) {
		if (ioctl(s, SIOCGIFMTU, &ifr) || ifr.ifr_mtu != mtu) {
			zdtm_fail("%s: %s MTU is %d, expected %d", who, name, ifr.ifr_mtu, mtu);
			goto out;
		}
	}
	if (mac) {
		if (ioctl(s, SIOCGIFHWADDR, &ifr) || memcmp(ifr.ifr_hwaddr.sa_data, mac, 6)) {
			const uint8_t *m = (const uint8_t *)ifr.ifr_hwaddr.sa_data;

			zdtm_fail("%s: %s MAC is %02x:%02x:%02x:%02x:%02x:%02x", who, name, m[0], m[1],
				  m[2], m[3], m[4], m[5]);
			goto out;
		}
	}
	if (ioctl(s, SIOCGIFADDR, &ifr)) {
		zdtm_err("%s: %s has no IPv4 address", who, name);
		goto out;
	}
	inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, got, sizeof(got));
	if (strcmp(got, addr)) {
		zdtm_fail("%s: %s address is %s, expected %s", who, name, got, addr);
		goto out;
	}
	if (strcmp(addr, "127.0.0.1")) {
		if (ioctl(s, SIOCGIFNETMASK, &ifr)) {
			zdtm_err("%s: SIOCGIFNETMASK %s", who, name);
			goto out;
		}
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_netmask)->sin_addr, got,
			  sizeof(got));
		if (strcmp(got, "255.255.255.0")) {
			zdtm_fail("%s: %s netmask is %s, expected 255.255.255.0", who, name, got);
			goto out;
		}
	}
	rc = 0;
out:
	close(s);
	return rc;
}

/* --- B ---------------------------------------------------------------------------------- */

static int b_setup(void *arg)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);

	(void)arg;
	if (unshare(CLONE_NEWNET))
		return zdtm_err("B: unshare(CLONE_NEWNET)");
	b_sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (b_sock < 0 || bind(b_sock, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockname(b_sock, (struct sockaddr *)&sa, &len))
		return zdtm_err("B: UDP socket");
	sh->b_port = sa.sin_port;
	return 0;
}

static int recv_one(const char *who, const char *want_from, const char *want_data)
{
	struct pollfd p = { .fd = b_sock, .events = POLLIN };
	struct sockaddr_in from;
	socklen_t len = sizeof(from);
	char buf[128], src[INET_ADDRSTRLEN];
	ssize_t n;

	if (poll(&p, 1, 3000) != 1)
		return zdtm_fail("%s: no datagram within 3 s (waiting for one from %s)", who,
				 want_from);
	n = recvfrom(b_sock, buf, sizeof(buf) - 1, MSG_DONTWAIT, (struct sockaddr *)&from, &len);
	if (n < 0)
		return zdtm_err("%s: recvfrom", who);
	buf[n] = '\0';
	inet_ntop(AF_INET, &from.sin_addr, src, sizeof(src));
	if (strcmp(src, want_from) || strcmp(buf, want_data))
		return zdtm_fail("%s: got '%s' from %s, expected '%s' from %s", who, buf, src,
				 want_data, want_from);
	return 0;
}

static int b_check_all(void)
{
	struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = sh->b_port };

	if (check_dev("B", "lo", 0, 0, NULL, "127.0.0.1", false) ||
	    check_dev("B", IF_B, sh->b.ifindex, sh->b.mtu, sh->b.mac, ADDR_B, true))
		return -1;
	if (recv_one("B (over the veth)", ADDR_A, sh->payload))
		return -1;
	inet_pton(AF_INET, "127.0.0.1", &lo.sin_addr);
	if (sendto(b_sock, "over lo", 7, 0, (struct sockaddr *)&lo, sizeof(lo)) != 7)
		return zdtm_err("B: send to itself over lo");
	return recv_one("B (over lo)", "127.0.0.1", "over lo");
}

static int b_check(void *arg)
{
	int rc;

	(void)arg;
	rc = b_check_all();
	__atomic_store_n(&sh->b_done, 1, __ATOMIC_SEQ_CST);
	return rc;
}

/* --- A ---------------------------------------------------------------------------------- */

static int a_setup(void *arg)
{
	char path[64];
	int fd_a = -1, fd_b = -1, nl_a = -1, nl_b = -1, rc = -1;

	(void)arg;
	snprintf(path, sizeof(path), "/proc/%d/ns/net", b_pid);
	fd_b = open(path, O_RDONLY | O_CLOEXEC);
	if (fd_b < 0)
		return zdtm_err("A: open %s", path);
	if (unshare(CLONE_NEWNET)) {
		zdtm_err("A: unshare(CLONE_NEWNET)");
		goto out;
	}
	fd_a = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	nl_a = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd_a < 0 || nl_a < 0) {
		zdtm_err("A: own netns fd / netlink socket");
		goto out;
	}
	if (create_veth(nl_a, fd_b))
		goto out;
	sh->a.ifindex = if_nametoindex(IF_A);
	if (sh->a.ifindex != INDEX_A) {
		zdtm_fail("A: %s got index %d, asked for %d", IF_A, sh->a.ifindex, INDEX_A);
		goto out;
	}
	if (link_up(nl_a, 1, "lo up in A") || link_up(nl_a, sh->a.ifindex, IF_A " up") ||
	    add_addr(nl_a, sh->a.ifindex, ADDR_A) || add_route(nl_a, ROUTE_DST, ADDR_B))
		goto out;

	/* B's side: a netlink socket opened in B's namespace works on B's devices */
	if (setns(fd_b, CLONE_NEWNET)) {
		zdtm_err("A: setns into B's namespace");
		goto out;
	}
	nl_b = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	sh->b.ifindex = if_nametoindex(IF_B);
	if (setns(fd_a, CLONE_NEWNET)) {
		zdtm_err("A: setns back");
		goto out;
	}
	if (nl_b < 0 || sh->b.ifindex != INDEX_B) {
		zdtm_fail("A: no netlink socket or no %s (index %d) in B's namespace", IF_B,
			  INDEX_B);
		goto out;
	}
	if (link_up(nl_b, 1, "lo up in B") || link_up(nl_b, sh->b.ifindex, IF_B " up") ||
	    add_addr(nl_b, sh->b.ifindex, ADDR_B))
		goto out;
	rc = 0;
out:
	if (nl_b >= 0)
		close(nl_b);
	if (nl_a >= 0)
		close(nl_a);
	if (fd_a >= 0)
		close(fd_a);
	close(fd_b);
	return rc;
}

static int a_check(void *arg)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(9) }, me;
	socklen_t len = sizeof(me);
	char src[INET_ADDRSTRLEN];
	int s, rc = -1;

	(void)arg;
	if (check_dev("A", "lo", 0, 0, NULL, "127.0.0.1", false) ||
	    check_dev("A", IF_A, sh->a.ifindex, sh->a.mtu, sh->a.mac, ADDR_A, true))
		return -1;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return zdtm_err("A: socket");
	/* the route: only it makes 10.199.2.0/24 reachable, from A's address */
	inet_pton(AF_INET, ROUTE_PROBE, &dst.sin_addr);
	if (connect(s, (struct sockaddr *)&dst, sizeof(dst))) {
		zdtm_err("A: connect to %s (route %s/24 via %s)", ROUTE_PROBE, ROUTE_DST, ADDR_B);
		goto out;
	}
	if (getsockname(s, (struct sockaddr *)&me, &len)) {
		zdtm_err("A: getsockname");
		goto out;
	}
	inet_ntop(AF_INET, &me.sin_addr, src, sizeof(src));
	if (strcmp(src, ADDR_A)) {
		zdtm_fail("A: the route to %s uses source %s, expected %s", ROUTE_PROBE, src, ADDR_A);
		goto out;
	}
	close(s);
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	dst.sin_port = sh->b_port;
	inet_pton(AF_INET, ADDR_B, &dst.sin_addr);
	if (s < 0 || sendto(s, sh->payload, strlen(sh->payload), 0, (struct sockaddr *)&dst,
			    sizeof(dst)) != (ssize_t)strlen(sh->payload)) {
		zdtm_err("A: send to B at %s:%d", ADDR_B, ntohs(sh->b_port));
		goto out;
	}
	rc = 0;
out:
	if (s >= 0)
		close(s);
	/* the veth dies with A's namespace: stay until B has looked at its end */
	for (int i = 0; i < 800 && !__atomic_load_n(&sh->b_done, __ATOMIC_SEQ_CST); i++)
		usleep(10000);
	return rc;
}

/* --- root ------------------------------------------------------------------------------- */

static int setup(void)
{
	static const struct zdtm_task a = { .setup = a_setup, .check = a_check };
	static const struct zdtm_task b = { .setup = b_setup, .check = b_check };
	static const uint8_t mac_a[6] = { 0x02, 0x7a, 0x64, 0x74, 0x6d, 0x0a };
	static const uint8_t mac_b[6] = { 0x02, 0x7a, 0x64, 0x74, 0x6d, 0x0b };

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared memory");
	sh->a = (struct side){ .ifname = IF_A, .addr = ADDR_A, .mtu = 1400 };
	sh->b = (struct side){ .ifname = IF_B, .addr = ADDR_B, .mtu = 1300 };
	memcpy(sh->a.mac, mac_a, 6);
	memcpy(sh->b.mac, mac_b, 6);
	snprintf(sh->payload, sizeof(sh->payload), "datagram from A, test %d", getpid());
	b_pid = zdtm_child(&b);
	if (b_pid <= 0)
		return -1;
	a_pid = zdtm_child(&a);
	return a_pid > 0 ? 0 : -1;
}

static int check(void)
{
	char path[64];
	struct stat me, a, b;
	int rc = 0;

	if (a_pid <= 0 || b_pid <= 0)
		return zdtm_fail("no network namespace holders: setup did not run");
	if (stat("/proc/self/ns/net", &me))
		return zdtm_err("stat /proc/self/ns/net");
	snprintf(path, sizeof(path), "/proc/%d/ns/net", a_pid);
	if (stat(path, &a))
		return zdtm_err("stat %s", path);
	snprintf(path, sizeof(path), "/proc/%d/ns/net", b_pid);
	if (stat(path, &b))
		return zdtm_err("stat %s", path);
	if (a.st_ino == me.st_ino || b.st_ino == me.st_ino || a.st_ino == b.st_ino)
		rc = zdtm_fail("network namespaces not distinct: root %lu, A %lu, B %lu",
			       (unsigned long)me.st_ino, (unsigned long)a.st_ino,
			       (unsigned long)b.st_ino);
	/* A checks and sends, then waits for B to check and receive */
	if (kill(a_pid, SIGTERM))
		rc = zdtm_err("kill A %d", a_pid);
	if (zdtm_child_check(b_pid))
		rc = -1;
	if (zdtm_child_check(a_pid))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
