/* A thread of ours that keeps the other CPUs out of their idle state while a tree is frozen.
 * On this machine kind waking a task on an idle vCPU costs the waker ~0.6 ms (the
 * PTRACE_INTERRUPT of a sleeping task, or the wait until it is off its CPU), against ~25 us
 * when that vCPU is running something. The threads hold no Python state (no GIL) and
 * spin on a flag with PAUSE; each ends by itself after a bounded time should nobody stop it. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define CKPT_SPIN_MAX 8

void ckpt_spin_stop(void);

static atomic_int spin_on;
static pthread_t spin_threads[CKPT_SPIN_MAX];
static int spin_count;
static long spin_limit_ns;

static long spin_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *spin_body(void *arg)
{
	long deadline = spin_now_ns() + spin_limit_ns;
	unsigned long n = 0;

	(void)arg;
	while (atomic_load_explicit(&spin_on, memory_order_relaxed)) {
		__builtin_ia32_pause();
		if (++n % 4096 == 0 && spin_now_ns() > deadline)
			break;
	}
	return NULL;
}

/* One spinning thread on each of these CPUs (at most CKPT_SPIN_MAX), for at most limit_ms;
 * 0, or -errno when a thread could not start (those started are stopped again). */
int ckpt_spin_start(const int *cpus, int ncpus, long limit_ms)
{
	if (spin_count)
		return -EBUSY;
	if (ncpus > CKPT_SPIN_MAX)
		ncpus = CKPT_SPIN_MAX;
	spin_limit_ns = limit_ms * 1000000L;
	atomic_store(&spin_on, 1);
	for (int i = 0; i < ncpus; i++) {
		pthread_attr_t attr;
		cpu_set_t set;
		int rc;

		CPU_ZERO(&set);
		CPU_SET(cpus[i], &set);
		pthread_attr_init(&attr);
		pthread_attr_setaffinity_np(&attr, sizeof(set), &set);
		rc = pthread_create(&spin_threads[spin_count], &attr, spin_body, NULL);
		pthread_attr_destroy(&attr);
		if (rc) {
			ckpt_spin_stop();
			return -rc;
		}
		spin_count++;
	}
	return 0;
}

/* Stop and join the spinning threads (nothing if none runs). */
void ckpt_spin_stop(void)
{
	atomic_store(&spin_on, 0);
	for (int i = 0; i < spin_count; i++)
		pthread_join(spin_threads[i], NULL);
	spin_count = 0;
}
