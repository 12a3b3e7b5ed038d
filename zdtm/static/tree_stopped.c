/* Stopped tasks stay stopped: a child that stopped itself with SIGSTOP, one stopped by the
 * root with SIGSTOP (its stop already reported to the root), a group of two (parent and
 * child) stopped at once by SIGSTOP to the group, and a child in a group of its own that
 * stopped itself with SIGTSTP. At check all are in state T, have not run on, and the root
 * can still collect each pending stop report with its exact signal (none for the one it
 * collected already). SIGCONT then resumes them all, with a continue report each. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum { SELF_STOP, STOPPED, GROUP, GROUP_CHILD, SELF_TSTP, NR };

static const char *const names[NR] = {
	"self-stopped child", "child stopped by the root", "group leader",
	"group member (grandchild)", "child stopped by SIGTSTP",
};

struct shared {
	struct zdtm_sync ready;
	pid_t pid[NR];
	uint32_t resumed[NR];	/* times a self-stopping task ran on past its stop */
};

static struct shared *sh;
static bool made;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char read_stat(pid_t pid, int *ppid, int *pgrp)
{
	char path[64], buf[1024], *p, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return 0;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d %d", &st, ppid, pgrp) != 3)
		return '?';
	return st;
}

static pid_t want_ppid(int i)
{
	return i == GROUP_CHILD ? sh->pid[GROUP] : getpid();
}

static pid_t want_pgrp(int i, pid_t root)
{
	if (i == GROUP || i == GROUP_CHILD)
		return sh->pid[GROUP];
	return i == SELF_TSTP ? sh->pid[SELF_TSTP] : root;
}

/* A task checks itself once continued and told to stop (SIGTERM). */
static void task_main(int i, pid_t root, pid_t parent)
{
	int rc = 0, status;
	siginfo_t si;

	sh->pid[i] = getpid();
	signal(SIGTSTP, SIG_DFL);
	if (i == GROUP || i == SELF_TSTP)
		setpgid(0, 0);
	if (i == GROUP) {
		pid_t c = fork();

		if (c < 0)
			_exit(2);
		if (c == 0) {	/* from here on, the group member */
			i = GROUP_CHILD;
			parent = sh->pid[GROUP];
			sh->pid[i] = getpid();
		}
	}
	zdtm_sync_add(&sh->ready, 1);
	if (i == SELF_STOP || i == SELF_TSTP) {
		kill(getpid(), i == SELF_STOP ? SIGSTOP : SIGTSTP);
		sh->resumed[i]++;
	}
	zdtm_wait_stop();
	if (getppid() != parent)
		rc = zdtm_fail("%s %d: parent %d, expected %d", names[i], getpid(), getppid(), parent);
	if (getpgrp() != want_pgrp(i, root))
		rc = zdtm_fail("%s %d: group %d, expected %d", names[i], getpid(), getpgrp(), want_pgrp(i, root));
	if ((i == SELF_STOP || i == SELF_TSTP) && sh->resumed[i] != 1)
		rc = zdtm_fail("%s %d ran past its stop %u times, expected once", names[i], getpid(), sh->resumed[i]);
	if (i == GROUP) {
		/* the member's continue report waits for its parent, the group leader */
		pid_t c = sh->pid[GROUP_CHILD];

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, c, &si, WCONTINUED | WNOHANG) || si.si_pid != c || si.si_code != CLD_CONTINUED)
			rc = zdtm_fail("the group leader has no continue report of its child %d (pid %d code %d)",
				       c, si.si_pid, si.si_code);
		kill(c, SIGTERM);
		if (waitpid(c, &status, 0) != c || status)
			rc = zdtm_fail("the group member %d ended with status 0x%x", c, status);
	}
	_exit(rc ? 1 : 0);
}

static int wait_state(int i, bool stopped, int64_t end)
{
	int ppid, pgrp;
	char st;

	while ((st = read_stat(sh->pid[i], &ppid, &pgrp)) != 0 && (st == 'T') != stopped) {
		if (now_ms() > end)
			return zdtm_fail("the %s %d is in state %c, expected %s", names[i], sh->pid[i], st,
					 stopped ? "T" : "running (S)");
		usleep(1000);
	}
	return st ? 0 : zdtm_err("the %s %d: /proc stat", names[i], sh->pid[i]);
}

