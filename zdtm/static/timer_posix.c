/* POSIX timers survive C/R with their ids, clocks, settings and notifications: periodic
 * timers on CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME and CLOCK_PROCESS_CPUTIME_ID
 * (SIGEV_SIGNAL), one SIGEV_THREAD_ID and one SIGEV_NONE one-shot, with gaps in the id
 * space left by deleted timers. Checked with timer_gettime (intervals exact, remaining
 * plausible), /proc/self/timers, and the signals each timer delivers (si_timerid, value). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "zdtm.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define NS 1000000000LL
#define TICK_SLACK_NS 10000000LL	/* CPU timers may be armed up to a tick late */

struct ptm {
	const char *name;
	clockid_t clock;
	int notify;		/* SIGEV_SIGNAL, SIGEV_THREAD_ID, SIGEV_NONE */
	int sig_off;		/* SIGRTMIN + sig_off */
	int value;
	long long init_ns, intv_ns;
	timer_t id;
	int kid;		/* the kernel's timer id */
};

static struct ptm ptms[] = {
	{ "realtime", CLOCK_REALTIME, SIGEV_SIGNAL, 1, 0x5101, 90000001, 200000011, 0, -1 },
	{ "monotonic", CLOCK_MONOTONIC, SIGEV_SIGNAL, 2, 0x5102, 120000003, 150000007, 0, -1 },
	{ "boottime", CLOCK_BOOTTIME, SIGEV_SIGNAL, 3, 0x5103, 70000007, 250000003, 0, -1 },
	{ "process-cputime", CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, 4, 0x5104, 30000001,
	  20000009, 0, -1 },
	{ "thread-id", CLOCK_MONOTONIC, SIGEV_THREAD_ID, 5, 0x5105, 110000009, 170000001, 0, -1 },
	{ "none", CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 3600 * NS + 13, 0, 0, -1 },
};
#define NPTM (sizeof(ptms) / sizeof(ptms[0]))

static timer_t deleted[3];
static int ndeleted;
static pid_t main_tid;
static bool set_up;

struct got {
	int count, code, timerid, value;
};
static volatile struct got got[_NSIG];

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got[sig].code = si->si_code;
	got[sig].timerid = si->si_timerid;
	got[sig].value = si->si_value.sival_int;
	got[sig].count++;
}

static long long ts_ns(const struct timespec *ts)
{
	return ts->tv_sec * NS + ts->tv_nsec;
}

static struct timespec ns_ts(long long ns)
{
	return (struct timespec){ ns / NS, ns % NS };
}

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts_ns(&ts);
}

static int create_dummy(void)
{
	struct sigevent sev = { .sigev_notify = SIGEV_NONE };

	if (timer_create(CLOCK_MONOTONIC, &sev, &deleted[ndeleted]))
		return zdtm_err("timer_create (a timer to delete)");
	ndeleted++;
	return 0;
}

static int setup(void)
{
	struct sigaction sa = { .sa_sigaction = handler, .sa_flags = SA_SIGINFO | SA_RESTART };

	main_tid = zdtm_gettid();
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < NPTM; i++) {
		struct ptm *t = &ptms[i];
		struct sigevent sev = { .sigev_notify = t->notify };
		struct itimerspec its = { ns_ts(t->intv_ns), ns_ts(t->init_ns) };

		/* leave holes in the id space: the ids are part of the state */
		if ((i == 1 || i == 3 || i == 4) && create_dummy())
			return -1;
		if (t->notify != SIGEV_NONE) {
			if (sigaction(SIGRTMIN + t->sig_off, &sa, NULL))
				return zdtm_err("sigaction");
			sev.sigev_signo = SIGRTMIN + t->sig_off;
			sev.sigev_value.sival_int = t->value;
		}
		if (t->notify == SIGEV_THREAD_ID)
			sev.sigev_notify_thread_id = main_tid;
		if (timer_create(t->clock, &sev, &t->id))
			return zdtm_err("timer_create(%s)", t->name);
		t->kid = (int)(intptr_t)t->id;
		if (timer_settime(t->id, 0, &its, NULL))
			return zdtm_err("timer_settime(%s)", t->name);
	}
	for (int i = 0; i < ndeleted; i++)
		if (timer_delete(deleted[i]))
			return zdtm_err("timer_delete");
	set_up = true;
	return 0;
}

/* The clock as /proc/self/timers shows it: the process CPU clock in the kernel's encoding
 * (make_process_cpuclock(0, CPUCLOCK_SCHED)). */
static int proc_clock(clockid_t c)
{
	return c == CLOCK_PROCESS_CPUTIME_ID ? -6 : c;
}

