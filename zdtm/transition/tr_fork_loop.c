/* Tasks forked and exiting during C/R: each step forks a few children at once; each child
 * checks what it inherited (its parent's pid, a copy-on-write buffer the parent rewrites
 * after every fork), lives up to 2 ms, then exits with a code derived from its sequence
 * number, or kills itself with SIGUSR2. The parent reaps each child by pid, in reverse
 * order, and checks its exact wait status. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define SEED 0xf0c1
#define PER_STEP 3
#define BUF_LEN 8192
#define MIN_STEPS 3

/* exit codes of a child whose inherited state is wrong */
#define BAD_PPID 121
#define BAD_BUF 122
#define BAD_SEQ 123

static unsigned long steps;
static uint64_t forked, reaped, status_sum;
static pid_t self_pid;			/* 0 until setup */
static volatile uint64_t buf_seq;	/* the sequence number buf was filled for */
static unsigned char buf[BUF_LEN];

/* The wait status a child with this sequence number must leave. */
static int expected_status(uint64_t seq)
{
	if (seq % 7 == 3)
		return SIGUSR2;				/* killed, no core */
	return (int)((seq % 100) + 1) << 8;		/* exited with 1..100 */
}

static void describe(int status, char *out, size_t len)
{
	if (WIFEXITED(status))
		snprintf(out, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, len, "signal %d%s", WTERMSIG(status),
			 WCOREDUMP(status) ? " (core)" : "");
	else
		snprintf(out, len, "status 0x%x", status);
}

static void child(uint64_t seq)
{
	struct timespec ts = { 0, (long)(seq % 3) * 1000000 };
	sigset_t set;

	if (getppid() != self_pid)
		_exit(BAD_PPID);
	if (buf_seq != seq)
		_exit(BAD_SEQ);
	if (zdtm_verify(buf, BUF_LEN, SEED, seq * BUF_LEN) >= 0)
		_exit(BAD_BUF);
	nanosleep(&ts, NULL);	/* stay alive for a while: C/R may catch us */
	if (getppid() != self_pid)
		_exit(BAD_PPID);
	if (zdtm_verify(buf, BUF_LEN, SEED, seq * BUF_LEN) >= 0)
		_exit(BAD_BUF);
	if (expected_status(seq) & 0x7f) {
		signal(SIGUSR2, SIG_DFL);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR2);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		kill(getpid(), SIGUSR2);
	}
	_exit(WEXITSTATUS(expected_status(seq)));
}

static int build(void)
{
	self_pid = getpid();
	return 0;
}

static int step(void)
{
	pid_t pids[PER_STEP];
	uint64_t seqs[PER_STEP];
	int i;

	for (i = 0; i < PER_STEP; i++) {
		uint64_t seq = forked;

		buf_seq = seq;
		zdtm_fill(buf, BUF_LEN, SEED, seq * BUF_LEN);
		pids[i] = fork();
		if (pids[i] < 0)
			return zdtm_err("fork of child #%llu", (unsigned long long)seq);
		if (pids[i] == 0)
			child(seq);
		seqs[i] = seq;
		forked++;
	}
	/* The parent's pages change under the children (copy-on-write). */
	zdtm_fill(buf, BUF_LEN, SEED ^ 1, 0);
	buf_seq = ~0ULL;

	for (i = PER_STEP - 1; i >= 0; i--) {
		int status, want = expected_status(seqs[i]);
		char got_s[64], want_s[64];
		pid_t r;

		while ((r = waitpid(pids[i], &status, 0)) < 0 && errno == EINTR)
			;
		if (r != pids[i])
			return zdtm_err("waitpid(%d) of child #%llu returned %d", pids[i],
					(unsigned long long)seqs[i], r);
		if (status != want) {
			describe(status, got_s, sizeof(got_s));
			describe(want, want_s, sizeof(want_s));
			return zdtm_fail("child #%llu (pid %d) left %s, expected %s",
					 (unsigned long long)seqs[i], pids[i], got_s, want_s);
		}
		reaped++;
		status_sum += (uint64_t)status;
	}
	steps++;
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	uint64_t want_sum = 0;
	int status;
	pid_t r;

	if (!self_pid)
		return zdtm_fail("setup never ran: no fork loop state");
	if (steps < MIN_STEPS)
		return zdtm_fail("the fork loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (self_pid != getpid())
		return zdtm_fail("pid changed from %d to %d", self_pid, getpid());
	if (forked != steps * PER_STEP || reaped != forked)
		return zdtm_fail("%lu steps forked %llu children (expected %lu), reaped %llu",
				 steps, (unsigned long long)forked, steps * PER_STEP,
				 (unsigned long long)reaped);
	for (uint64_t s = 0; s < forked; s++)
		want_sum += (uint64_t)expected_status(s);
	if (status_sum != want_sum)
		return zdtm_fail("sum of %llu wait statuses is %llu, expected %llu",
				 (unsigned long long)forked, (unsigned long long)status_sum,
				 (unsigned long long)want_sum);
	r = waitpid(-1, &status, WNOHANG);
	if (r != -1 || errno != ECHILD)
		return zdtm_fail("an unexpected child is left: waitpid(-1) returned %d", r);
	zdtm_msg("%lu steps, %llu children forked and reaped", steps,
		 (unsigned long long)forked);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
