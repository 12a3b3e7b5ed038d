/* Timers firing during C/R: a periodic POSIX timer (CLOCK_MONOTONIC, 2 ms, a realtime
 * signal; expirations counted as 1 + si_overrun) and a periodic ITIMER_REAL (5 ms,
 * SIGALRM). Each step checks CLOCK_MONOTONIC did not go back and that neither timer
 * fired more often than the elapsed time allows (C/R may pause time, so there is no lower
 * bound over the whole run). The check verifies both timers keep their intervals and
 * still tick: within 1.5 s both must fire again several times (it_value alone does not
 * tell: ITIMER_REAL reads 0 between an expiry and the delivery of its SIGALRM). */
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define POSIX_NS 2000000LL
#define ITIMER_US 5000
#define MIN_STEPS 3
#define MAGIC 0x71c4
#define LIVE_POSIX 10		/* at check: expirations needed to prove it ticks */
#define LIVE_ITIMER 2

static timer_t tid;
static bool armed;
static int tsig;
static struct timespec t_start, t_last;
static unsigned long steps;

/* written by the handlers only */
static volatile uint64_t posix_exp, posix_sigs, alrm_ticks;
static volatile uint32_t bad_info;
static volatile int bad_code, bad_val;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != SI_TIMER || si->si_value.sival_int != MAGIC) {
		if (!bad_info) {
			bad_code = si->si_code;
			bad_val = si->si_value.sival_int;
		}
		bad_info++;
		return;
	}
	posix_exp += 1 + (si->si_overrun > 0 ? si->si_overrun : 0);
	posix_sigs++;
}

static void on_alrm(int sig)
{
	(void)sig;
	alrm_ticks++;
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

/* Neither timer expired more often than the time since arming allows. */
static int check_bounds(const char *when)
{
	struct timespec now;
	uint64_t pe, at;
	int64_t el;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ns_between(&t_last, &now) < 0)
		return zdtm_fail("%s: CLOCK_MONOTONIC went back by %lld ns", when,
				 (long long)-ns_between(&t_last, &now));
	t_last = now;
	el = ns_between(&t_start, &now);
	pe = posix_exp;
	at = alrm_ticks;
	/* slack: one period, plus 2% for timer slack and rounding */
	if (pe > (uint64_t)(el / POSIX_NS) + 2 + (uint64_t)(el / POSIX_NS) / 50)
		return zdtm_fail("%s: the POSIX timer expired %llu times in %lld ms, at most %lld "
				 "possible", when, (unsigned long long)pe,
				 (long long)(el / 1000000), (long long)(el / POSIX_NS) + 1);
	if (at > (uint64_t)(el / (ITIMER_US * 1000LL)) + 2 +
		  (uint64_t)(el / (ITIMER_US * 1000LL)) / 50)
		return zdtm_fail("%s: ITIMER_REAL fired %llu times in %lld ms, at most %lld "
				 "possible", when, (unsigned long long)at,
				 (long long)(el / 1000000), (long long)(el / (ITIMER_US * 1000LL)) + 1);
	if (bad_info)
		return zdtm_fail("%s: %u timer signals with a wrong siginfo, first: code %d "
				 "value %d", when, bad_info, bad_code, bad_val);
	return 0;
}

static int build(void)
{
	struct sigaction sa = { .sa_sigaction = on_timer, .sa_flags = SA_SIGINFO | SA_RESTART };
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL };
	struct itimerspec its = {
		.it_interval = { 0, POSIX_NS }, .it_value = { 0, POSIX_NS },
	};
	struct itimerval itv = {
		.it_interval = { 0, ITIMER_US }, .it_value = { 0, ITIMER_US },
	};

	tsig = SIGRTMIN + 2;
	sigemptyset(&sa.sa_mask);
	if (sigaction(tsig, &sa, NULL))
		return zdtm_err("sigaction(%d)", tsig);
	sa.sa_handler = on_alrm;
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGALRM, &sa, NULL))
		return zdtm_err("sigaction(SIGALRM)");
	sev.sigev_signo = tsig;
	sev.sigev_value.sival_int = MAGIC;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tid))
		return zdtm_err("timer_create");
	clock_gettime(CLOCK_MONOTONIC, &t_start);
	t_last = t_start;
	if (timer_settime(tid, 0, &its, NULL))
		return zdtm_err("timer_settime");
	if (setitimer(ITIMER_REAL, &itv, NULL))
		return zdtm_err("setitimer");
	armed = true;
	return 0;
}

static int step(void)
{
	struct timespec ts = { 0, 1000000 };

	nanosleep(&ts, NULL);	/* timer signals cut it short: fine */
	if (check_bounds("step"))
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
	struct itimerspec its;
	struct itimerval itv;
	struct timespec t0, t;
	uint64_t pe0, at0;

	if (!armed)
		return zdtm_fail("setup never ran: no timers armed");
	if (steps < MIN_STEPS)
		return zdtm_fail("the timer loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (timer_gettime(tid, &its))
		return zdtm_err("timer_gettime of the POSIX timer");
	if (its.it_interval.tv_sec != 0 || its.it_interval.tv_nsec != POSIX_NS)
		return zdtm_fail("POSIX timer interval is %lld.%09ld s, expected %lld ns",
				 (long long)its.it_interval.tv_sec, its.it_interval.tv_nsec,
				 POSIX_NS);
	if (getitimer(ITIMER_REAL, &itv))
		return zdtm_err("getitimer");
	if (itv.it_interval.tv_sec != 0 || itv.it_interval.tv_usec != ITIMER_US)
		return zdtm_fail("ITIMER_REAL interval is %lld.%06ld s, expected %d us",
				 (long long)itv.it_interval.tv_sec, (long)itv.it_interval.tv_usec,
				 ITIMER_US);
	if (check_bounds("check"))
		return -1;

	/* Both still tick. */
	pe0 = posix_exp;
	at0 = alrm_ticks;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (posix_exp - pe0 < LIVE_POSIX || alrm_ticks - at0 < LIVE_ITIMER) {
		struct timespec ts = { 0, 5000000 };

		clock_gettime(CLOCK_MONOTONIC, &t);
		if (ns_between(&t0, &t) > 1500000000LL)
			return zdtm_fail("timers stalled: in 1.5 s the POSIX timer expired %llu "
					 "times (%d expected), ITIMER_REAL fired %llu times "
					 "(%d expected)", (unsigned long long)(posix_exp - pe0),
					 LIVE_POSIX, (unsigned long long)(alrm_ticks - at0),
					 LIVE_ITIMER);
		nanosleep(&ts, NULL);
	}
	if (check_bounds("check"))
		return -1;
	zdtm_msg("%lu steps; POSIX timer: %llu expirations in %llu signals; ITIMER_REAL: %llu",
		 steps, (unsigned long long)posix_exp, (unsigned long long)posix_sigs,
		 (unsigned long long)alrm_ticks);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
