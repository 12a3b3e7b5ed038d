/* Threads with their own state: the main thread and 6 threads each keep their tid, name,
 * blocked signal mask, __thread values (a word and a 256-byte buffer), data on their own
 * stack, robust futex list head and clear-child-tid address. The main thread checks each
 * thread from /proc (name, SigBlk), then every thread checks itself. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 6
#define SEED 0x7ead0000
#define STACK_DATA 8192

struct thr {
	pthread_t th;
	pid_t tid;
	uint64_t mask;		/* the blocked signals 1..64 it set, as SigBlk shows them */
	void *robust;		/* get_robust_list() at setup */
	size_t robust_len;
	void *tid_addr;		/* PR_GET_TID_ADDRESS at setup (NULL if the kernel lacks it) */
	int checked;		/* 1: its check passed, -1: failed */
};

static struct thr thr[NTHREADS + 1];	/* [NTHREADS] is the main thread */
static bool started;
static uint32_t ready, go, done;
static __thread uint64_t tls_word;
static __thread char tls_buf[256];

static void futex_wait(uint32_t *w, uint32_t v, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, ms ? &ts : NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

/* Thread i's blocked signals (i == NTHREADS: the main thread, which keeps SIGTERM open). */
static uint64_t pattern(int i)
{
	uint64_t m;

	if (i == NTHREADS)
		return 1ULL << (SIGUSR2 - 1) | 1ULL << (SIGRTMIN + 20 - 1);
	m = 1ULL << (SIGRTMIN + i - 1) | 1ULL << (SIGRTMAX - i - 1);
	if (i & 1)
		m |= 1ULL << (SIGUSR1 - 1) | 1ULL << (SIGTERM - 1);
	if (i & 2)
		m |= 1ULL << (SIGHUP - 1) | 1ULL << (SIGCHLD - 1);
	if (i & 4)
		m |= 1ULL << (SIGALRM - 1) | 1ULL << (SIGWINCH - 1);
	return m;
}

static void to_set(uint64_t m, sigset_t *set)
{
	sigemptyset(set);
	for (int s = 1; s <= 64; s++)
		if (m & 1ULL << (s - 1))
			sigaddset(set, s);
}

static uint64_t from_set(const sigset_t *set)
{
	uint64_t m = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(set, s) == 1)
			m |= 1ULL << (s - 1);
	return m;
}

/* The calling thread takes its state. */
static int take_state(int i, char *stack)
{
	struct thr *t = &thr[i];
	char name[16];
	sigset_t set;

	t->tid = zdtm_gettid();
	if (i < NTHREADS) {
		snprintf(name, sizeof(name), "thr-%d", i);
		if (prctl(PR_SET_NAME, name, 0, 0, 0))
			return zdtm_err("thread %d: PR_SET_NAME", i);
	}
	to_set(pattern(i), &set);
	if (pthread_sigmask(SIG_SETMASK, &set, NULL))
		return zdtm_fail("thread %d: pthread_sigmask", i);
	tls_word = SEED + i * 0x1111;
	zdtm_fill(tls_buf, sizeof(tls_buf), SEED + i, 0);
	zdtm_fill(stack, STACK_DATA, SEED + i, 4096);
	if (syscall(SYS_get_robust_list, 0, &t->robust, &t->robust_len))
		return zdtm_err("thread %d: get_robust_list", i);
	if (prctl(PR_GET_TID_ADDRESS, &t->tid_addr, 0, 0, 0))
		t->tid_addr = NULL;
	return 0;
}

