/* Pending standard signals survive C/R, in the right queues with their siginfo:
 * process-wide ones (kill, sigqueue) in the shared queue, thread-directed ones (tgkill,
 * rt_tgsigqueueinfo) in the private queues of the main thread and of a second thread.
 * Checked with sigpending, /proc/thread-self/status, then by taking them. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define VAL_HUP 0x5151
#define VAL_WINCH 0x7272
#define VAL_URG 0x5252

#define BIT(s) (1ULL << ((s) - 1))
#define SHARED (BIT(SIGUSR1) | BIT(SIGHUP))
#define MAIN_PRIV (BIT(SIGUSR2) | BIT(SIGWINCH))
#define WORKER_PRIV (BIT(SIGUSR2) | BIT(SIGURG))

static const int test_sigs[] = { SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGURG };

struct got {
	int count, code, pid, uid, val;
};
static struct got got[_NSIG];
static pid_t setup_pid;		/* 0: setup never ran */
static pthread_t worker;
static volatile uint32_t w_ready, w_go, w_done;
static pid_t w_tid;
static char w_err[300];

static void futex_wait(volatile uint32_t *w, uint32_t v)
{
	struct timespec ts = { .tv_nsec = 100000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, &ts, NULL, 0);
}

static void futex_wake(volatile uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got[sig].count++;
	got[sig].code = si->si_code;
	got[sig].pid = si->si_pid;
	got[sig].uid = si->si_uid;
	got[sig].val = si->si_value.sival_int;
}

static void test_set(sigset_t *m)
{
	sigemptyset(m);
	for (size_t i = 0; i < sizeof(test_sigs) / sizeof(test_sigs[0]); i++)
		sigaddset(m, test_sigs[i]);
}

static uint64_t kmask(const sigset_t *m)
{
	uint64_t v = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(m, s) == 1)
			v |= BIT(s);
	return v;
}

/* SigPnd (this thread's private queue) and ShdPnd (the process's) of the calling thread. */
static int proc_pending(uint64_t *priv, uint64_t *shd)
{
	char buf[8192], *p, *q;

	if (zdtm_read_file("/proc/thread-self/status", buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "\nSigPnd:");
	q = strstr(buf, "\nShdPnd:");
	if (!p || !q || sscanf(p + 8, "%lx", priv) != 1 || sscanf(q + 8, "%lx", shd) != 1)
		return -1;
	return 0;
}

static int tgsigqueue(pid_t tid, int sig, int val)
{
	siginfo_t si = { .si_signo = sig, .si_code = SI_QUEUE };

	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = val;
	return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, sig, &si);
}

/* The raw syscall: glibc's sigtimedwait folds SI_TKILL into SI_USER. */
static int take(const sigset_t *set, siginfo_t *si)
{
	struct timespec zero = { 0 };

	return syscall(SYS_rt_sigtimedwait, set, si, &zero, _NSIG / 8);
}