static int setup(void)
{
	int64_t end = now_ms() + 2000;
	pid_t root = getpid(), pid;
	int i, status;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shmem");
	for (i = 0; i < NR; i++) {
		if (i == GROUP_CHILD)
			continue;
		pid = fork();
		if (pid < 0)
			return zdtm_err("fork");
		if (pid == 0)
			task_main(i, root, root);
		sh->pid[i] = pid;
	}
	if (zdtm_sync_wait(&sh->ready, NR))
		return zdtm_fail("stopped before the tasks were ready");
	if (kill(sh->pid[STOPPED], SIGSTOP) || kill(-sh->pid[GROUP], SIGSTOP))
		return zdtm_err("SIGSTOP");
	/* collect this one's stop report now: none must be left for the check */
	if (waitpid(sh->pid[STOPPED], &status, WUNTRACED) != sh->pid[STOPPED] ||
	    !WIFSTOPPED(status) || WSTOPSIG(status) != SIGSTOP)
		return zdtm_fail("the %s did not stop (status 0x%x)", names[STOPPED], status);
	for (i = 0; i < NR; i++)
		if (wait_state(i, true, end))
			return -1;
	made = true;
	return 0;
}

static int check_report(int i, int code, int sig)
{
	siginfo_t si;
	int flags = code == CLD_CONTINUED ? WCONTINUED : WSTOPPED | WNOWAIT;

	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, sh->pid[i], &si, flags | WNOHANG))
		return zdtm_err("waitid(%d)", sh->pid[i]);
	if (!code && si.si_pid)
		return zdtm_fail("the %s %d has a stop report (code %d status %d), yet the root took it before",
				 names[i], sh->pid[i], si.si_code, si.si_status);
	if (code && (si.si_pid != sh->pid[i] || si.si_code != code || si.si_status != sig))
		return zdtm_fail("the %s %d: report pid %d code %d status %d, expected code %d status %d",
				 names[i], sh->pid[i], si.si_pid, si.si_code, si.si_status, code, sig);
	return 0;
}

static void cleanup(void)
{
	for (int i = NR - 1; i >= 0; i--)
		if (sh->pid[i] > 0)
			kill(sh->pid[i], SIGKILL);
	for (int i = 0; i < NR; i++)
		if (sh->pid[i] > 0 && i != GROUP_CHILD)
			waitpid(sh->pid[i], NULL, 0);
}

static int check(void)
{
	int64_t end = now_ms() + 1000;
	int i, ppid, pgrp, status, rc = 0;
	char st;

	if (!made)
		return zdtm_fail("no stopped tasks were made");
	for (i = 0; i < NR; i++) {
		st = read_stat(sh->pid[i], &ppid, &pgrp);
		if (st != 'T')
			rc = zdtm_fail("the %s %d is in state %c, expected T", names[i], sh->pid[i], st ? st : '-');
		else if (ppid != want_ppid(i) || pgrp != want_pgrp(i, getpid()))
			rc = zdtm_fail("the %s %d: parent %d group %d, expected %d and %d", names[i],
				       sh->pid[i], ppid, pgrp, want_ppid(i), want_pgrp(i, getpid()));
	}
	if (sh->resumed[SELF_STOP] || sh->resumed[SELF_TSTP])
		rc = zdtm_fail("self-stopped tasks ran on past their stop (%u, %u times)",
			       sh->resumed[SELF_STOP], sh->resumed[SELF_TSTP]);
	rc |= check_report(SELF_STOP, CLD_STOPPED, SIGSTOP);
	rc |= check_report(STOPPED, 0, 0);
	rc |= check_report(GROUP, CLD_STOPPED, SIGSTOP);
	rc |= check_report(SELF_TSTP, CLD_STOPPED, SIGTSTP);
	if (rc) {
		cleanup();
		return rc;
	}

	if (kill(sh->pid[SELF_STOP], SIGCONT) || kill(sh->pid[STOPPED], SIGCONT) ||
	    kill(-sh->pid[GROUP], SIGCONT) || kill(sh->pid[SELF_TSTP], SIGCONT))
		rc = zdtm_err("SIGCONT");
	for (i = 0; i < NR; i++)
		rc |= wait_state(i, false, end);
	while ((sh->resumed[SELF_STOP] < 1 || sh->resumed[SELF_TSTP] < 1) && now_ms() < end)
		usleep(1000);
	for (i = 0; i < NR; i++)
		if (i != GROUP_CHILD)
			rc |= check_report(i, CLD_CONTINUED, SIGCONT);
	if (rc) {
		cleanup();
		return rc;
	}

	for (i = 0; i < NR; i++)
		if (i != GROUP_CHILD)
			kill(sh->pid[i], SIGTERM);
	for (i = 0; i < NR; i++) {
		pid_t r;

		if (i == GROUP_CHILD)
			continue;
		while ((r = waitpid(sh->pid[i], &status, WNOHANG)) == 0 && now_ms() < end + 1000)
			usleep(1000);
		if (r == 0) {
			rc = zdtm_fail("the %s %d did not finish its check in time", names[i], sh->pid[i]);
			cleanup();
			break;
		}
		if (r != sh->pid[i] || status)
			rc = zdtm_fail("the %s %d ended its check with status 0x%x", names[i], sh->pid[i], status);
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
