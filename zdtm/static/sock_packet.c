/* AF_PACKET sockets bound to lo (a raw one and a cooked one, each on a local experimental
 * ethertype) keep their binding, options (PACKET_AUXDATA, PACKET_ORIGDEV, PACKET_VERSION) and
 * a classic BPF filter; frames sent on lo after C/R reach the right socket. */
#include <arpa/inet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/if_packet.h>

#include "zdtm.h"

#define PROTO_RAW 0x88b5	/* IEEE 802 local experimental ethertype 1 */
#define PROTO_DGRAM 0x88b6	/* ... and 2 */

enum { RAW, DGR, NSK };
static const char *const names[NSK] = { "raw packet socket", "dgram packet socket" };
static const int types[NSK] = { SOCK_RAW, SOCK_DGRAM };
static const int protos[NSK] = { PROTO_RAW, PROTO_DGRAM };
static int sk[NSK] = { -1, -1 };
static struct sockaddr_ll bound[NSK];	/* getsockname as read in setup */
static socklen_t boundlen[NSK];
static int ifindex_lo;

static const struct {
	int sock, name, val;
	const char *label;
} popts[] = {
	{ RAW, PACKET_AUXDATA, 1, "PACKET_AUXDATA" },
	{ RAW, PACKET_ORIGDEV, 1, "PACKET_ORIGDEV" },
	{ DGR, PACKET_VERSION, TPACKET_V2, "PACKET_VERSION" },
};
#define NPOPTS (int)(sizeof(popts) / sizeof(popts[0]))

/* accept the whole frame: A = length; return A */
static struct sock_filter filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
	BPF_STMT(BPF_RET | BPF_A, 0),
};
#define NFILTER (int)(sizeof(filter) / sizeof(filter[0]))

static int setup(void)
{
	struct sock_fprog prog = { NFILTER, filter };
	int i;

	ifindex_lo = if_nametoindex("lo");
	if (!ifindex_lo)
		return zdtm_err("if_nametoindex(lo)");
	for (i = 0; i < NSK; i++) {
		struct sockaddr_ll a = { .sll_family = AF_PACKET, .sll_protocol = htons(protos[i]),
					 .sll_ifindex = ifindex_lo };

		sk[i] = socket(AF_PACKET, types[i], htons(protos[i]));
		if (sk[i] < 0)
			return zdtm_err("AF_PACKET socket (needs CAP_NET_RAW)");
		if (bind(sk[i], (struct sockaddr *)&a, sizeof(a)))
			return zdtm_err("bind %s to lo", names[i]);
		boundlen[i] = sizeof(bound[i]);
		if (getsockname(sk[i], (struct sockaddr *)&bound[i], &boundlen[i]))
			return zdtm_err("getsockname");
	}
	for (i = 0; i < NPOPTS; i++)
		if (setsockopt(sk[popts[i].sock], SOL_PACKET, popts[i].name, &popts[i].val,
			       sizeof(int)))
			return zdtm_err("%s: %s", names[popts[i].sock], popts[i].label);
	if (setsockopt(sk[DGR], SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)))
		return zdtm_err("SO_ATTACH_FILTER");
	return 0;
}

