/* timerfds survive C/R with clock, settings, absolute anchoring and unread expirations:
 * a fast periodic CLOCK_MONOTONIC one piling up ticks, a CLOCK_REALTIME one that expired
 * once and has a one-hour interval (exactly one tick waiting), a CLOCK_BOOTTIME one not
 * yet expired, two absolute CLOCK_REALTIME ones (future one-shot; past start with a long
 * interval) and a disarmed one. Checked with timerfd_gettime, fdinfo and read(). */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NS 1000000000LL
#define ABS_SLACK_NS (NS / 2)	/* reading the clock and the timer back to back */

enum { FAST, ONCE, BOOT, ABS_FUTURE, ABS_PAST, DISARMED, NTFD };

struct tfd {
	const char *name;
	clockid_t clock;
	int flags;		/* TFD_TIMER_ABSTIME or 0 */
	int cloexec;
	long long init_ns;	/* relative: initial value; absolute: offset from setup time */
	long long intv_ns;
	int fd;
	long long abs_ns;	/* absolute timers: the expiry set */
	unsigned long long ticks;	/* fdinfo ticks at the end of setup */
};

static struct tfd tfds[NTFD] = {
	[FAST] = { "monotonic fast", CLOCK_MONOTONIC, 0, 1, 5000011, 7000003, -1, 0, 0 },
	[ONCE] = { "realtime expired once", CLOCK_REALTIME, 0, 0, 10000007, 3600 * NS + 17, -1, 0, 0 },
	[BOOT] = { "boottime pending", CLOCK_BOOTTIME, 0, 1, 2000 * NS + 19, 500000023, -1, 0, 0 },
	[ABS_FUTURE] = { "realtime absolute future", CLOCK_REALTIME, TFD_TIMER_ABSTIME, 0,
			 3000 * NS + 29, 0, -1, 0, 0 },
	[ABS_PAST] = { "realtime absolute past", CLOCK_REALTIME, TFD_TIMER_ABSTIME, 1,
		       -10000000, 7200 * NS + 31, -1, 0, 0 },
	[DISARMED] = { "monotonic disarmed", CLOCK_MONOTONIC, 0, 0, 0, 0, -1, 0, 0 },
};
static long long start_mono;

static long long now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static long long ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * NS + ts->tv_nsec;
}

static struct timespec ns_ts(long long ns)
{
	return (struct timespec){ ns / NS, ns % NS };
}

struct fdinfo {
	int clockid, settime_flags;
	unsigned long long ticks;
};

static int read_fdinfo(const struct tfd *t, struct fdinfo *fi)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", t->fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read %s", t->name, path);
	if (!(p = strstr(buf, "clockid:")) || sscanf(p, "clockid: %d", &fi->clockid) != 1 ||
	    !(p = strstr(buf, "ticks:")) || sscanf(p, "ticks: %llu", &fi->ticks) != 1 ||
	    !(p = strstr(buf, "settime flags:")) ||
	    sscanf(p, "settime flags: %o", &fi->settime_flags) != 1)
		return zdtm_fail("%s: fd %d is not a timerfd: fdinfo '%s'", t->name, t->fd, buf);
	return 0;
}

static int setup(void)
{
	struct fdinfo fi;

	start_mono = now_ns(CLOCK_MONOTONIC);
	for (int i = 0; i < NTFD; i++) {
		struct tfd *t = &tfds[i];
		struct itimerspec its = { ns_ts(t->intv_ns), ns_ts(t->init_ns) };

		t->fd = timerfd_create(t->clock, TFD_NONBLOCK | (t->cloexec ? TFD_CLOEXEC : 0));
		if (t->fd < 0)
			return zdtm_err("timerfd_create(%s)", t->name);
		if (t->flags & TFD_TIMER_ABSTIME) {
			t->abs_ns = now_ns(t->clock) + t->init_ns;
			its.it_value = ns_ts(t->abs_ns);
		}
		if (i != DISARMED && timerfd_settime(t->fd, t->flags, &its, NULL))
			return zdtm_err("timerfd_settime(%s)", t->name);
	}
	usleep(40000);
	/* An expired periodic timerfd counts its further expirations lazily; timerfd_gettime
	 * folds them into the tick count (as fdinfo shows it) without reading them. */
	if (timerfd_gettime(tfds[FAST].fd, &(struct itimerspec){}))
		return zdtm_err("timerfd_gettime(%s)", tfds[FAST].name);
	usleep(20000);
	for (int i = 0; i < NTFD; i++) {
		if (read_fdinfo(&tfds[i], &fi))
			return -1;
		tfds[i].ticks = fi.ticks;
	}
	if (tfds[ONCE].ticks != 1 || tfds[ABS_PAST].ticks != 1 || tfds[FAST].ticks < 2)
		return zdtm_fail("setup: ticks %llu/%llu/%llu, expected 1/1/>=2",
				 tfds[ONCE].ticks, tfds[ABS_PAST].ticks, tfds[FAST].ticks);
	return 0;
}

