/* timerfds expiring during C/R: a periodic CLOCK_MONOTONIC timerfd (1 ms) and a periodic
 * CLOCK_BOOTTIME one (3 ms), read without blocking in each step. The expirations read so
 * far never exceed what the elapsed time of their clock allows (C/R may pause time, so
 * there is no lower bound over the whole run), and the clocks never go back. The check
 * verifies both keep their intervals and still expire within 1.5 s (it_value alone does
 * not tell: it reads 0 while an expiry is being processed). */
#include <fcntl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define MIN_STEPS 3
#define NT 2
#define LIVE 5		/* at check: expirations needed, each, to prove they tick */

static const clockid_t clocks[NT] = { CLOCK_MONOTONIC, CLOCK_BOOTTIME };
static const char *const names[NT] = { "CLOCK_MONOTONIC", "CLOCK_BOOTTIME" };
static const long long period[NT] = { 1000000, 3000000 };

static int tfd[NT] = { -1, -1 };
static struct timespec t_start[NT], t_last[NT];
static uint64_t exp_total[NT];
static unsigned long steps;

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

/* Read timerfd k's expirations and check them against its clock. */
static int poll_timer(int k, const char *when)
{
	struct timespec now;
	uint64_t v = 0, max;
	ssize_t n = read(tfd[k], &v, sizeof(v));
	int64_t el;

	if (n < 0 && errno != EAGAIN && errno != EINTR)
		return zdtm_err("%s: read %s timerfd %d", when, names[k], tfd[k]);
	if (n > 0 && n != sizeof(v))
		return zdtm_fail("%s: read %zd bytes from %s timerfd", when, n, names[k]);
	if (n > 0 && v == 0)
		return zdtm_fail("%s: %s timerfd read gave 0 expirations", when, names[k]);
	if (n > 0)
		exp_total[k] += v;
	clock_gettime(clocks[k], &now);
	if (ns_between(&t_last[k], &now) < 0)
		return zdtm_fail("%s: %s went back by %lld ns", when, names[k],
				 (long long)-ns_between(&t_last[k], &now));
	t_last[k] = now;
	el = ns_between(&t_start[k], &now);
	max = el / period[k];
	/* slack: one period, plus 2% for rounding */
	if (exp_total[k] > max + 2 + max / 50)
		return zdtm_fail("%s: %s timerfd expired %llu times in %lld ms, at most %llu "
				 "possible", when, names[k], (unsigned long long)exp_total[k],
				 (long long)(el / 1000000), (unsigned long long)max + 1);
	return 0;
}

static int build(void)
{
	for (int k = 0; k < NT; k++) {
		struct itimerspec its = {
			.it_interval = { 0, period[k] }, .it_value = { 0, period[k] },
		};

		tfd[k] = timerfd_create(clocks[k], TFD_NONBLOCK);
		if (tfd[k] < 0)
			return zdtm_err("timerfd_create(%s)", names[k]);
		clock_gettime(clocks[k], &t_start[k]);
		t_last[k] = t_start[k];
		if (timerfd_settime(tfd[k], 0, &its, NULL))
			return zdtm_err("timerfd_settime(%s)", names[k]);
	}
	return 0;
}

static int step(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);
	for (int k = 0; k < NT; k++)
		if (poll_timer(k, "step"))
			return -1;
	steps++;
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	uint64_t e0[NT];
	struct timespec t0, t;

	if (tfd[0] < 0 || tfd[1] < 0)
		return zdtm_fail("setup never ran: no timerfds (fds %d/%d)", tfd[0], tfd[1]);
	if (steps < MIN_STEPS)
		return zdtm_fail("the timerfd loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	for (int k = 0; k < NT; k++) {
		struct itimerspec its;
		int fl = fcntl(tfd[k], F_GETFL);

		if (timerfd_gettime(tfd[k], &its))
			return zdtm_err("timerfd_gettime(%s) on fd %d", names[k], tfd[k]);
		if (its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != period[k])
			return zdtm_fail("%s timerfd interval is %lld.%09ld s, expected %lld ns",
					 names[k], (long long)its.it_interval.tv_sec,
					 its.it_interval.tv_nsec, period[k]);
		if (fl < 0 || !(fl & O_NONBLOCK))
			return zdtm_fail("%s timerfd %d lost O_NONBLOCK (flags %#x)", names[k],
					 tfd[k], fl);
		if (poll_timer(k, "check"))
			return -1;
		e0[k] = exp_total[k];
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (exp_total[0] - e0[0] < LIVE || exp_total[1] - e0[1] < LIVE) {
		struct timespec ts = { 0, 5000000 };

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (ns_between(&t0, &t) > 1500000000LL)
			return zdtm_fail("timerfds stalled: in 1.5 s %s expired %llu times, %s %llu "
					 "(%d expected)", names[0],
					 (unsigned long long)(exp_total[0] - e0[0]), names[1],
					 (unsigned long long)(exp_total[1] - e0[1]), LIVE);
		nanosleep(&ts, NULL);
		for (int k = 0; k < NT; k++)
			if (poll_timer(k, "check"))
				return -1;
	}
	zdtm_msg("%lu steps; expirations: %s %llu, %s %llu", steps, names[0],
		 (unsigned long long)exp_total[0], names[1], (unsigned long long)exp_total[1]);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
