/* Pids really recycled during C/R. The root unshares a pid namespace for its children
 * (and returns to its own at once), so the zdtm_child it forks is the init of a private
 * pid namespace, where nobody else forks. Each step the init forks a task (a fresh pid),
 * reaps it, writes that pid minus 1 to /proc/sys/kernel/ns_last_pid (the writer's pid
 * namespace) and forks again: the second task must get the reaped task's pid. Every task
 * compares getpid() and the raw getpid syscall with the pid expected for it and getppid()
 * with 1, answers through a pipe and exits with a code derived from its sequence number
 * (a mismatch gives another code). The init counts real reuses (fork returned the pid of
 * the task reaped just before) and bad reports in shared memory; the root's check wants
 * a reuse in every step, at least MIN_REUSES of them, and no bad report. The init has
 * PR_SET_PDEATHSIG(SIGKILL): killing the root kills the init and so its namespace. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define MIN_STEPS 3
#define MIN_REUSES 3
#define PER_STEP 2
#define NS_LAST_PID "/proc/sys/kernel/ns_last_pid"

/* exit codes of a task that saw something wrong */
#define BAD_PID 121
#define BAD_RAWPID 122
#define BAD_PPID 123
#define BAD_WRITE 124

struct answer {			/* task -> init */
	pid_t pid, rawpid, ppid;
	uint32_t seq;
};

struct stats {			/* shared between the root and the init */
	uint32_t steps, forked, reaped, reused, bad;
	uint32_t setup_done;
	pid_t init_pid;		/* getpid() of the init, as it sees itself */
};

static struct stats *st;	/* NULL until setup */
static pid_t child;		/* the init, as the root sees it */
static unsigned long steps;	/* the init's step count (for zdtm_warmup) */

static int expected_code(uint32_t seq)
{
	return 1 + seq % 100;
}

/* In the task: expect is the pid it must have (0: any). Never returns. */
static void task(int out, uint32_t seq, pid_t expect)
{
	struct answer a = { getpid(), (pid_t)syscall(SYS_getpid), getppid(), seq };
	int code = expected_code(seq);

	if (zdtm_write_all(out, &a, sizeof(a)) != sizeof(a))
		_exit(BAD_WRITE);
	if (expect && a.pid != expect)
		code = BAD_PID;
	else if (a.rawpid != a.pid)
		code = BAD_RAWPID;
	else if (a.ppid != 1)
		code = BAD_PPID;
	_exit(code);
}

/* Fork task #seq (expected to get pid expect, 0: any), collect its answer and status.
 * Returns its pid, or -1 with the failure recorded. */
static pid_t run_task(pid_t expect)
{
	uint32_t seq = st->forked;
	struct answer a;
	int p[2], status;
	ssize_t n;
	pid_t pid, r;

	if (pipe2(p, O_CLOEXEC))
		return zdtm_err("pipe"), -1;
	pid = fork();
	if (pid < 0)
		return zdtm_err("fork of task #%u", seq), -1;
	if (pid == 0) {
		close(p[0]);
		task(p[1], seq, expect);
	}
	st->forked++;
	close(p[1]);
	n = zdtm_read_all(p[0], &a, sizeof(a));
	close(p[0]);
	while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (r != pid)
		return zdtm_fail("waitpid(%d) of task #%u returned %d", pid, seq, r), -1;
	st->reaped++;
	if (n != sizeof(a)) {
		st->bad++;
		return zdtm_fail("task #%u (pid %d) sent %zd of %zu answer bytes, status 0x%x",
				 seq, pid, n, sizeof(a), status), -1;
	}
	if (a.seq != seq || a.pid != pid || a.rawpid != pid || a.ppid != 1) {
		st->bad++;
		return zdtm_fail("task #%u forked as pid %d (expected %d) saw itself as #%u, "
				 "getpid %d, raw getpid %d, parent %d (expected 1)", seq, pid,
				 expect, a.seq, a.pid, a.rawpid, a.ppid), -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != expected_code(seq)) {
		st->bad++;
		return zdtm_fail("task #%u (pid %d) left status 0x%x, expected exit %d", seq,
				 pid, status, expected_code(seq)), -1;
	}
	return pid;
}

