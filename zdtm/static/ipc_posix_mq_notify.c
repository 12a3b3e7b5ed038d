/* POSIX message queue notifications survive C/R: the root is registered on empty queue A
 * (SIGEV_SIGNAL, a realtime signal with a value) and on queue C (SIGEV_NONE); a child on
 * queue B (SIGEV_SIGNAL, SIGUSR1 with another value). After C/R the queues' status lines
 * name the same owners and signals, registering again is refused (EBUSY), and a message
 * sent into each queue fires its registration once: the right task gets the right signal
 * with SI_MESGQ, the value and the sender's pid, and the registration is then gone. */
#include <fcntl.h>
#include <mqueue.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define VAL_A 0x1234abcd
#define VAL_B 0x5678

enum { QA, QB, QC, NQ };

static char names[NQ][64];
static mqd_t qs[NQ] = { -1, -1, -1 };
static pid_t child;
static int sig_a;

static volatile int got, got_signo, got_code, got_val, got_pid;

static void on_signal(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	got_signo = signo;
	got_code = si->si_code;
	got_val = si->si_value.sival_int;
	got_pid = si->si_pid;
	got++;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void wait_signal(int n)
{
	long long deadline = now_ms() + 1000;

	while (got < n && now_ms() < deadline)
		usleep(1000);
}

static int handler(int signo)
{
	struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_RESTART };

	sigemptyset(&sa.sa_mask);
	if (sigaction(signo, &sa, NULL))
		return zdtm_err("sigaction(%d)", signo);
	return 0;
}

static int notify(int q, int how, int signo, int val)
{
	struct sigevent ev = { .sigev_notify = how, .sigev_signo = signo };

	ev.sigev_value.sival_int = val;
	return mq_notify(qs[q], &ev);
}

/* The queue's status line (read from its fd): "QSIZE:n NOTIFY:n SIGNO:n NOTIFY_PID:n". */
static int status(int q, unsigned long *qsize, int *how, int *signo, int *pid)
{
	char buf[128];
	ssize_t n = pread(qs[q], buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return zdtm_err("read the status of queue %s", names[q]);
	buf[n] = '\0';
	if (sscanf(buf, "QSIZE:%lu NOTIFY:%d SIGNO:%d NOTIFY_PID:%d", qsize, how, signo, pid) != 4)
		return zdtm_fail("queue %s: cannot parse its status '%s'", names[q], buf);
	return 0;
}

static int expect_status(int q, unsigned long qsize, int how, int signo, int pid)
{
	unsigned long s;
	int h, sg, p;

	if (status(q, &s, &h, &sg, &p))
		return -1;
	/* NOTIFY and SIGNO only mean something while someone is registered. */
	if (s != qsize || p != pid || (pid && (h != how || sg != signo)))
		return zdtm_fail("queue %s: QSIZE %lu NOTIFY %d SIGNO %d NOTIFY_PID %d; expected "
				 "QSIZE %lu NOTIFY %d SIGNO %d NOTIFY_PID %d", names[q], s, h, sg, p,
				 qsize, how, signo, pid);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	got = 0;
	if (handler(SIGUSR1))
		return -1;
	if (notify(QB, SIGEV_SIGNAL, SIGUSR1, VAL_B))
		return zdtm_err("child: mq_notify on %s", names[QB]);
	return 0;
}

/* The root has sent one message into B just before stopping us. */
static int child_check(void *arg)
{
	(void)arg;
	wait_signal(1);
	if (got != 1 || got_signo != SIGUSR1 || got_code != SI_MESGQ || got_val != VAL_B ||
	    got_pid != getppid())
		return zdtm_fail("child: %d notifications, last signal %d code %d value 0x%x pid %d; "
				 "expected 1: signal %d SI_MESGQ value 0x%x pid %d", got, got_signo,
				 got_code, got_val, got_pid, SIGUSR1, VAL_B, getppid());
	return 0;
}

static int setup(void)
{
	struct zdtm_task t = { .setup = child_setup, .check = child_check };

	sig_a = SIGRTMIN + 2;
	for (int q = 0; q < NQ; q++) {
		snprintf(names[q], sizeof(names[q]), "/zdtm_ipc_mqn_%d_%c", getpid(), 'a' + q);
		qs[q] = mq_open(names[q], O_RDWR | O_CREAT | O_EXCL, 0600, NULL);
		if (qs[q] < 0)
			return zdtm_err("mq_open %s", names[q]);
	}
	if (handler(sig_a))
		return -1;
	if (notify(QA, SIGEV_SIGNAL, sig_a, VAL_A) || notify(QC, SIGEV_NONE, 0, 0))
		return zdtm_err("mq_notify");
	child = zdtm_child(&t);
	return child < 0 ? -1 : 0;
}

static int check_all(void)
{
	if (qs[QA] < 0 || child <= 0)
		return zdtm_fail("the queues were never set up (fds %d %d %d, child %d)", qs[QA],
				 qs[QB], qs[QC], child);
	if (expect_status(QA, 0, SIGEV_SIGNAL, sig_a, getpid()) ||
	    expect_status(QB, 0, SIGEV_SIGNAL, SIGUSR1, child) ||
	    expect_status(QC, 0, SIGEV_NONE, 0, getpid()))
		return -1;
	for (int q = 0; q < NQ; q++)
		if (notify(q, SIGEV_NONE, 0, 0) == 0 || errno != EBUSY)
			return zdtm_fail("queue %s: a new mq_notify was not refused with EBUSY",
					 names[q]);
	if (got)
		return zdtm_fail("%d notifications arrived before any message was sent", got);

	/* A: the root's own signal, once, and the registration is gone. */
	if (mq_send(qs[QA], "a", 1, 3))
		return zdtm_err("mq_send to %s", names[QA]);
	wait_signal(1);
	if (got != 1 || got_signo != sig_a || got_code != SI_MESGQ || got_val != VAL_A ||
	    got_pid != getpid())
		return zdtm_fail("%s: %d notifications, last signal %d code %d value 0x%x pid %d; "
				 "expected 1: signal %d SI_MESGQ value 0x%x pid %d", names[QA], got,
				 got_signo, got_code, got_val, got_pid, sig_a, VAL_A, getpid());
	if (expect_status(QA, 1, 0, 0, 0))
		return -1;

	/* C: SIGEV_NONE sends nothing, but the registration is used up all the same. */
	if (mq_send(qs[QC], "cc", 2, 0))
		return zdtm_err("mq_send to %s", names[QC]);
	usleep(20000);
	if (got != 1)
		return zdtm_fail("%s (SIGEV_NONE): a signal arrived", names[QC]);
	if (expect_status(QC, 2, 0, 0, 0))
		return -1;
	if (notify(QC, SIGEV_NONE, 0, 0))
		return zdtm_err("%s: register again after the notification", names[QC]);

	/* B: the child's registration; the child checks what it got. */
	if (mq_send(qs[QB], "bbb", 3, 0))
		return zdtm_err("mq_send to %s", names[QB]);
	if (zdtm_child_check(child))
		return -1;
	child = 0;
	return expect_status(QB, 3, 0, 0, 0);
}

static int check(void)
{
	int rc = check_all();

	if (child > 0)
		zdtm_child_check(child);
	for (int q = 0; q < NQ; q++)
		if (names[q][0] && mq_unlink(names[q]) && !rc)
			rc = zdtm_err("mq_unlink %s", names[q]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
