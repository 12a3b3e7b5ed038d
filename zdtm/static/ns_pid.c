/* A private pid namespace survives C/R with its init, its pid numbers and its tree. The
 * root clones P into a new pid namespace (P is pid 1 there). Inside, P has:
 *   G  a child (zdtm_child) that checks its pid and that its parent is pid 1;
 *   H  an orphan: forked by X, which exited at once, so H was reparented to P (the
 *      namespace's init); H checks that its parent is pid 1;
 *   Z  a zombie P has not reaped, exited with code 33.
 * P checks that it is pid 1 with no parent in its namespace, the zombie's status, then
 * stops G and H and reaps them. The root checks from outside: the NSpid lines of P and
 * of P's children (/proc/P/task/P/children) give the same inner pids as before, they all
 * share P's pid namespace, which is not the root's. */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define Z_CODE 33

struct shared {
	pid_t g, h, z;			/* inner pids, as P's namespace numbers them */
	pid_t x;
	struct zdtm_sync h_ready, p_ready;
	int p_setup_failed;
};

static struct shared *sh;
static pid_t p_pid;

/* --- inside the namespace ----------------------------------------------------------- */

static int g_setup(void *arg)
{
	(void)arg;
	sh->g = getpid();
	return 0;
}

static int g_check(void *arg)
{
	(void)arg;
	if (getpid() != sh->g || getppid() != 1)
		return zdtm_fail("G: pid %d, parent %d; expected %d and 1", getpid(), getppid(),
				 sh->g);
	return 0;
}

static void h_main(void)
{
	for (int i = 0; getppid() != 1; i++) {
		if (i > 2000)
			_exit(2);
		usleep(1000);
	}
	sh->h = getpid();
	zdtm_sync_set(&sh->h_ready, 1);
	zdtm_wait_stop();
	if (getpid() != sh->h || getppid() != 1) {
		zdtm_fail("H: pid %d, parent %d; expected %d and 1 (reparented to the init)",
			  getpid(), getppid(), sh->h);
		_exit(1);
	}
	_exit(0);
}

static int p_setup(pid_t *g)
{
	static const struct zdtm_task gt = { .setup = g_setup, .check = g_check };
	pid_t x, z;
	int status;

	if (getpid() != 1)
		return zdtm_fail("P: pid %d in the new namespace, expected 1", getpid());
	*g = zdtm_child(&gt);
	if (*g <= 0)
		return -1;
	x = fork();
	if (x < 0)
		return zdtm_err("P: fork X");
	if (x == 0) {
		if (fork() == 0)
			h_main();
		_exit(0);	/* orphans H */
	}
	sh->x = x;
	if (waitpid(x, &status, 0) != x || !WIFEXITED(status) || WEXITSTATUS(status))
		return zdtm_fail("P: X ended with status %#x", status);
	if (zdtm_sync_wait(&sh->h_ready, 1))
		return zdtm_fail("P: H did not report");
	z = fork();
	if (z < 0)
		return zdtm_err("P: fork Z");
	if (z == 0)
		_exit(Z_CODE);
	sh->z = z;
	return 0;
}

static int p_check(pid_t g)
{
	siginfo_t si = { .si_pid = 0 };
	int rc = 0, status;

	if (getpid() != 1 || getppid() != 0)
		rc = zdtm_fail("P: pid %d, parent %d; expected 1 and 0 (the parent is outside)",
			       getpid(), getppid());
	if (waitid(P_PID, sh->z, &si, WEXITED | WNOHANG))
		rc = zdtm_err("P: waitid Z %d", sh->z);
	else if (si.si_pid != sh->z || si.si_code != CLD_EXITED || si.si_status != Z_CODE)
		rc = zdtm_fail("P: zombie Z %d: pid %d code %d status %d, expected exit %d",
			       sh->z, si.si_pid, si.si_code, si.si_status, Z_CODE);
	if (zdtm_child_check(g))
		rc = -1;
	if (kill(sh->h, SIGTERM))
		return zdtm_err("P: H %d is gone", sh->h);
	if (waitpid(sh->h, &status, 0) != sh->h)
		return zdtm_err("P: waitpid H %d (is it still P's child?)", sh->h);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		rc = zdtm_fail("P: H ended with status %#x", status);
	return rc;
}