/* Send one frame of that ethertype on lo from a fresh socket; sk[i] must receive it. */
static int reach(int i)
{
	unsigned char frame[ETH_HLEN + 64], buf[256];
	char cbuf[256];
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_ifindex = ifindex_lo,
				  .sll_halen = ETH_ALEN }, from;
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_name = &from, .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf };
	struct pollfd pf = { .fd = sk[i], .events = POLLIN };
	char marker[64];
	int s, mlen, off = types[i] == SOCK_RAW ? ETH_HLEN : 0;
	ssize_t n;

	memset(frame, 0, sizeof(frame));
	*(uint16_t *)(frame + 12) = htons(protos[i]);
	mlen = snprintf(marker, sizeof(marker), "zdtm-sock_packet-%d-%d", getpid(), i);
	memcpy(frame + ETH_HLEN, marker, mlen);
	s = socket(AF_PACKET, SOCK_RAW, 0);
	if (s < 0)
		return zdtm_err("AF_PACKET socket");
	n = sendto(s, frame, sizeof(frame), 0, (struct sockaddr *)&to, sizeof(to));
	close(s);
	if (n != (ssize_t)sizeof(frame))
		return zdtm_err("send a frame of type %#x on lo", protos[i]);
	for (;;) {
		struct cmsghdr *ch;
		bool aux = false;

		if (poll(&pf, 1, 1000) != 1)
			return zdtm_fail("%s: the frame of type %#x sent on lo after C/R did not "
					 "arrive in 1 s", names[i], protos[i]);
		mh.msg_namelen = sizeof(from);
		mh.msg_controllen = sizeof(cbuf);
		n = recvmsg(sk[i], &mh, MSG_DONTWAIT);
		if (n < 0)
			return zdtm_err("%s: recvmsg", names[i]);
		if (n < off + mlen || memcmp(buf + off, marker, mlen))
			continue;	/* somebody else's frame */
		if (from.sll_ifindex != ifindex_lo || from.sll_protocol != htons(protos[i]))
			return zdtm_fail("%s: frame came from ifindex %d type %#x", names[i],
					 from.sll_ifindex, ntohs(from.sll_protocol));
		for (ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch))
			if (ch->cmsg_level == SOL_PACKET && ch->cmsg_type == PACKET_AUXDATA)
				aux = true;
		if (aux != (i == RAW))
			return zdtm_fail("%s: PACKET_AUXDATA cmsg %s, expected %s", names[i],
					 aux ? "present" : "absent", i == RAW ? "present" : "absent");
		return 0;
	}
}

static int check(void)
{
	struct sock_filter got[16];
	struct sockaddr_ll a;
	socklen_t l;
	int i, v;

	for (i = 0; i < NSK; i++) {
		if (sk[i] < 0)
			return zdtm_fail("%s does not exist (setup did not run)", names[i]);
		l = sizeof(v);
		if (getsockopt(sk[i], SOL_SOCKET, SO_TYPE, &v, &l) || v != types[i])
			return zdtm_fail("%s (fd %d): type %d, expected %d", names[i], sk[i], v,
					 types[i]);
		l = sizeof(v);
		if (getsockopt(sk[i], SOL_SOCKET, SO_DOMAIN, &v, &l) || v != AF_PACKET)
			return zdtm_fail("%s (fd %d): family %d, not AF_PACKET", names[i], sk[i], v);
		memset(&a, 0, sizeof(a));
		l = sizeof(a);
		if (getsockname(sk[i], (struct sockaddr *)&a, &l))
			return zdtm_err("%s: getsockname", names[i]);
		if (l != boundlen[i] || memcmp(&a, &bound[i], l))
			return zdtm_fail("%s: bound to ifindex %d type %#x hatype %d (len %u), "
					 "expected ifindex %d (lo) type %#x hatype %d (len %u)",
					 names[i], a.sll_ifindex, ntohs(a.sll_protocol), a.sll_hatype,
					 l, bound[i].sll_ifindex, ntohs(bound[i].sll_protocol),
					 bound[i].sll_hatype, boundlen[i]);
	}
	for (i = 0; i < NPOPTS; i++) {
		l = sizeof(v);
		v = -1;
		if (getsockopt(sk[popts[i].sock], SOL_PACKET, popts[i].name, &v, &l))
			return zdtm_err("%s: get %s", names[popts[i].sock], popts[i].label);
		if (v != popts[i].val)
			return zdtm_fail("%s: %s is %d, expected %d", names[popts[i].sock],
					 popts[i].label, v, popts[i].val);
	}
	/* SO_GET_FILTER counts in instructions */
	l = 16;
	if (getsockopt(sk[DGR], SOL_SOCKET, SO_GET_FILTER, got, &l))
		return zdtm_err("SO_GET_FILTER");
	if (l != NFILTER || memcmp(got, filter, sizeof(filter)))
		return zdtm_fail("%s: the BPF filter has %u instructions (or differs), expected %d",
				 names[DGR], l, NFILTER);
	l = 16;
	if (getsockopt(sk[RAW], SOL_SOCKET, SO_GET_FILTER, got, &l) || l != 0)
		return zdtm_fail("%s got a BPF filter of %u instructions", names[RAW], l);
	for (i = 0; i < NSK; i++)
		if (reach(i))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