/* The calling thread checks its state. */
static int check_state(int i, const char *stack)
{
	struct thr *t = &thr[i];
	void *robust, *tid_addr = NULL;
	char name[17] = "", want[16];
	size_t robust_len;
	sigset_t set;
	ssize_t bad;
	int rc = 0;

	if (zdtm_gettid() != t->tid)
		rc = zdtm_fail("thread %d: tid %d, expected %d", i, zdtm_gettid(), t->tid);
	if (i < NTHREADS) {
		snprintf(want, sizeof(want), "thr-%d", i);
		prctl(PR_GET_NAME, name, 0, 0, 0);
		if (strcmp(name, want))
			rc = zdtm_fail("thread %d (tid %d): name '%s', expected '%s'", i, t->tid, name, want);
	}
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	if (from_set(&set) != pattern(i))
		rc = zdtm_fail("thread %d (tid %d): blocked mask %016llx, expected %016llx", i, t->tid,
			       (unsigned long long)from_set(&set), (unsigned long long)pattern(i));
	if (tls_word != SEED + (uint64_t)i * 0x1111)
		rc = zdtm_fail("thread %d (tid %d): __thread word 0x%llx, expected 0x%llx", i, t->tid,
			       (unsigned long long)tls_word, (unsigned long long)(SEED + i * 0x1111));
	bad = zdtm_verify(tls_buf, sizeof(tls_buf), SEED + i, 0);
	if (bad >= 0)
		rc = zdtm_fail("thread %d (tid %d): __thread buffer byte %zd differs", i, t->tid, bad);
	bad = zdtm_verify(stack, STACK_DATA, SEED + i, 4096);
	if (bad >= 0)
		rc = zdtm_fail("thread %d (tid %d): stack byte %zd of %d differs", i, t->tid, bad, STACK_DATA);
	if (syscall(SYS_get_robust_list, 0, &robust, &robust_len))
		rc = zdtm_err("thread %d: get_robust_list", i);
	else if (robust != t->robust || robust_len != t->robust_len)
		rc = zdtm_fail("thread %d (tid %d): robust list %p (len %zu), expected %p (len %zu)",
			       i, t->tid, robust, robust_len, t->robust, t->robust_len);
	if (t->tid_addr && (prctl(PR_GET_TID_ADDRESS, &tid_addr, 0, 0, 0) || tid_addr != t->tid_addr))
		rc = zdtm_fail("thread %d (tid %d): clear-child-tid address %p, expected %p",
			       i, t->tid, tid_addr, t->tid_addr);
	return rc;
}

static void *thread_fn(void *arg)
{
	int i = (int)(long)arg;
	char stack[STACK_DATA];
	int rc = take_state(i, stack);

	__atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
	futex_wake(&ready);
	if (rc)
		return NULL;
	while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST))
		futex_wait(&go, 0, 0);
	thr[i].checked = check_state(i, stack) ? -1 : 1;
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
	futex_wake(&done);
	return NULL;
}

/* The kernel's view of thread tid of this process: Name and SigBlk. */
static int check_proc(int i)
{
	char path[64], buf[4096], want[16], *p;
	unsigned long long sigblk;
	struct thr *t = &thr[i];

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", t->tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("thread %d: %s", i, path);
	snprintf(want, sizeof(want), "thr-%d", i);
	p = strstr(buf, "Name:\t");
	if (i < NTHREADS && (!p || strncmp(p + 6, want, strlen(want)) || p[6 + strlen(want)] != '\n'))
		return zdtm_fail("thread %d (tid %d): %s has no 'Name:\t%s'", i, t->tid, path, want);
	p = strstr(buf, "\nSigBlk:");
	if (!p || sscanf(p + 8, "%llx", &sigblk) != 1)
		return zdtm_fail("thread %d: no SigBlk in %s", i, path);
	if (sigblk != pattern(i))
		return zdtm_fail("thread %d (tid %d): SigBlk %016llx in /proc, expected %016llx",
				 i, t->tid, sigblk, (unsigned long long)pattern(i));
	return 0;
}

static char main_stack[STACK_DATA];	/* the main thread's "stack" data lives here */

static int setup(void)
{
	uint32_t r;

	if (take_state(NTHREADS, main_stack))
		return -1;
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&thr[i].th, NULL, thread_fn, (void *)i))
			return zdtm_fail("pthread_create %ld", i);
	while ((r = __atomic_load_n(&ready, __ATOMIC_SEQ_CST)) < NTHREADS)
		futex_wait(&ready, r, 0);
	if (zdtm_failed())
		return -1;
	started = true;
	return 0;
}

static int check(void)
{
	struct timespec ts;
	int64_t end;
	uint32_t d;
	int i, rc = 0;

	if (!started)
		return zdtm_fail("setup never ran: no threads");
	for (i = 0; i <= NTHREADS; i++)
		if (check_proc(i))
			rc = -1;
	if (check_state(NTHREADS, main_stack))
		rc = -1;
	__atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
	futex_wake(&go);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	end = ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1500;
	while ((d = __atomic_load_n(&done, __ATOMIC_SEQ_CST)) < NTHREADS) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (ts.tv_sec * 1000 + ts.tv_nsec / 1000000 > end)
			return zdtm_fail("only %u of %d threads finished their check", d, NTHREADS);
		futex_wait(&done, d, 50);
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(thr[i].th, NULL);
		if (thr[i].checked != 1)
			rc = -1;
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
