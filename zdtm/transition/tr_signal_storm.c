/* Signals sent continuously during C/R: a child sends the parent a stream of SIGUSR1
 * (kill) and of two realtime signals (sigqueue with consecutive values, each signal its own
 * sequence). The parent blocks them for 1 ms every other step, so realtime signals queue
 * up pending. Its handlers check every siginfo (SI_QUEUE from the child's pid) and that
 * each realtime value is the next one of its sequence. At check, once the child stopped,
 * every queued realtime signal must have arrived exactly once and in order, and SIGUSR1
 * (which coalesces) between once and as many times as it was sent. */
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define MIN_STEPS 3
#define MIN_SENT 3
#define NRT 2

struct sent {
	pid_t child;		/* the sender, as it sees itself */
	uint32_t rt[NRT];	/* values queued so far, per realtime signal */
	uint32_t usr1;		/* SIGUSR1 sent */
};

static struct sent *sent;	/* shared with the child */
static pid_t child, parent;
static unsigned long steps;
static int rt_sig[NRT];

/* written by the handlers only */
static volatile uint32_t rt_got[NRT], usr1_got, bad_info;
static volatile int bad_sig, bad_code, bad_pid;
static volatile uint32_t bad_seq, bad_seq_got, bad_seq_want;
static volatile int bad_seq_sig;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	int k = sig == rt_sig[0] ? 0 : 1;
	uint32_t v = (uint32_t)si->si_value.sival_int;

	(void)uc;
	if (si->si_code != SI_QUEUE || si->si_pid != sent->child) {
		if (!bad_info) {
			bad_sig = sig;
			bad_code = si->si_code;
			bad_pid = si->si_pid;
		}
		bad_info++;
	}
	if (v != rt_got[k]) {
		if (!bad_seq) {
			bad_seq_sig = sig;
			bad_seq_got = v;
			bad_seq_want = rt_got[k];
		}
		bad_seq++;
	}
	rt_got[k] = v + 1;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code != SI_USER || si->si_pid != sent->child) {
		if (!bad_info) {
			bad_sig = sig;
			bad_code = si->si_code;
			bad_pid = si->si_pid;
		}
		bad_info++;
	}
	usr1_got++;
}

static int report_handlers(void)
{
	if (bad_info)
		return zdtm_fail("%u signals with a wrong siginfo, first: signal %d code %d "
				 "from pid %d (expected from %d)", bad_info, bad_sig, bad_code,
				 bad_pid, sent->child);
	if (bad_seq)
		return zdtm_fail("%u realtime signals out of sequence, first: signal %d value %u, "
				 "expected %u", bad_seq, bad_seq_sig, bad_seq_got, bad_seq_want);
	return 0;
}

static void sleep_ns(long ns)
{
	struct timespec ts = { 0, ns };

	nanosleep(&ts, NULL);
}

/* --- the child: the sender ------------------------------------------------------------ */

static int child_setup(void *arg)
{
	(void)arg;
	sent->child = getpid();
	return 0;
}

static int child_step(void *arg)
{
	(void)arg;
	for (int k = 0; k < NRT; k++) {
		union sigval v = { .sival_int = (int)sent->rt[k] };

		if (sigqueue(parent, rt_sig[k], v) == 0)
			sent->rt[k]++;
		else if (errno != EAGAIN)	/* EAGAIN: the queue is full, retry later */
			return zdtm_err("child: sigqueue(%d, %d, %u)", parent, rt_sig[k],
					v.sival_int);
	}
	if (kill(parent, SIGUSR1))
		return zdtm_err("child: kill(%d, SIGUSR1)", parent);
	sent->usr1++;
	sleep_ns(300000);
	return 0;
}

static int child_check(void *arg)
{
	(void)arg;
	if (getppid() != parent)
		return zdtm_fail("child: parent is %d, expected %d", getppid(), parent);
	return 0;
}

/* --- the parent: the receiver --------------------------------------------------------- */

static int build(void)
{
	static const struct zdtm_task task = {
		.setup = child_setup, .step = child_step, .check = child_check,
	};
	struct sigaction sa = { .sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART };

	rt_sig[0] = SIGRTMIN + 1;
	rt_sig[1] = SIGRTMAX - 1;
	sent = zdtm_shmem(sizeof(*sent));
	if (!sent)
		return zdtm_err("shared page");
	sigemptyset(&sa.sa_mask);
	for (int k = 0; k < NRT; k++)
		if (sigaction(rt_sig[k], &sa, NULL))
			return zdtm_err("sigaction(%d)", rt_sig[k]);
	sa.sa_sigaction = on_usr1;
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction(SIGUSR1)");
	parent = getpid();
	child = zdtm_child(&task);
	return child < 0 ? -1 : 0;
}

static int step(void)
{
	sigset_t set;

	if (steps % 2 == 0) {
		/* Let signals queue up pending for a while: C/R may catch them there. */
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		for (int k = 0; k < NRT; k++)
			sigaddset(&set, rt_sig[k]);
		sigprocmask(SIG_BLOCK, &set, NULL);
		sleep_ns(1000000);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
	} else {
		sleep_ns(500000);
	}
	if (report_handlers())
		return -1;
	steps++;
	return 0;
}

/* Both realtime signals arrived a few times already. */
static bool queued(void)
{
	return rt_got[0] >= MIN_SENT && rt_got[1] >= MIN_SENT;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, queued);
}

static int check_state(void)
{
	sigset_t cur, pend;

	if (!sent || child <= 0)
		return zdtm_fail("setup never ran: no sending child (pid %d)", child);
	if (steps < MIN_STEPS)
		return zdtm_fail("the receiving loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	/* Stop the sender: everything it sent is queued by now. */
	if (zdtm_child_stop(&child))
		return -1;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	for (int k = 0; k < NRT; k++)
		if (sigismember(&cur, rt_sig[k]))
			return zdtm_fail("signal %d is still blocked", rt_sig[k]);
	if (sigismember(&cur, SIGUSR1))
		return zdtm_fail("SIGUSR1 is still blocked");
	sigpending(&pend);
	for (int k = 0; k < NRT; k++)
		if (sigismember(&pend, rt_sig[k]))
			return zdtm_fail("signal %d is pending while unblocked", rt_sig[k]);
	if (report_handlers())
		return -1;
	for (int k = 0; k < NRT; k++) {
		if (sent->rt[k] < MIN_SENT)
			return zdtm_fail("the child queued only %u of signal %d", sent->rt[k],
					 rt_sig[k]);
		if (rt_got[k] != sent->rt[k])
			return zdtm_fail("signal %d: got values up to %u, the child queued %u",
					 rt_sig[k], rt_got[k], sent->rt[k]);
	}
	if (usr1_got < 1 || usr1_got > sent->usr1)
		return zdtm_fail("got SIGUSR1 %u times, the child sent it %u times", usr1_got,
				 sent->usr1);
	zdtm_msg("%lu steps; realtime signals %u + %u in order, SIGUSR1 %u of %u", steps,
		 rt_got[0], rt_got[1], usr1_got, sent->usr1);
	return 0;
}

static int check(void)
{
	return zdtm_child_guard(check_state, &child);
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
