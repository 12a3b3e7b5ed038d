/* Per-process prctl state survives C/R. The root sets no_new_privs, clears dumpable and
 * becomes a child subreaper. Its child C keeps the opposite values and has SIGUSR2 as
 * parent-death signal; C's child G has SIGUSR1 as parent-death signal. Each checks its
 * values (prctl and /proc/self/status). Then the values act: when C exits, G must get
 * SIGUSR1 (its handler exits with 42 after checking its pdeathsig), and G, orphaned, must
 * be reparented to the root (the subreaper), which reaps it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define G_OK 42
#define G_BAD_SIG 43

struct shared {
	pid_t g;			/* the grandchild */
	struct zdtm_sync g_ready;
};

static struct shared *sh;
static bool root_set;
static pid_t child;

static int expect(const char *who, const char *what, int got, int want)
{
	if (got == want)
		return 0;
	return zdtm_fail("%s: %s is %d, expected %d", who, what, got, want);
}

static int verify(const char *who, int nnp, int dumpable, int subreaper, int pdeathsig)
{
	char buf[32];
	int v = -1;

	if (expect(who, "PR_GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), nnp) ||
	    expect(who, "PR_GET_DUMPABLE", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), dumpable))
		return -1;
	if (prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0) ||
	    expect(who, "PR_GET_CHILD_SUBREAPER", v, subreaper))
		return -1;
	if (prctl(PR_GET_PDEATHSIG, &v, 0, 0, 0) || expect(who, "PR_GET_PDEATHSIG", v, pdeathsig))
		return -1;
	if (zdtm_proc_status(0, "NoNewPrivs", buf, sizeof(buf)) ||
	    expect(who, "NoNewPrivs in /proc/self/status", atoi(buf), nnp))
		return -1;
	return 0;
}

static void g_on_usr1(int sig)
{
	int v = -1;

	(void)sig;
	prctl(PR_GET_PDEATHSIG, &v, 0, 0, 0);
	_exit(v == SIGUSR1 ? G_OK : G_BAD_SIG);
}

static int c_setup(void *arg)
{
	struct sigaction sa = { .sa_handler = g_on_usr1 };
	pid_t g;

	(void)arg;
	if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0))
		return zdtm_err("C: PR_SET_PDEATHSIG");
	g = fork();
	if (g < 0)
		return zdtm_err("C: fork");
	if (g == 0) {
		sigset_t none;

		sigemptyset(&sa.sa_mask);
		sigaction(SIGUSR1, &sa, NULL);
		/* the library's SIGTERM handler was inherited: G ignores the stop signal */
		signal(SIGTERM, SIG_IGN);
		if (prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0))
			_exit(1);
		sh->g = getpid();
		zdtm_sync_set(&sh->g_ready, 1);
		sigemptyset(&none);
		for (;;)
			sigsuspend(&none);
	}
	if (zdtm_sync_wait(&sh->g_ready, 1))
		return zdtm_fail("C: interrupted while waiting for G");
	return 0;
}

static int c_check(void *arg)
{
	siginfo_t si = { .si_pid = 0 };

	(void)arg;
	if (verify("C", 0, 1, 0, SIGUSR2))
		return -1;
	if (waitid(P_PID, sh->g, &si, WEXITED | WNOHANG | WNOWAIT))
		return zdtm_err("C: waitid on G %d", sh->g);
	if (si.si_pid)
		return zdtm_fail("C: G %d already exited (code %d)", sh->g, si.si_status);
	return 0;	/* exiting now sends G its SIGUSR1 */
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = c_setup, .check = c_check };

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared memory");
	child = zdtm_child(&t);
	if (child <= 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return zdtm_err("PR_SET_NO_NEW_PRIVS");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
		return zdtm_err("PR_SET_DUMPABLE 0");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		return zdtm_err("PR_SET_CHILD_SUBREAPER");
	root_set = true;
	return 0;
}

static int check(void)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	int rc = 0, status, i;
	pid_t r = 0;

	if (!root_set)
		return zdtm_fail("prctl state never set: setup did not run");
	if (verify("root", 1, 0, 1, 0))
		rc = -1;
	if (zdtm_child_check(child))
		return -1;

	/* C is gone: G got SIGUSR1 and, as an orphan, became the subreaper's child */
	for (i = 0; i < 300; i++) {
		r = waitpid(sh->g, &status, WNOHANG);
		if (r != 0)
			break;
		nanosleep(&tick, NULL);
	}
	if (r < 0 && errno == ECHILD) {
		kill(sh->g, SIGKILL);
		return zdtm_fail("G %d was not reparented to the root: the subreaper flag is lost",
				 sh->g);
	}
	if (r <= 0) {
		kill(sh->g, SIGKILL);
		waitpid(sh->g, &status, 0);
		return zdtm_fail("G %d did not exit within 3 s of its parent's death: no "
				 "parent-death signal", sh->g);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == G_BAD_SIG)
		return zdtm_fail("G got SIGUSR1 but its PR_GET_PDEATHSIG was not SIGUSR1");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != G_OK)
		return zdtm_fail("G ended with status %#x, expected exit %d from its SIGUSR1 handler",
				 status, G_OK);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