static int set_last_pid(pid_t last)
{
	char buf[16];
	int fd, len = snprintf(buf, sizeof(buf), "%d", last);
	ssize_t n;

	fd = open(NS_LAST_PID, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return zdtm_err("open %s", NS_LAST_PID);
	n = write(fd, buf, len);
	close(fd);
	if (n != len)
		return zdtm_err("write %d to %s", last, NS_LAST_PID);
	return 0;
}

/* In the init: a fresh task, reaped, then its pid forced on the next task. */
static int ns_step(void *arg)
{
	static const struct timespec pause = { 0, 250000 };
	pid_t first, again;

	(void)arg;
	first = run_task(0);
	if (first < 0)
		return -1;
	if (first < 2)
		return zdtm_fail("task #%u got pid %d in our namespace", st->forked - 1, first);
	if (set_last_pid(first - 1))
		return -1;
	again = run_task(first);
	if (again < 0)
		return -1;
	if (again != first)
		return zdtm_fail("step %u: ns_last_pid set to %d after reaping pid %d, the next "
				 "fork got pid %d", st->steps, first - 1, first, again);
	st->reused++;
	st->steps++;
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int ns_warmup_step(void)
{
	return ns_step(NULL);
}

static bool ns_ready(void)
{
	return st->reused >= MIN_REUSES;
}

static int ns_setup(void *arg)
{
	(void)arg;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		return zdtm_err("PR_SET_PDEATHSIG");
	if (getppid() != 0)	/* the init of a new namespace has no visible parent */
		return zdtm_fail("not a pid namespace init: getpid %d, getppid %d", getpid(),
				 getppid());
	st->init_pid = getpid();
	if (zdtm_warmup(NULL, ns_warmup_step, &steps, MIN_STEPS, ns_ready))
		return -1;
	st->setup_done = 1;
	return 0;
}

static int ns_check(void *arg)
{
	int status;
	pid_t r;

	(void)arg;
	if (getpid() != 1 || syscall(SYS_getpid) != 1)
		return zdtm_fail("the namespace init sees itself as pid %d (raw %ld), not 1",
				 getpid(), syscall(SYS_getpid));
	r = waitpid(-1, &status, WNOHANG);
	if (r != -1 || errno != ECHILD)
		return zdtm_fail("an unexpected task is left in the namespace: waitpid(-1) "
				 "returned %d", r);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task init_task = {
		.setup = ns_setup, .step = ns_step, .check = ns_check,
	};
	int own_ns;

	st = zdtm_shmem(sizeof(*st));
	if (!st)
		return zdtm_err("shared stats");
	own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (own_ns < 0)
		return zdtm_err("open /proc/self/ns/pid");
	if (unshare(CLONE_NEWPID)) {
		close(own_ns);
		return zdtm_err("unshare(CLONE_NEWPID)");
	}
	child = zdtm_child(&init_task);
	/* Back to our own namespace for children: the new one lives through its init. */
	if (setns(own_ns, CLONE_NEWPID)) {
		close(own_ns);
		return zdtm_err("setns back to our pid namespace");
	}
	close(own_ns);
	return child < 0 ? -1 : 0;
}

static int check_state(void)
{
	struct stats s;

	if (!st || child <= 0)
		return zdtm_fail("setup never ran: no pid namespace init (pid %d)", child);
	if (!st->setup_done || st->init_pid != 1)
		return zdtm_fail("the namespace init did not finish its setup (done %u, its pid "
				 "%d, expected 1)", st->setup_done, st->init_pid);
	if (zdtm_child_stop(&child))
		return -1;
	s = *st;
	if (s.steps < MIN_STEPS)
		return zdtm_fail("the pid loop ran %u steps, expected at least %d", s.steps,
				 MIN_STEPS);
	if (s.bad)
		return zdtm_fail("%u of %u tasks reported a wrong pid, parent or status", s.bad,
				 s.forked);
	if (s.forked != s.steps * PER_STEP || s.reaped != s.forked)
		return zdtm_fail("%u steps forked %u tasks (expected %u), reaped %u", s.steps,
				 s.forked, s.steps * PER_STEP, s.reaped);
	if (s.reused < MIN_REUSES)
		return zdtm_fail("only %u pids really reused, expected at least %d", s.reused,
				 MIN_REUSES);
	if (s.reused != s.steps)
		return zdtm_fail("%u pids reused in %u steps, expected one per step", s.reused,
				 s.steps);
	zdtm_msg("%u steps: %u tasks checked their pids, %u pids reused", s.steps, s.forked,
		 s.reused);
	return 0;
}

static int check(void)
{
	return zdtm_child_guard(check_state, &child);
}

ZDTM_TEST(.setup = setup, .check = check);