static void p_main(void)
{
	pid_t g = 0;

	if (p_setup(&g)) {
		sh->p_setup_failed = 1;
		zdtm_sync_set(&sh->p_ready, 1);
		_exit(1);
	}
	zdtm_sync_set(&sh->p_ready, 1);
	zdtm_wait_stop();
	_exit(p_check(g) ? 1 : 0);
}

/* --- outside ---------------------------------------------------------------------------- */

static int setup(void)
{
	pid_t p;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared memory");
	p = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, 0);
	if (p < 0)
		return zdtm_err("clone(CLONE_NEWPID)");
	if (p == 0)
		p_main();
	p_pid = p;
	if (zdtm_sync_wait(&sh->p_ready, 1) || sh->p_setup_failed)
		return zdtm_fail("P did not set up its namespace");
	zdtm_msg("P %d is 1 inside; G %d, H %d (orphan of X %d), zombie Z %d inside", p, sh->g,
		 sh->h, sh->x, sh->z);
	return 0;
}

/* The innermost pid of NSpid in /proc/PID/status, with the number of levels. */
static int nspid(pid_t pid, int *levels)
{
	char buf[128], *p, *end;
	long v = -1;

	*levels = 0;
	if (zdtm_proc_status(pid, "NSpid", buf, sizeof(buf)))
		return -1;
	for (p = buf; *p; p = end) {
		v = strtol(p, &end, 10);
		if (end == p)
			break;
		(*levels)++;
	}
	return (int)v;
}

static int same_pidns(pid_t a, pid_t b)
{
	char pa[64], pb[64];
	struct stat sa, sb;

	snprintf(pa, sizeof(pa), "/proc/%d/ns/pid", a);
	snprintf(pb, sizeof(pb), "/proc/%d/ns/pid", b);
	if (stat(pa, &sa) || stat(pb, &sb))
		return -1;
	return sa.st_ino == sb.st_ino;
}

static int check_outside(void)
{
	char path[64], buf[256], *s, *end;
	int levels, self_levels, inner, found = 0;

	nspid(getpid(), &self_levels);
	inner = nspid(p_pid, &levels);
	if (inner != 1 || levels != self_levels + 1)
		return zdtm_fail("P %d: NSpid innermost %d at %d levels, expected 1 at %d", p_pid,
				 inner, levels, self_levels + 1);
	if (same_pidns(getpid(), p_pid) != 0)
		return zdtm_fail("P %d is not in a pid namespace of its own", p_pid);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", p_pid, p_pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	for (s = buf;; s = end) {
		pid_t c = strtol(s, &end, 10);

		if (end == s)
			break;
		inner = nspid(c, &levels);
		if (inner != sh->g && inner != sh->h && inner != sh->z)
			return zdtm_fail("P's child %d is %d inside; expected G %d, H %d or Z %d", c,
					 inner, sh->g, sh->h, sh->z);
		if (levels != self_levels + 1 || same_pidns(c, p_pid) != 1)
			return zdtm_fail("P's child %d is not in P's pid namespace", c);
		found++;
	}
	if (found != 3)
		return zdtm_fail("P has %d children (%s), expected G, H and zombie Z", found, buf);
	return 0;
}

static int check(void)
{
	int rc, status;

	if (p_pid <= 0)
		return zdtm_fail("no pid namespace: setup did not run");
	rc = check_outside();
	if (kill(p_pid, SIGTERM))
		return zdtm_err("P %d is gone", p_pid);
	if (waitpid(p_pid, &status, 0) != p_pid)
		return zdtm_err("waitpid P %d", p_pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return zdtm_fail("P ended with status %#x: its checks failed", status);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