static void *worker_fn(void *arg)
{
	siginfo_t si;
	uint64_t priv, shd, pend;
	sigset_t set;

	(void)arg;
	w_tid = zdtm_gettid();
	__atomic_store_n(&w_ready, 1, __ATOMIC_SEQ_CST);
	futex_wake(&w_ready);
	while (!__atomic_load_n(&w_go, __ATOMIC_SEQ_CST))
		futex_wait(&w_go, 0);

	sigpending(&set);
	pend = kmask(&set);
	if (proc_pending(&priv, &shd))
		snprintf(w_err, sizeof(w_err), "thread: no SigPnd/ShdPnd in /proc/thread-self");
	else if (pend != (SHARED | WORKER_PRIV) || priv != WORKER_PRIV)
		snprintf(w_err, sizeof(w_err),
			 "thread: pending %016lx, private %016lx; expected %016llx, %016llx",
			 pend, priv, SHARED | WORKER_PRIV, WORKER_PRIV);
	if (w_err[0])
		goto out;
	/* Take the private ones: the thread's own queue is served before the shared one. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGURG);
	for (int i = 0; i < 2; i++) {
		int sig = take(&set, &si);
		int want_code = sig == SIGURG ? SI_QUEUE : SI_TKILL;

		if (sig < 0) {
			snprintf(w_err, sizeof(w_err), "thread: signal %d of 2 not pending: %s",
				 i + 1, strerror(errno));
			goto out;
		}
		sigdelset(&set, sig);
		if (si.si_code != want_code || si.si_pid != getpid() ||
		    (sig == SIGURG && si.si_value.sival_int != VAL_URG)) {
			snprintf(w_err, sizeof(w_err),
				 "thread: signal %d came with code %d pid %d value %#x, expected "
				 "%d %d %#x", sig, si.si_code, si.si_pid, si.si_value.sival_int,
				 want_code, getpid(), sig == SIGURG ? VAL_URG : 0);
			goto out;
		}
	}
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGURG);
	if (take(&set, &si) >= 0)
		snprintf(w_err, sizeof(w_err), "thread: signal %d pending twice", si.si_signo);
out:
	__atomic_store_n(&w_done, 1, __ATOMIC_SEQ_CST);
	futex_wake(&w_done);
	return NULL;
}

static int setup(void)
{
	struct sigaction sa = { .sa_sigaction = handler, .sa_flags = SA_SIGINFO };
	union sigval v = { .sival_int = VAL_HUP };
	sigset_t set;

	test_set(&set);
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(test_sigs) / sizeof(test_sigs[0]); i++)
		if (sigaction(test_sigs[i], &sa, NULL))
			return zdtm_err("sigaction(%d)", test_sigs[i]);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return zdtm_err("sigprocmask");
	if (pthread_create(&worker, NULL, worker_fn, NULL))	/* inherits the mask */
		return zdtm_fail("pthread_create failed");
	while (!__atomic_load_n(&w_ready, __ATOMIC_SEQ_CST))
		futex_wait(&w_ready, 0);

	/* shared queue: SIGUSR1 twice (a standard signal is queued once), SIGHUP with a value */
	if (kill(getpid(), SIGUSR1) || kill(getpid(), SIGUSR1) || sigqueue(getpid(), SIGHUP, v))
		return zdtm_err("kill/sigqueue");
	/* private queues */
	if (syscall(SYS_tgkill, getpid(), zdtm_gettid(), SIGUSR2) ||
	    tgsigqueue(zdtm_gettid(), SIGWINCH, VAL_WINCH))
		return zdtm_err("tgkill/rt_tgsigqueueinfo to the main thread");
	if (syscall(SYS_tgkill, getpid(), w_tid, SIGUSR2) || tgsigqueue(w_tid, SIGURG, VAL_URG))
		return zdtm_err("tgkill/rt_tgsigqueueinfo to thread %d", w_tid);
	setup_pid = getpid();
	return 0;
}

static int expect(int sig, int code, int val)
{
	struct got *g = &got[sig];

	if (g->count != 1)
		return zdtm_fail("signal %d delivered %d times after unblocking, expected once",
				 sig, g->count);
	if (g->code != code || g->pid != getpid() || g->uid != (int)getuid() || g->val != val)
		return zdtm_fail("signal %d: siginfo code %d pid %d uid %d value %#x, expected "
				 "%d %d %d %#x", sig, g->code, g->pid, g->uid, g->val, code, getpid(),
				 getuid(), val);
	return 0;
}

static int check(void)
{
	uint64_t pend, priv, shd;
	sigset_t set;

	sigpending(&set);
	pend = kmask(&set);
	if (proc_pending(&priv, &shd))
		return zdtm_fail("no SigPnd/ShdPnd in /proc/thread-self/status");
	if (pend != (SHARED | MAIN_PRIV))
		return zdtm_fail("main thread: pending %016llx, expected %016llx (missing %016llx)",
				 (unsigned long long)pend, SHARED | MAIN_PRIV,
				 (SHARED | MAIN_PRIV) & ~pend);
	if (priv != MAIN_PRIV || shd != SHARED)
		return zdtm_fail("main thread: private %016llx shared %016llx, expected %016llx %016llx",
				 (unsigned long long)priv, (unsigned long long)shd, MAIN_PRIV, SHARED);
	if (!setup_pid)
		return zdtm_fail("setup never ran");

	__atomic_store_n(&w_go, 1, __ATOMIC_SEQ_CST);
	futex_wake(&w_go);
	for (int i = 0; i < 15 && !__atomic_load_n(&w_done, __ATOMIC_SEQ_CST); i++)
		futex_wait(&w_done, 0);
	if (!__atomic_load_n(&w_done, __ATOMIC_SEQ_CST))
		return zdtm_fail("the second thread did not report");
	pthread_join(worker, NULL);
	if (w_err[0])
		return zdtm_fail("%s", w_err);

	/* Unblock: every pending signal reaches the handler once, with its siginfo. */
	test_set(&set);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	if (expect(SIGUSR1, SI_USER, 0) || expect(SIGHUP, SI_QUEUE, VAL_HUP) ||
	    expect(SIGUSR2, SI_TKILL, 0) || expect(SIGWINCH, SI_QUEUE, VAL_WINCH))
		return -1;
	if (got[SIGURG].count)
		return zdtm_fail("SIGURG of the second thread reached the main thread");
	sigpending(&set);
	if (kmask(&set))
		return zdtm_fail("still pending after delivery: %016llx",
				 (unsigned long long)kmask(&set));
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