/* /proc/self/timers: "ID: n", "signal: sig/value", "notify: kind/pid|tid.n", "ClockID: c". */
static int check_proc(void)
{
	static char buf[16384];
	char want[256], head[32], *p, *e;

	if (zdtm_read_file("/proc/self/timers", buf, sizeof(buf)) < 0)
		return zdtm_err("read /proc/self/timers");
	for (size_t i = 0; i < NPTM; i++) {
		const struct ptm *t = &ptms[i];
		bool none = t->notify == SIGEV_NONE, tid = t->notify == SIGEV_THREAD_ID;

		snprintf(want, sizeof(want), "ID: %d\nsignal: %d/%016llx\nnotify: %s/%s.%d\n"
			 "ClockID: %d\n", t->kid, none ? 0 : SIGRTMIN + t->sig_off,
			 (unsigned long long)t->value, none ? "none" : "signal",
			 tid ? "tid" : "pid", tid ? main_tid : getpid(), proc_clock(t->clock));
		if (strstr(buf, want))
			continue;
		snprintf(head, sizeof(head), "ID: %d\n", t->kid);
		p = strstr(buf, head);
		if (!p)
			return zdtm_fail("timer %s: id %d not in /proc/self/timers", t->name, t->kid);
		e = strstr(p, "\nID: ");
		if (e)
			e[1] = '\0';
		for (e = p; *e; e++)
			if (*e == '\n')
				*e = ' ';
		for (e = want; *e; e++)
			if (*e == '\n')
				*e = ' ';
		return zdtm_fail("timer %s: /proc/self/timers has '%s', expected '%s'", t->name, p,
				 want);
	}
	return 0;
}

static int check(void)
{
	struct itimerspec its;
	int before[NPTM];
	long long deadline;
	size_t i;

	if (!set_up) {
		if (timer_gettime((timer_t)(intptr_t)0, &its) == 0)
			return zdtm_fail("setup never ran, yet timer 0 exists");
		return zdtm_fail("setup never ran: no timers");
	}
	for (i = 0; i < NPTM; i++) {
		const struct ptm *t = &ptms[i];
		long long max = t->init_ns > t->intv_ns ? t->init_ns : t->intv_ns, left;

		if (t->clock == CLOCK_PROCESS_CPUTIME_ID)
			max += TICK_SLACK_NS;
		if (timer_gettime(t->id, &its))
			return zdtm_err("timer %s: timer_gettime(id %d)", t->name, t->kid);
		if (ts_ns(&its.it_interval) != t->intv_ns)
			return zdtm_fail("timer %s (id %d): interval %lld ns, expected %lld ns",
					 t->name, t->kid, ts_ns(&its.it_interval), t->intv_ns);
		left = ts_ns(&its.it_value);
		if (left <= 0 || left > max)
			return zdtm_fail("timer %s (id %d): %lld ns remaining, expected (0, %lld]",
					 t->name, t->kid, left, max);
	}
	for (int k = 0; k < ndeleted; k++)
		if (timer_gettime(deleted[k], &its) == 0)
			return zdtm_fail("deleted timer id %d exists again",
					 (int)(intptr_t)deleted[k]);
	if (check_proc())
		return -1;

	/* Each signalling timer delivers its signal with its id and value. */
	for (i = 0; i < NPTM; i++)
		before[i] = got[SIGRTMIN + ptms[i].sig_off].count;
	deadline = mono_ns() + 3 * NS / 2;
	for (;;) {
		volatile unsigned long spin = 0;
		int waiting = 0;

		for (i = 0; i < NPTM; i++)
			waiting += ptms[i].notify != SIGEV_NONE &&
				   got[SIGRTMIN + ptms[i].sig_off].count == before[i];
		if (!waiting || mono_ns() > deadline)
			break;
		for (int k = 0; k < 100000; k++)	/* CPU time for the cputime timer */
			spin += k;
	}
	for (i = 0; i < NPTM; i++) {
		const struct ptm *t = &ptms[i];
		volatile struct got *g = &got[SIGRTMIN + t->sig_off];

		if (t->notify == SIGEV_NONE)
			continue;
		if (g->count == before[i])
			return zdtm_fail("timer %s (id %d): no signal within 1.5 s", t->name, t->kid);
		if (g->code != SI_TIMER || g->timerid != t->kid || g->value != t->value)
			return zdtm_fail("timer %s: signal with code %d timer id %d value %#x, "
					 "expected %d %d %#x", t->name, g->code, g->timerid, g->value,
					 SI_TIMER, t->kid, t->value);
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
