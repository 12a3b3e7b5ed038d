/* Interval timers survive C/R: ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF, each with its
 * own initial value and interval (odd microseconds). getitimer() must show the interval
 * exactly and a remaining time in (0, max(initial, interval)] (+ a tick for the CPU ones);
 * then every timer must still fire its signal into its handler. */
#include <signal.h>
#include <sys/time.h>
#include <time.h>

#include "zdtm.h"

struct itm {
	const char *name;
	int which, sig;
	long value_us, interval_us;
};

static const struct itm itms[] = {
	{ "ITIMER_REAL", ITIMER_REAL, SIGALRM, 700013, 250007 },
	{ "ITIMER_VIRTUAL", ITIMER_VIRTUAL, SIGVTALRM, 60011, 30011 },
	{ "ITIMER_PROF", ITIMER_PROF, SIGPROF, 80017, 45013 },
};
#define NITM 3
#define TICK_SLACK_US 10000

static volatile sig_atomic_t fired[_NSIG];

static void handler(int sig)
{
	fired[sig]++;
}

static long us(const struct timeval *tv)
{
	return tv->tv_sec * 1000000L + tv->tv_usec;
}

static long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < NITM; i++) {
		struct itimerval it = {
			.it_value = { itms[i].value_us / 1000000, itms[i].value_us % 1000000 },
			.it_interval = { itms[i].interval_us / 1000000, itms[i].interval_us % 1000000 },
		};

		if (sigaction(itms[i].sig, &sa, NULL))
			return zdtm_err("sigaction(%d)", itms[i].sig);
		if (setitimer(itms[i].which, &it, NULL))
			return zdtm_err("setitimer(%s)", itms[i].name);
	}
	return 0;
}

static int check(void)
{
	sig_atomic_t before[NITM];
	long deadline;
	int i;

	for (i = 0; i < NITM; i++) {
		const struct itm *t = &itms[i];
		long max = t->value_us > t->interval_us ? t->value_us : t->interval_us;

		/* The kernel arms CPU itimers one tick late (at most 10 ms, HZ=100). */
		if (t->which != ITIMER_REAL)
			max += TICK_SLACK_US;
		struct itimerval it;
		struct sigaction sa;

		if (getitimer(t->which, &it))
			return zdtm_err("getitimer(%s)", t->name);
		if (us(&it.it_interval) != t->interval_us)
			return zdtm_fail("%s: interval %ld us, expected %ld us", t->name,
					 us(&it.it_interval), t->interval_us);
		if (us(&it.it_value) <= 0 || us(&it.it_value) > max)
			return zdtm_fail("%s: %ld us remaining, expected (0, %ld]", t->name,
					 us(&it.it_value), max);
		sigaction(t->sig, NULL, &sa);
		if (sa.sa_handler != handler)
			return zdtm_fail("%s: the handler of signal %d is gone", t->name, t->sig);
	}

	/* Every timer fires again: burn user CPU for the virtual and profiling ones. */
	for (i = 0; i < NITM; i++)
		before[i] = fired[itms[i].sig];
	deadline = mono_ms() + 1500;
	for (;;) {
		volatile unsigned long spin = 0;
		int waiting = 0;

		for (i = 0; i < NITM; i++)
			waiting += fired[itms[i].sig] == before[i];
		if (!waiting || mono_ms() > deadline)
			break;
		for (int k = 0; k < 100000; k++)
			spin += k;
	}
	for (i = 0; i < NITM; i++)
		if (fired[itms[i].sig] == before[i])
			return zdtm_fail("%s: signal %d did not come within 1.5 s of spinning",
					 itms[i].name, itms[i].sig);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