static int check_one(struct tfd *t)
{
	struct itimerspec its;
	struct fdinfo fi;
	unsigned long long ticks = 0;
	long long left, max, elapsed;
	int fl, fdfl;
	ssize_t n;

	fl = fcntl(t->fd, F_GETFL);
	fdfl = fcntl(t->fd, F_GETFD);
	if (fl < 0 || fdfl < 0)
		return zdtm_err("%s: fd %d", t->name, t->fd);
	if (!(fl & O_NONBLOCK) || !!(fdfl & FD_CLOEXEC) != t->cloexec)
		return zdtm_fail("%s: fd %d flags %#x fd flags %#x, expected O_NONBLOCK%s", t->name,
				 t->fd, fl, fdfl, t->cloexec ? " and FD_CLOEXEC" : "");
	if (read_fdinfo(t, &fi))
		return -1;
	if (fi.clockid != t->clock || fi.settime_flags != t->flags)
		return zdtm_fail("%s: fdinfo clockid %d settime flags %#o, expected %d %#o",
				 t->name, fi.clockid, fi.settime_flags, t->clock, t->flags);
	if (fi.ticks < t->ticks)
		return zdtm_fail("%s: fdinfo ticks %llu, fewer than the %llu of setup", t->name,
				 fi.ticks, t->ticks);

	if (timerfd_gettime(t->fd, &its))
		return zdtm_err("%s: timerfd_gettime", t->name);
	left = ts_ns(&its.it_value);
	if (ts_ns(&its.it_interval) != t->intv_ns)
		return zdtm_fail("%s: interval %lld ns, expected %lld ns", t->name,
				 ts_ns(&its.it_interval), t->intv_ns);
	if (t == &tfds[DISARMED]) {
		if (left)
			return zdtm_fail("%s: armed, %lld ns remaining", t->name, left);
	} else if (t->flags & TFD_TIMER_ABSTIME) {
		/* the expiry stays anchored to the absolute time set */
		long long next = t->abs_ns, now = now_ns(t->clock);

		while (next <= now && t->intv_ns)
			next += t->intv_ns;
		if (llabs(left - (next - now)) > ABS_SLACK_NS)
			return zdtm_fail("%s: expires in %lld ms, expected in %lld ms (at the "
					 "absolute time set)", t->name, left / 1000000,
					 (next - now) / 1000000);
	} else {
		max = t->init_ns > t->intv_ns ? t->init_ns : t->intv_ns;
		/* A periodic timer reads 0 when it expires right then, before its tick is
		 * counted (timerfd clamps a negative remainder); its interval says it is armed. */
		if (left < 0 || (left == 0 && !t->intv_ns) || left > max)
			return zdtm_fail("%s: %lld ns remaining, expected (0, %lld]", t->name, left,
					 max);
	}

	n = read(t->fd, &ticks, sizeof(ticks));
	if (n < 0 && errno != EAGAIN)
		return zdtm_err("%s: read", t->name);
	if (n < 0)
		ticks = 0;
	switch (t - tfds) {
	case FAST:
		/* no fewer than in setup, no more than intervals since it started, up to the
		 * read just done (the checks above take time too: under load, intervals) */
		elapsed = now_ns(CLOCK_MONOTONIC) - start_mono;
		max = (elapsed - t->init_ns) / t->intv_ns + 2;
		if (ticks < t->ticks || (long long)ticks > max)
			return zdtm_fail("%s: %llu expirations, expected [%llu, %lld]", t->name,
					 ticks, t->ticks, max);
		break;
	case ONCE:
	case ABS_PAST:
		if (ticks != 1)
			return zdtm_fail("%s: %llu expirations, expected exactly 1", t->name, ticks);
		break;
	default:
		if (ticks)
			return zdtm_fail("%s: %llu expirations, expected none", t->name, ticks);
	}
	return 0;
}

static int check(void)
{
	struct pollfd pfd;

	if (tfds[0].fd < 0)
		return zdtm_fail("setup never ran: no timerfds");
	for (int i = 0; i < NTFD; i++)
		if (check_one(&tfds[i]))
			return -1;
	/* the fast one keeps ticking */
	pfd = (struct pollfd){ .fd = tfds[FAST].fd, .events = POLLIN };
	if (poll(&pfd, 1, 500) != 1)
		return zdtm_fail("%s: no expiration within 500 ms after the read", tfds[FAST].name);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
