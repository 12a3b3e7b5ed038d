/* Blocked signal masks survive C/R per thread: the main thread and several threads each
 * hold a different mask; every thread reports its own mask at check time. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 5

struct worker {
	pthread_t th;
	sigset_t want;	/* the mask setup gave the thread */
	sigset_t got;	/* what the thread saw at check time */
	uint64_t proc;	/* and its SigBlk in /proc/thread-self/status */
	int err;
};

static struct worker workers[NTHREADS];
static sigset_t main_want;
static bool started;
static volatile uint32_t go, ready, done;

static void futex_wait(volatile uint32_t *w, uint32_t v)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(volatile uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

/* Thread i's mask: a different pattern for each, over standard and realtime signals. */
static void pattern(int i, sigset_t *m)
{
	sigemptyset(m);
	switch (i) {
	case 0:		/* nothing blocked */
		break;
	case 1:
		sigaddset(m, SIGUSR1);
		sigaddset(m, SIGHUP);
		sigaddset(m, SIGRTMIN + 1);
		break;
	case 2:		/* everything blockable, SIGTERM included: it goes to other threads */
		sigfillset(m);
		break;
	case 3:
		for (int s = SIGRTMIN; s <= SIGRTMAX; s += 2)
			sigaddset(m, s);
		sigaddset(m, SIGCHLD);
		sigaddset(m, SIGTERM);
		break;
	default:
		sigaddset(m, SIGUSR2);
		sigaddset(m, SIGALRM);
		sigaddset(m, SIGWINCH);
		sigaddset(m, SIGPIPE);
		sigaddset(m, SIGRTMAX);
		break;
	}
}

static uint64_t kmask(const sigset_t *m)
{
	uint64_t v = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(m, s) == 1)
			v |= 1ULL << (s - 1);
	return v;
}

/* The kernel's view of the calling thread: SigBlk, a hex mask of signals 1..64. */
static int proc_sigblk(uint64_t *out)
{
	char buf[8192], *p;

	if (zdtm_read_file("/proc/thread-self/status", buf, sizeof(buf)) < 0)
		return errno ? errno : EIO;
	p = strstr(buf, "\nSigBlk:");
	if (!p || sscanf(p + 8, "%lx", out) != 1)
		return EINVAL;
	return 0;
}

static uint64_t strip(uint64_t m)
{
	return m & ~((1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1)));
}

static int compare(const char *who, const sigset_t *want, const sigset_t *got,
		   uint64_t proc)
{
	uint64_t w = strip(kmask(want)), g = kmask(got);

	if (g != w)
		return zdtm_fail("%s: blocked mask %016llx, expected %016llx "
				 "(extra %016llx, missing %016llx)", who,
				 (unsigned long long)g, (unsigned long long)w,
				 (unsigned long long)(g & ~w), (unsigned long long)(w & ~g));
	if (proc != w)
		return zdtm_fail("%s: SigBlk in /proc is %016llx, expected %016llx", who,
				 (unsigned long long)proc, (unsigned long long)w);
	return 0;
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;

	w->err = pthread_sigmask(SIG_SETMASK, &w->want, NULL);
	__atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
	futex_wake(&ready);
	/* A futex sleep leaves the mask alone (unlike sigsuspend). */
	while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST))
		futex_wait(&go, 0);
	pthread_sigmask(SIG_BLOCK, NULL, &w->got);
	w->err = proc_sigblk(&w->proc);
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
	futex_wake(&done);
	return NULL;
}

/* The main thread's mask: SIGTERM stays unblocked (the library owns it). */
static void main_pattern(sigset_t *m)
{
	sigemptyset(m);
	sigaddset(m, SIGUSR2);
	sigaddset(m, SIGQUIT);
	sigaddset(m, SIGRTMIN + 3);
	sigaddset(m, SIGRTMAX - 2);
}

static int setup(void)
{
	main_pattern(&main_want);
	if (sigprocmask(SIG_SETMASK, &main_want, NULL))
		return zdtm_err("sigprocmask");

	for (int i = 0; i < NTHREADS; i++) {
		pattern(i, &workers[i].want);
		if (pthread_create(&workers[i].th, NULL, worker_fn, &workers[i]))
			return zdtm_fail("pthread_create %d", i);
	}
	started = true;
	for (uint32_t r; (r = __atomic_load_n(&ready, __ATOMIC_SEQ_CST)) < NTHREADS;)
		futex_wait(&ready, r);
	for (int i = 0; i < NTHREADS; i++)
		if (workers[i].err)
			return zdtm_fail("thread %d: pthread_sigmask: %s", i, strerror(workers[i].err));
	return 0;
}

static int check(void)
{
	struct timespec ts = { .tv_nsec = 100000000 }, end, now;
	uint64_t proc;
	sigset_t cur;
	char who[32];
	int err;

	main_pattern(&main_want);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	err = proc_sigblk(&proc);
	if (err)
		return zdtm_fail("main thread: no SigBlk in /proc/thread-self/status: %s",
				 strerror(err));
	if (compare("main thread", &main_want, &cur, proc))
		return -1;
	if (!started)
		return zdtm_fail("setup never ran: no threads");

	__atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
	futex_wake(&go);
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += 1;
	for (;;) {
		uint32_t d = __atomic_load_n(&done, __ATOMIC_SEQ_CST);

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (d >= NTHREADS || now.tv_sec > end.tv_sec ||
		    (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
			break;
		syscall(SYS_futex, &done, FUTEX_WAIT_PRIVATE, d, &ts, NULL, 0);
	}
	if (__atomic_load_n(&done, __ATOMIC_SEQ_CST) < NTHREADS)
		return zdtm_fail("only %u of %d threads reported their masks", done, NTHREADS);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(workers[i].th, NULL);
	for (int i = 0; i < NTHREADS; i++) {
		snprintf(who, sizeof(who), "thread %d", i);
		if (workers[i].err)
			return zdtm_fail("%s: no SigBlk in /proc/thread-self/status: %s", who,
					 strerror(workers[i].err));
		if (compare(who, &workers[i].want, &workers[i].got, workers[i].proc))
			return -1;
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
