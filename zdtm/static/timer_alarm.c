/* Pending alarm(2)s survive C/R in a parent and its child: each task's ITIMER_REAL shows
 * no interval and a remaining time no larger than the alarm and no smaller than the alarm
 * minus the time gone by; alarm(0) returns the same seconds; SIGALRM then still reaches
 * the task's handler. */
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NS 1000000000LL
#define US 1000000LL

struct alm {
	const char *who;
	unsigned int secs;
	long long set_mono;	/* CLOCK_MONOTONIC when armed; 0: never */
};

static struct alm root_alarm = { "parent", 600, 0 };
static struct alm child_alarm = { "child", 900, 0 };
static pid_t child = -1;
static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static long long mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NS + ts.tv_nsec;
}

static int arm(void *arg)
{
	struct alm *a = arg;
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL))
		return zdtm_err("%s: sigaction", a->who);
	a->set_mono = mono_ns();
	alarm(a->secs);
	return 0;
}

static int check_alarm(void *arg)
{
	struct alm *a = arg;
	struct itimerval it;
	long long left_us, elapsed_us, min_us;
	unsigned int secs;

	if (getitimer(ITIMER_REAL, &it))
		return zdtm_err("%s: getitimer", a->who);
	if (!a->set_mono)
		return zdtm_fail("%s: setup never ran (alarm: %ld s left)", a->who,
				 (long)it.it_value.tv_sec);
	left_us = it.it_value.tv_sec * US + it.it_value.tv_usec;
	elapsed_us = (mono_ns() - a->set_mono) / 1000;
	min_us = a->secs * US - elapsed_us - US;	/* one second of slack */
	if (it.it_interval.tv_sec || it.it_interval.tv_usec)
		return zdtm_fail("%s: the alarm has an interval of %ld.%06ld s", a->who,
				 (long)it.it_interval.tv_sec, (long)it.it_interval.tv_usec);
	if (left_us <= 0 || left_us > a->secs * US || left_us < min_us)
		return zdtm_fail("%s: %lld us left of alarm(%u) set %lld us ago, expected "
				 "[%lld, %lld]", a->who, left_us, a->secs, elapsed_us,
				 min_us > 0 ? min_us : 1, a->secs * US);
	secs = alarm(0);
	if (secs < left_us / US || secs > left_us / US + 1)
		return zdtm_fail("%s: alarm(0) returned %u s, getitimer said %lld us", a->who,
				 secs, left_us);
	/* The handler is still there: a short alarm reaches it. */
	alarms = 0;
	it = (struct itimerval){ .it_value = { 0, 20000 } };
	setitimer(ITIMER_REAL, &it, NULL);
	for (int i = 0; i < 50 && !alarms; i++)
		usleep(10000);
	if (alarms != 1)
		return zdtm_fail("%s: the handler saw %d SIGALRMs for a 20 ms alarm", a->who,
				 alarms);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = arm, .check = check_alarm,
					    .arg = &child_alarm };

	if (arm(&root_alarm))
		return -1;
	child = zdtm_child(&t);
	return child < 0 ? -1 : 0;
}

static int check(void)
{
	int rc = check_alarm(&root_alarm);

	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
