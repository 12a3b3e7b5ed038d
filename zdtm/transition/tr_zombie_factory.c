/* Zombies created and reaped during C/R: each step forks one child that exits at once
 * with a code derived from its sequence number (every fifth kills itself with SIGKILL or
 * SIGUSR2). The parent leaves them as zombies and reaps a batch of 12 at a time, in an
 * order that varies (oldest first, newest first, or waitpid(-1)): before reaping, each
 * must be a zombie ('Z' in /proc/PID/stat, parent = us) with the exact status seen by
 * waitid(WNOWAIT). The check does the same for the zombies of the unfinished batch, then
 * makes sure no other child is left. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define BATCH 12
#define MIN_STEPS 3

struct zombie {
	pid_t pid;
	uint32_t seq;
};

static struct zombie pending[BATCH];
static int npending;
static unsigned long steps, batches;
static uint32_t forked, reaped;
static pid_t self_pid;		/* 0 until setup */

/* The wait status child seq leaves. */
static int expected_status(uint32_t seq)
{
	if (seq % 10 == 4)
		return SIGKILL;
	if (seq % 10 == 9)
		return SIGUSR2;
	return (int)((seq * 13 + 5) & 0xff) << 8;
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

static void child(uint32_t seq)
{
	int st = expected_status(seq);
	sigset_t all;

	if (WIFSIGNALED(st)) {
		signal(WTERMSIG(st), SIG_DFL);
		sigfillset(&all);
		sigprocmask(SIG_UNBLOCK, &all, NULL);
		kill(getpid(), WTERMSIG(st));
	}
	_exit(WEXITSTATUS(st));
}

/* Is pid a zombie child of ours? 0: yes, else a recorded failure. */
static int check_zombie(const struct zombie *z, const char *when)
{
	char path[64], buf[512], *p, state;
	int ppid;

	snprintf(path, sizeof(path), "/proc/%d/stat", z->pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("%s: child #%u (pid %d): read %s", when, z->seq, z->pid, path);
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
		return zdtm_fail("%s: cannot parse %s: %s", when, path, buf);
	if (state != 'Z' || ppid != self_pid)
		return zdtm_fail("%s: child #%u (pid %d) has state %c, parent %d; expected a "
				 "zombie of %d", when, z->seq, z->pid, state, ppid, self_pid);
	return 0;
}

/* The wait status as waitid(WNOWAIT) reports it, rebuilt. */
static int peek_status(const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		return (si->si_status & 0xff) << 8;
	if (si->si_code == CLD_KILLED)
		return si->si_status & 0x7f;
	if (si->si_code == CLD_DUMPED)
		return (si->si_status & 0x7f) | 0x80;
	return -1;
}

/* Check and reap entry i of the pending table (taken out of it). */
static int reap_one(int i, bool any, const char *when)
{
	struct zombie z = pending[i];
	int want = expected_status(z.seq), status;
	char got_s[64], want_s[64];
	siginfo_t si;
	pid_t r;

	memset(&si, 0, sizeof(si));
	while (waitid(P_PID, z.pid, &si, WEXITED | WNOWAIT) < 0)
		if (errno != EINTR)
			return zdtm_err("%s: waitid(WNOWAIT) on child #%u (pid %d)", when, z.seq,
					z.pid);
	if (si.si_pid != z.pid || peek_status(&si) != want) {
		describe(want, want_s, sizeof(want_s));
		return zdtm_fail("%s: waitid(WNOWAIT) on child #%u (pid %d): pid %d code %d "
				 "status %d, expected %s", when, z.seq, z.pid, si.si_pid,
				 si.si_code, si.si_status, want_s);
	}
	if (check_zombie(&z, when))
		return -1;
	if (any) {
		/* Whichever zombie comes first: it must be one of ours. */
		while ((r = waitpid(-1, &status, WNOHANG)) < 0 && errno == EINTR)
			;
		for (i = 0; i < npending; i++)
			if (pending[i].pid == r)
				break;
		if (i == npending)
			return zdtm_fail("%s: waitpid(-1) returned %d, not one of the %d zombies",
					 when, r, npending);
		z = pending[i];
		want = expected_status(z.seq);
	} else {
		while ((r = waitpid(z.pid, &status, WNOHANG)) < 0 && errno == EINTR)
			;
		if (r != z.pid)
			return zdtm_err("%s: waitpid(%d) of zombie #%u returned %d", when, z.pid,
					z.seq, r);
	}
	if (status != want) {
		describe(status, got_s, sizeof(got_s));
		describe(want, want_s, sizeof(want_s));
		return zdtm_fail("%s: child #%u (pid %d) left %s, expected %s", when, z.seq,
				 z.pid, got_s, want_s);
	}
	memmove(&pending[i], &pending[i + 1], (npending - i - 1) * sizeof(pending[0]));
	npending--;
	reaped++;
	return 0;
}

static int reap_batch(const char *when)
{
	unsigned order = batches % 3;

	while (npending) {
		int i = order == 1 ? npending - 1 : 0;

		if (reap_one(i, order == 2, when))
			return -1;
	}
	batches++;
	return 0;
}

static int build(void)
{
	self_pid = getpid();
	return 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 100000 };
	pid_t pid = fork();

	if (pid < 0)
		return zdtm_err("fork of child #%u", forked);
	if (pid == 0)
		child(forked);
	pending[npending++] = (struct zombie){ pid, forked };
	forked++;
	if (npending == BATCH && reap_batch("step"))
		return -1;
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	int left, status;
	pid_t r;

	if (!self_pid)
		return zdtm_fail("setup never ran: no zombies made");
	if (steps < MIN_STEPS)
		return zdtm_fail("the zombie loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (self_pid != getpid())
		return zdtm_fail("pid changed from %d to %d", self_pid, getpid());
	left = npending;
	if (forked != steps || reaped + npending != forked)
		return zdtm_fail("%lu steps forked %u children, %u reaped and %d pending", steps,
				 forked, reaped, npending);
	if (reap_batch("check"))
		return -1;
	r = waitpid(-1, &status, WNOHANG);
	if (r != -1 || errno != ECHILD)
		return zdtm_fail("an unexpected child is left: waitpid(-1) returned %d", r);
	zdtm_msg("%lu steps: %u zombies made and reaped in %lu batches, %d at check", steps,
		 forked, batches, left);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
