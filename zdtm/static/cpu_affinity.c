/* Each thread's CPU affinity survives C/R: the main thread is bound to the last CPU it may
 * use, a second thread to the first. The engine moves the tasks it works on to its own CPU
 * for the time of the dump (a ptrace stop is cheaper there), so a lost mask shows. With a
 * single usable CPU both masks are that CPU, and the test cannot tell. */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "zdtm.h"

static int first_cpu = -1, last_cpu = -1;
static pthread_t other;
static int stop;

/* The CPUs the process may use at all (the cpuset); the range of them. */
static int usable(void)
{
	cpu_set_t all;
	int cpu;

	CPU_ZERO(&all);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		CPU_SET(cpu, &all);
	/* Setting every CPU gives the cpuset's own: read back what we got. */
	if (sched_setaffinity(0, sizeof(all), &all) || sched_getaffinity(0, sizeof(all), &all))
		return zdtm_fail("sched_{set,get}affinity of the whole set: %m");
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		if (CPU_ISSET(cpu, &all)) {
			if (first_cpu < 0)
				first_cpu = cpu;
			last_cpu = cpu;
		}
	return first_cpu < 0 ? zdtm_fail("no usable CPU") : 0;
}

static int bind(pthread_t th, int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	errno = pthread_setaffinity_np(th, sizeof(one), &one);
	return errno ? zdtm_fail("bind to CPU %d: %m", cpu) : 0;
}

static int bound_to(pthread_t th, const char *who, int cpu)
{
	cpu_set_t got;
	int n;

	errno = pthread_getaffinity_np(th, sizeof(got), &got);
	if (errno)
		return zdtm_fail("%s: pthread_getaffinity_np: %m", who);
	n = CPU_COUNT(&got);
	if (n != 1 || !CPU_ISSET(cpu, &got))
		return zdtm_fail("%s: bound to %d CPUs%s, expected CPU %d alone", who, n,
				 n == 1 ? " (another one)" : "", cpu);
	return 0;
}

static void *idle(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST))
		usleep(1000);
	return NULL;
}

static int setup(void)
{
	if (usable())
		return -1;
	errno = pthread_create(&other, NULL, idle, NULL);
	if (errno)
		return zdtm_fail("pthread_create: %m");
	return bind(pthread_self(), last_cpu) || bind(other, first_cpu) ? -1 : 0;
}

static int check(void)
{
	int rc;

	if (first_cpu < 0) {	/* run without setup (--check-only): what setup would have set */
		if (usable())
			return -1;
		return bound_to(pthread_self(), "main thread", last_cpu);
	}
	rc = bound_to(pthread_self(), "main thread", last_cpu) || bound_to(other, "second thread", first_cpu);
	__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(other, NULL);
	return rc ? -1 : 0;
}

ZDTM_TEST(.setup = setup, .check = check);
