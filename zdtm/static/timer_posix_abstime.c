/* POSIX timers armed with TIMER_ABSTIME stay anchored to their absolute expiry across C/R:
 * a CLOCK_REALTIME one-shot far in the future, a CLOCK_MONOTONIC one-shot, and a periodic
 * CLOCK_REALTIME timer started in the past whose first signal (blocked) is pending and
 * whose next expiry is start + interval. The remaining time timer_gettime reports must
 * match "absolute expiry - clock now" (not a relative value re-armed after restore). */
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NS 1000000000LL
#define SLACK_NS (NS / 2)	/* clock read and timer read back to back */
#define PERIODIC_SIG (SIGRTMIN + 7)
#define PERIODIC_VAL 0xab5

struct atm {
	const char *name;
	clockid_t clock;
	long long offset_ns;	/* expiry relative to the clock at setup */
	long long intv_ns;
	int notify;
	timer_t id;
	long long abs_ns;
};

static struct atm atms[] = {
	{ "realtime one-shot", CLOCK_REALTIME, 4000 * NS + 123, 0, SIGEV_NONE, 0, 0 },
	{ "monotonic one-shot", CLOCK_MONOTONIC, 5000 * NS + 321, 0, SIGEV_NONE, 0, 0 },
	{ "realtime periodic", CLOCK_REALTIME, -5000000, 3000 * NS + 77, SIGEV_SIGNAL, 0, 0 },
};
#define NATM 3
#define PERIODIC 2

static bool set_up;

static long long now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static struct timespec ns_ts(long long ns)
{
	return (struct timespec){ ns / NS, ns % NS };
}

static int setup(void)
{
	sigset_t m;

	sigemptyset(&m);
	sigaddset(&m, PERIODIC_SIG);
	if (sigprocmask(SIG_BLOCK, &m, NULL))
		return zdtm_err("sigprocmask");
	for (int i = 0; i < NATM; i++) {
		struct atm *t = &atms[i];
		struct sigevent sev = { .sigev_notify = t->notify };
		struct itimerspec its;

		if (t->notify == SIGEV_SIGNAL) {
			sev.sigev_signo = PERIODIC_SIG;
			sev.sigev_value.sival_int = PERIODIC_VAL;
		}
		if (timer_create(t->clock, &sev, &t->id))
			return zdtm_err("timer_create(%s)", t->name);
		t->abs_ns = now_ns(t->clock) + t->offset_ns;
		its = (struct itimerspec){ ns_ts(t->intv_ns), ns_ts(t->abs_ns) };
		if (timer_settime(t->id, TIMER_ABSTIME, &its, NULL))
			return zdtm_err("timer_settime(%s)", t->name);
	}
	set_up = true;
	return 0;
}

static int check(void)
{
	struct timespec zero = { 0 };
	struct itimerspec its;
	siginfo_t si;
	sigset_t m;

	if (!set_up)
		return zdtm_fail("setup never ran: no timers");
	for (int i = 0; i < NATM; i++) {
		const struct atm *t = &atms[i];
		long long left, next, now;

		if (timer_gettime(t->id, &its))
			return zdtm_err("%s: timer_gettime", t->name);
		now = now_ns(t->clock);
		left = its.it_value.tv_sec * NS + its.it_value.tv_nsec;
		if (its.it_interval.tv_sec * NS + its.it_interval.tv_nsec != t->intv_ns)
			return zdtm_fail("%s: interval %ld.%09ld s, expected %lld ns", t->name,
					 (long)its.it_interval.tv_sec, its.it_interval.tv_nsec,
					 t->intv_ns);
		for (next = t->abs_ns; next <= now && t->intv_ns; next += t->intv_ns)
			;
		if (llabs(left - (next - now)) > SLACK_NS)
			return zdtm_fail("%s: expires in %lld ms, expected in %lld ms (the absolute "
					 "time set)", t->name, left / 1000000, (next - now) / 1000000);
	}
	/* the periodic timer's first expiry (in the past at setup) left one signal pending */
	sigemptyset(&m);
	sigaddset(&m, PERIODIC_SIG);
	if (syscall(SYS_rt_sigtimedwait, &m, &si, &zero, _NSIG / 8) != PERIODIC_SIG)
		return zdtm_fail("%s: its signal is not pending", atms[PERIODIC].name);
	if (si.si_code != SI_TIMER || si.si_value.sival_int != PERIODIC_VAL ||
	    si.si_timerid != (int)(intptr_t)atms[PERIODIC].id || si.si_overrun != 0)
		return zdtm_fail("%s: signal code %d value %#x timer id %d overrun %d, expected "
				 "%d %#x %d 0", atms[PERIODIC].name, si.si_code,
				 si.si_value.sival_int, si.si_timerid, si.si_overrun, SI_TIMER,
				 PERIODIC_VAL, (int)(intptr_t)atms[PERIODIC].id);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
