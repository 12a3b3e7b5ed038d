/* Process groups: groups whose leader exited and was reaped while members (children and
 * grandchildren of other tasks) live on, a live leader with members spread over several
 * parents, and a lone leader. Every task keeps its pid, parent, group and session; the
 * dead leaders' pids stay unused; a signal sent to each leaderless group reaches exactly
 * its members. */
#include <signal.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root (group 0)
 *  |- 1  setpgid, exits      leader of group 1, gone
 *  |- 2  joins group 1
 *  |   `- 3                  group 1
 *  |- 4  setpgid             group 4
 *  |   |- 5                  group 4
 *  |   |   `- 6 joins group 1
 *  |   `- 8 joins group 7
 *  |- 7  setpgid, exits      leader of group 7, gone
 *  `- 9  setpgid             group 9, alone
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .flags = TREE_SETPGID | TREE_EXIT, .pg = 1 },
	[2] = { .creator = 0, .flags = TREE_SETPGID, .pg = 1, .ppid = 0, .pgrp = 1 },
	[3] = { .creator = 2, .ppid = 2, .pgrp = 1 },
	[4] = { .creator = 0, .flags = TREE_SETPGID, .pg = 4, .ppid = 0, .pgrp = 4 },
	[5] = { .creator = 4, .ppid = 4, .pgrp = 4 },
	[6] = { .creator = 5, .flags = TREE_SETPGID, .pg = 1, .ppid = 5, .pgrp = 1 },
	[7] = { .creator = 0, .flags = TREE_SETPGID | TREE_EXIT, .pg = 7 },
	[8] = { .creator = 4, .flags = TREE_SETPGID, .pg = 7, .ppid = 4, .pgrp = 7 },
	[9] = { .creator = 0, .flags = TREE_SETPGID, .pg = 9, .ppid = 0, .pgrp = 9 },
};

static volatile sig_atomic_t got_usr2;

static void on_usr2(int sig)
{
	(void)sig;
	got_usr2++;
}

/* The root signals each leaderless group once; every task then counts what it got. The
 * signal is queued before the SIGTERM that starts a task's check, so it is handled first. */
static int node_hook(int i)
{
	int want = !tree_live(shape[i].pgrp);

	if (i == 0) {
		for (int j = 1; j < TREE_SIZE(shape); j++)
			if (!tree_live(j) && kill(-tree_pid(j), SIGUSR2))
				return zdtm_err("SIGUSR2 to the group %d of the dead node %d",
						tree_pid(j), j);
		return 0;
	}
	if (got_usr2 != want)
		return zdtm_fail("node %d (pid %d, group %d) got %d SIGUSR2 sent to leaderless groups, expected %d",
				 i, getpid(), getpgrp(), (int)got_usr2, want);
	return 0;
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = on_usr2 };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL))
		return zdtm_err("sigaction(SIGUSR2)");
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
