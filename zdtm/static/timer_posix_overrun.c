/* Fast periodic POSIX timers with their signals blocked survive C/R with their overrun
 * state: each timer's signal is pending while expirations pile up as overruns, and the
 * overrun of the last delivered signal (timer_getoverrun) is kept. At check the pending
 * signal is taken: SI_TIMER with the timer's id and value and a plausible si_overrun, and
 * the timer keeps notifying afterwards. */
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NS 1000000000LL

struct otm {
	const char *name;
	clockid_t clock;
	int sig_off, value;
	long long intv_ns;
	timer_t id;
	int kid;
	int last_overrun;	/* si_overrun of the signal taken in setup */
	long long taken_ns;	/* CLOCK_MONOTONIC when it was taken */
};

static struct otm otms[] = {
	{ "monotonic 1ms", CLOCK_MONOTONIC, 2, 0x0f0f, 1000003, 0, -1, -1, 0 },
	{ "boottime 3ms", CLOCK_BOOTTIME, 3, 0x3b3b, 3000007, 0, -1, -1, 0 },
};
#define NOTM 2

static bool set_up;

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

/* Take one pending signal of the set, waiting up to ms (the raw syscall). */
static int take(int sig, siginfo_t *si, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, sig);
	return syscall(SYS_rt_sigtimedwait, &set, si, &ts, _NSIG / 8);
}

static int check_info(const struct otm *t, const siginfo_t *si, const char *when)
{
	if (si->si_code != SI_TIMER || si->si_timerid != t->kid ||
	    si->si_value.sival_int != t->value)
		return zdtm_fail("timer %s, %s: signal code %d timer id %d value %#x, expected %d "
				 "%d %#x", t->name, when, si->si_code, si->si_timerid,
				 si->si_value.sival_int, SI_TIMER, t->kid, t->value);
	return 0;
}

static int setup(void)
{
	sigset_t set;
	siginfo_t si;

	sigemptyset(&set);
	for (int i = 0; i < NOTM; i++)
		sigaddset(&set, SIGRTMIN + otms[i].sig_off);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return zdtm_err("sigprocmask");
	for (int i = 0; i < NOTM; i++) {
		struct otm *t = &otms[i];
		struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL,
					.sigev_signo = SIGRTMIN + t->sig_off };
		struct itimerspec its = { { 0, t->intv_ns }, { 0, t->intv_ns } };

		sev.sigev_value.sival_int = t->value;
		if (timer_create(t->clock, &sev, &t->id))
			return zdtm_err("timer_create(%s)", t->name);
		t->kid = (int)(intptr_t)t->id;
		if (timer_settime(t->id, 0, &its, NULL))
			return zdtm_err("timer_settime(%s)", t->name);
	}
	usleep(40000);
	/* Take one signal of each: its overrun becomes timer_getoverrun()'s value, then
	 * expirations pile up again behind the next pending signal. */
	for (int i = 0; i < NOTM; i++) {
		struct otm *t = &otms[i];

		if (take(SIGRTMIN + t->sig_off, &si, 1000) < 0)
			return zdtm_err("timer %s: no signal", t->name);
		t->taken_ns = mono_ns();
		if (check_info(t, &si, "setup"))
			return -1;
		t->last_overrun = si.si_overrun;
		if (t->last_overrun <= 0 || timer_getoverrun(t->id) != t->last_overrun)
			return zdtm_fail("timer %s: overrun %d, timer_getoverrun %d", t->name,
					 t->last_overrun, timer_getoverrun(t->id));
	}
	usleep(20000);
	set_up = true;
	return 0;
}

static int check(void)
{
	struct itimerspec its;
	sigset_t pend;
	siginfo_t si;

	if (!set_up) {
		sigpending(&pend);
		return zdtm_fail("setup never ran: no timers, SIGRTMIN+2 %spending",
				 sigismember(&pend, SIGRTMIN + 2) ? "" : "not ");
	}
	sigpending(&pend);
	for (int i = 0; i < NOTM; i++) {
		struct otm *t = &otms[i];
		long long max_overrun;
		int ov;

		if (timer_gettime(t->id, &its))
			return zdtm_err("timer %s: timer_gettime(id %d)", t->name, t->kid);
		if (its.it_interval.tv_sec || its.it_interval.tv_nsec != t->intv_ns)
			return zdtm_fail("timer %s: interval %ld.%09ld s, expected %lld ns", t->name,
					 (long)its.it_interval.tv_sec, its.it_interval.tv_nsec,
					 t->intv_ns);
		if (its.it_value.tv_sec || its.it_value.tv_nsec <= 0 ||
		    its.it_value.tv_nsec > t->intv_ns)
			return zdtm_fail("timer %s: %ld.%09ld s remaining, expected (0, %lld ns]",
					 t->name, (long)its.it_value.tv_sec, its.it_value.tv_nsec,
					 t->intv_ns);
		ov = timer_getoverrun(t->id);
		if (ov != t->last_overrun)
			return zdtm_fail("timer %s: timer_getoverrun is %d, expected %d (the overrun "
					 "of the last signal taken)", t->name, ov, t->last_overrun);
		if (!sigismember(&pend, SIGRTMIN + t->sig_off))
			return zdtm_fail("timer %s: its signal SIGRTMIN+%d is not pending", t->name,
					 t->sig_off);
		if (take(SIGRTMIN + t->sig_off, &si, 0) < 0)
			return zdtm_err("timer %s: take the pending signal", t->name);
		if (check_info(t, &si, "pending signal"))
			return -1;
		/* expirations since the last signal was taken, one per interval at most */
		max_overrun = (mono_ns() - t->taken_ns) / t->intv_ns + 1000;
		if (si.si_overrun <= 0 || si.si_overrun > max_overrun)
			return zdtm_fail("timer %s: si_overrun %d, expected (0, %lld]", t->name,
					 si.si_overrun, max_overrun);
		if (timer_getoverrun(t->id) != si.si_overrun)
			return zdtm_fail("timer %s: timer_getoverrun %d after taking a signal with "
					 "si_overrun %d", t->name, timer_getoverrun(t->id),
					 si.si_overrun);
		zdtm_msg("timer %s: overrun %d in setup, %d at check", t->name, t->last_overrun,
			 si.si_overrun);
		/* and it notifies again */
		if (take(SIGRTMIN + t->sig_off, &si, 500) < 0)
			return zdtm_err("timer %s: no signal within 500 ms after taking one", t->name);
		if (check_info(t, &si, "next signal"))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
