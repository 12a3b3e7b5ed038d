/* EPOLLET, EPOLLONESHOT and EPOLLEXCLUSIVE registrations survive C/R with their state:
 * an edge-triggered pipe whose edge was already consumed reports nothing until new data
 * comes (while a level-triggered registration of a dup of it keeps reporting); a oneshot
 * that already fired stays disarmed (fdinfo shows only EPOLLONESHOT) until re-armed with
 * EPOLL_CTL_MOD; an armed oneshot fires once; an exclusive one keeps its flag. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef EPOLLEXCLUSIVE
#define EPOLLEXCLUSIVE (1U << 28)
#endif

enum { ET, LT_DUP, OS_FIRED, OS_ARMED, EXCL, NT };

struct target {
	const char *name;
	uint32_t events;
	uint64_t data;
	int fd;
};

static struct target tg[NT] = {
	[ET] = { "edge-triggered pipe", EPOLLIN | EPOLLET, 0xe7e7e7e7e7e70001ULL, -1 },
	[LT_DUP] = { "level-triggered dup of it", EPOLLIN, 0x1e1e1e1e1e1e0002ULL, -1 },
	[OS_FIRED] = { "fired oneshot eventfd", EPOLLIN | EPOLLONESHOT, 0x0f0f0f0f0f0f0003ULL, -1 },
	[OS_ARMED] = { "armed oneshot pipe", EPOLLIN | EPOLLONESHOT, 0x0a0a0a0a0a0a0004ULL, -1 },
	[EXCL] = { "exclusive eventfd", EPOLLIN | EPOLLEXCLUSIVE, 0xecececececec0005ULL, -1 },
};

static int ep = -1, et_w = -1, armed_w = -1;

/* One non-blocking epoll_wait: bit i of the result set when target i was reported. */
static int poll_once(unsigned *mask)
{
	struct epoll_event evs[NT + 2];
	int n = epoll_wait(ep, evs, NT + 2, 0);

	*mask = 0;
	if (n < 0)
		return zdtm_err("epoll_wait");
	for (int k = 0; k < n; k++) {
		int i;

		for (i = 0; i < NT && tg[i].data != evs[k].data.u64; i++)
			;
		if (i == NT)
			return zdtm_fail("epoll_wait reported unknown data %#llx",
					 (unsigned long long)evs[k].data.u64);
		if (evs[k].events != EPOLLIN)
			return zdtm_fail("%s reported with events %#x, expected EPOLLIN", tg[i].name,
					 evs[k].events);
		*mask |= 1u << i;
	}
	return 0;
}

static int expect(const char *when, unsigned want)
{
	unsigned got;

	if (poll_once(&got))
		return -1;
	if (got == want)
		return 0;
	for (int i = 0; i < NT; i++)
		if ((got ^ want) & (1u << i))
			return zdtm_fail("%s: %s was %sreported", when, tg[i].name,
					 got & (1u << i) ? "" : "not ");
	return -1;
}

static int fdinfo_events(int fd, uint32_t *ev)
{
	char path[64], buf[4096], key[32], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	snprintf(key, sizeof(key), "tfd: %8d events:", fd);
	p = strstr(buf, key);
	if (!p || sscanf(p + strlen(key), "%x", ev) != 1)
		return zdtm_fail("epoll %d: fd %d not in fdinfo", ep, fd);
	return 0;
}

static int setup(void)
{
	int a[2], c[2];
	struct epoll_event ev;

	if (pipe2(a, O_NONBLOCK) || pipe2(c, O_NONBLOCK))
		return zdtm_err("pipe");
	tg[ET].fd = a[0];
	et_w = a[1];
	tg[LT_DUP].fd = dup(a[0]);
	tg[OS_FIRED].fd = eventfd(3, EFD_NONBLOCK);
	tg[OS_ARMED].fd = c[0];
	armed_w = c[1];
	tg[EXCL].fd = eventfd(0, EFD_NONBLOCK);
	if (tg[LT_DUP].fd < 0 || tg[OS_FIRED].fd < 0 || tg[EXCL].fd < 0)
		return zdtm_err("dup/eventfd");
	if (write(et_w, "edge", 4) != 4)
		return zdtm_err("write");
	ep = epoll_create1(0);
	if (ep < 0)
		return zdtm_err("epoll_create1");
	for (int i = 0; i < NT; i++) {
		ev = (struct epoll_event){ .events = tg[i].events, .data.u64 = tg[i].data };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, tg[i].fd, &ev))
			return zdtm_err("EPOLL_CTL_ADD %s", tg[i].name);
	}
	/* Consume the edge and fire the oneshot; the level-triggered dup stays reported. */
	if (expect("setup, first wait", 1u << ET | 1u << LT_DUP | 1u << OS_FIRED) ||
	    expect("setup, second wait", 1u << LT_DUP))
		return -1;
	return 0;
}

static int check(void)
{
	struct epoll_event ev;
	uint32_t e;
	char buf[16];
	uint64_t one = 1;

	if (ep < 0)
		return zdtm_fail("setup never ran: no epoll");
	for (int i = 0; i < NT; i++) {
		uint32_t want = tg[i].events | EPOLLERR | EPOLLHUP;

		if (i == OS_FIRED)	/* a fired oneshot keeps only its private bits */
			want = EPOLLONESHOT;
		if (fdinfo_events(tg[i].fd, &e))
			return -1;
		if (e != want)
			return zdtm_fail("%s (fd %d): fdinfo events %#x, expected %#x", tg[i].name,
					 tg[i].fd, e, want);
	}
	/* Data is still in the edge-triggered pipe and the fired oneshot's eventfd is still
	 * readable, but only the level-triggered registration reports. */
	if (expect("after restore", 1u << LT_DUP) || expect("after restore, again", 1u << LT_DUP))
		return -1;

	/* A new edge is reported once. */
	if (write(et_w, "more", 4) != 4)
		return zdtm_err("write");
	if (expect("new data in the edge-triggered pipe", 1u << ET | 1u << LT_DUP) ||
	    expect("after the new edge", 1u << LT_DUP))
		return -1;
	if (read(tg[ET].fd, buf, sizeof(buf)) != 8 || memcmp(buf, "edgemore", 8))
		return zdtm_fail("the edge-triggered pipe lost its data");

	/* The armed oneshot fires once, then is disarmed. */
	if (write(armed_w, "x", 1) != 1)
		return zdtm_err("write");
	if (expect("the armed oneshot's pipe became readable", 1u << OS_ARMED) ||
	    expect("after the armed oneshot fired", 0))
		return -1;
	if (fdinfo_events(tg[OS_ARMED].fd, &e))
		return -1;
	if (e != EPOLLONESHOT)
		return zdtm_fail("armed oneshot after firing: fdinfo events %#x", e);

	/* Re-arming the fired oneshot reports its still readable eventfd, once. */
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLONESHOT, .data.u64 = tg[OS_FIRED].data };
	if (epoll_ctl(ep, EPOLL_CTL_MOD, tg[OS_FIRED].fd, &ev))
		return zdtm_err("EPOLL_CTL_MOD the fired oneshot");
	if (expect("fired oneshot re-armed", 1u << OS_FIRED) || expect("after it fired again", 0))
		return -1;

	/* The exclusive registration still wakes. */
	if (write(tg[EXCL].fd, &one, 8) != 8)
		return zdtm_err("write eventfd");
	return expect("exclusive eventfd signalled", 1u << EXCL);
}

ZDTM_TEST(.setup = setup, .check = check);
