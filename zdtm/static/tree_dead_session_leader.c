/* Sessions whose leader died: a child of the root starts a session, makes groups and
 * grandchildren in it, and exits; its session and its leaderless group live on in its
 * descendants, now children of the root (a child subreaper). A second session leader
 * deeper in the tree dies the same way. Every task keeps its pid, parent, group and
 * session; the dead leaders' pids stay unused, and each session's members still see it. */
#include <signal.h>
#include <unistd.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root  subreaper
 *  |- 1  setsid, exits       session 1 lives on without its leader:
 *  |   |- 2                  parent root, session 1, group 1 (leaderless too)
 *  |   |   `- 5              session 1, group 1
 *  |   `- 3  setpgid         parent root, session 1, group 3
 *  |       `- 4              session 1, group 3
 *  `- 6
 *      `- 7  setsid, exits   session 7 lives on without its leader:
 *          `- 8  setpgid     parent root (6 is no subreaper), session 7, group 8
 *              `- 9          session 7, group 8
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1, .flags = TREE_SUBREAPER },
	[1] = { .creator = 0, .flags = TREE_SETSID | TREE_EXIT },
	[2] = { .creator = 1, .ppid = 0, .pgrp = 1, .sid = 1 },
	[3] = { .creator = 1, .flags = TREE_SETPGID, .pg = 3, .ppid = 0, .pgrp = 3, .sid = 1 },
	[4] = { .creator = 3, .ppid = 3, .pgrp = 3, .sid = 1 },
	[5] = { .creator = 2, .ppid = 2, .pgrp = 1, .sid = 1 },
	[6] = { .creator = 0, .ppid = 0 },
	[7] = { .creator = 6, .flags = TREE_SETSID | TREE_EXIT },
	[8] = { .creator = 7, .flags = TREE_SETPGID, .pg = 8, .ppid = 0, .pgrp = 8, .sid = 7 },
	[9] = { .creator = 8, .ppid = 8, .pgrp = 8, .sid = 7 },
};

/* From the inside: no task has the pid of the session's leader any more, and a group
 * leader of the dead session still cannot start a session of its own. */
static int node_hook(int i)
{
	pid_t sid = getsid(0);

	if (tree_live(shape[i].sid))
		return 0;
	if (kill(sid, 0) == 0 || errno != ESRCH)
		return zdtm_fail("node %d (pid %d): the leader %d of its session is alive again",
				 i, getpid(), sid);
	if (shape[i].pgrp == i && (setsid() >= 0 || errno != EPERM))
		return zdtm_fail("node %d (pid %d) leads group %d, yet setsid() did not fail with EPERM",
				 i, getpid(), getpgrp());
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
