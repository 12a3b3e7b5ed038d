/* Queued realtime signals survive C/R with their number, count, order and siginfo: an
 * interleaved series of SIGRTMIN+1..+4 queued with sigqueue (shared queue) and with
 * rt_tgsigqueueinfo (the thread's private queue), each carrying its own value. At check
 * they are taken one by one; the kernel hands out the private queue first, the lowest
 * signal first, and each signal's instances in the order they were queued. */
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define NSIGS 4			/* SIGRTMIN+1 .. SIGRTMIN+NSIGS */
#define MAXQ 512

struct qsig {
	int sig, code, val;
};

static struct qsig expected[MAXQ];
static int nexpected = -1;	/* -1: setup never ran */
static long nshared, nprivate;

static void rt_set(sigset_t *m)
{
	sigemptyset(m);
	for (int i = 1; i <= NSIGS; i++)
		sigaddset(m, SIGRTMIN + i);
}

/* The signal of the i-th queued instance: interleaved, not sorted. */
static int sig_for(int i)
{
	static const int order[] = { 2, 1, 4, 2, 3, 1, 1, 4, 3, 2, 4, 1, 3 };

	return SIGRTMIN + order[i % (sizeof(order) / sizeof(order[0]))];
}

static int tgsigqueue(int sig, int val)
{
	siginfo_t si = { .si_signo = sig, .si_code = SI_QUEUE };

	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = val;
	return syscall(SYS_rt_tgsigqueueinfo, getpid(), zdtm_gettid(), sig, &si);
}

/* Append the instances of queue q (values base..) in dequeue order: by signal, then FIFO. */
static void expect_queue(int base, long n, int code)
{
	for (int s = 1; s <= NSIGS; s++)
		for (long i = 0; i < n; i++)
			if (sig_for(i) == SIGRTMIN + s)
				expected[nexpected++] = (struct qsig){ SIGRTMIN + s, code, base + i };
}

static int setup(void)
{
	sigset_t set;

	nshared = zdtm_opt_long("shared", 40);
	nprivate = zdtm_opt_long("private", 15);
	if (nshared < 0 || nprivate < 0 || nshared + nprivate > MAXQ)
		return zdtm_fail("--shared=%ld --private=%ld: at most %d in all", nshared,
				 nprivate, MAXQ);
	rt_set(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return zdtm_err("sigprocmask");
	for (long i = 0; i < nshared; i++) {
		union sigval v = { .sival_int = 0x1000 + i };

		if (sigqueue(getpid(), sig_for(i), v))
			return zdtm_err("sigqueue #%ld (signal %d)", i, sig_for(i));
	}
	for (long i = 0; i < nprivate; i++)
		if (tgsigqueue(sig_for(i), 0x2000 + i))
			return zdtm_err("rt_tgsigqueueinfo #%ld (signal %d)", i, sig_for(i));
	nexpected = 0;
	expect_queue(0x2000, nprivate, SI_QUEUE);
	expect_queue(0x1000, nshared, SI_QUEUE);
	return 0;
}

static int check(void)
{
	struct timespec zero = { 0 };
	sigset_t set, pend;
	siginfo_t si;
	int n = 0, sig;

	rt_set(&set);
	sigpending(&pend);
	if (nexpected < 0) {
		for (int i = 1; i <= NSIGS; i++)
			if (sigismember(&pend, SIGRTMIN + i))
				return zdtm_fail("setup never ran, yet SIGRTMIN+%d is pending", i);
		return zdtm_fail("setup never ran: no realtime signal is pending");
	}
	for (;; n++) {
		/* the raw syscall: glibc's wrapper rewrites SI_TKILL */
		sig = syscall(SYS_rt_sigtimedwait, &set, &si, &zero, _NSIG / 8);
		if (sig < 0) {
			if (errno != EAGAIN)
				return zdtm_err("rt_sigtimedwait");
			break;
		}
		if (n >= nexpected)
			return zdtm_fail("extra signal #%d: SIGRTMIN+%d value %#x, only %d were queued",
					 n, sig - SIGRTMIN, si.si_value.sival_int, nexpected);
		if (sig != expected[n].sig || si.si_signo != sig ||
		    si.si_code != expected[n].code || si.si_value.sival_int != expected[n].val ||
		    si.si_pid != getpid() || si.si_uid != getuid())
			return zdtm_fail("signal #%d: SIGRTMIN+%d code %d value %#x pid %d uid %d, "
					 "expected SIGRTMIN+%d code %d value %#x pid %d uid %d", n,
					 sig - SIGRTMIN, si.si_code, si.si_value.sival_int, si.si_pid,
					 si.si_uid, expected[n].sig - SIGRTMIN, expected[n].code,
					 expected[n].val, getpid(), getuid());
	}
	if (n != nexpected)
		return zdtm_fail("%d realtime signals were pending, expected %d (%ld shared, "
				 "%ld private); next missing: SIGRTMIN+%d value %#x", n, nexpected,
				 nshared, nprivate, expected[n].sig - SIGRTMIN, expected[n].val);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
