/* Orphaned process groups (no member has a parent in another group of the same session):
 * a session leader makes a group and exits, so its group and the one it left behind are
 * orphaned once their members belong to the root, in another session. Nothing in them is
 * stopped (the kernel would send SIGHUP and SIGCONT). A group in the root's session, with
 * the root as parent, is not orphaned. At check, each task in an orphaned group sends
 * itself SIGTSTP, SIGTTIN and SIGTTOU, which the kernel discards there; the task in the
 * group that is not orphaned stops on SIGTSTP and is continued. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root  subreaper, session 0, group 0 (orphaned: the root's parent is in another session)
 *  |- 1  setsid, exits
 *  |   |- 2  setpgid            parent root, session 1, group 2: orphaned
 *  |   |   `- 3                 group 2
 *  |   `- 4                     parent root, session 1, group 1 (leaderless): orphaned
 *  |- 5  setpgid                session 0, group 5: not orphaned (parent root, group 0)
 *  |   `- 6                     group 5
 *  `- 7                         group 0: orphaned
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1, .flags = TREE_SUBREAPER },
	[1] = { .creator = 0, .flags = TREE_SETSID | TREE_EXIT },
	[2] = { .creator = 1, .flags = TREE_SETPGID, .pg = 2, .ppid = 0, .pgrp = 2, .sid = 1 },
	[3] = { .creator = 2, .ppid = 2, .pgrp = 2, .sid = 1 },
	[4] = { .creator = 1, .ppid = 0, .pgrp = 1, .sid = 1 },
	[5] = { .creator = 0, .flags = TREE_SETPGID, .pg = 5, .ppid = 0, .pgrp = 5 },
	[6] = { .creator = 5, .ppid = 5, .pgrp = 5 },
	[7] = { .creator = 0, .ppid = 0, .pgrp = 0 },
};

#define CONTROL 5	/* the group that is not orphaned */

/* The root stops the control task with SIGTSTP and continues it. */
static int stop_control(void)
{
	pid_t pid = tree_pid(CONTROL);
	int status, r;
	int64_t end = tree_now_ms() + 500;

	if (kill(pid, SIGTSTP))
		return zdtm_err("SIGTSTP to node %d (pid %d)", CONTROL, pid);
	while ((r = waitpid(pid, &status, WNOHANG | WUNTRACED)) == 0 && tree_now_ms() < end)
		usleep(1000);
	if (r != pid || !WIFSTOPPED(status) || WSTOPSIG(status) != SIGTSTP)
		return zdtm_fail("node %d (pid %d, group %d: not orphaned) did not stop on SIGTSTP (waitpid %d, status 0x%x)",
				 CONTROL, pid, getpgid(pid), r, r == pid ? status : 0);
	if (kill(pid, SIGCONT))
		return zdtm_err("SIGCONT to node %d (pid %d)", CONTROL, pid);
	while ((r = waitpid(pid, &status, WNOHANG | WCONTINUED)) == 0 && tree_now_ms() < end + 500)
		usleep(1000);
	if (r != pid || !WIFCONTINUED(status))
		return zdtm_fail("node %d (pid %d) did not continue (waitpid %d, status 0x%x)",
				 CONTROL, pid, r, r == pid ? status : 0);
	return 0;
}

static int node_hook(int i)
{
	static const int sigs[] = { SIGTSTP, SIGTTIN, SIGTTOU };

	if (i == 0)
		return stop_control();
	if (shape[i].pgrp == CONTROL)
		return 0;
	/* in an orphaned group these are discarded; otherwise the task stops here, and its
	 * parent reports it */
	for (int k = 0; k < 3; k++)
		if (kill(getpid(), sigs[k]))
			return zdtm_err("node %d: signal %d to itself", i, sigs[k]);
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
