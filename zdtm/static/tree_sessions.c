/* Several sessions in one tree: children of the root call setsid() and make groups and
 * grandchildren inside their sessions, a grandchild starts a session of its own inside
 * another one, and a task joins a group made by a cousin. Every task keeps its pid,
 * parent, group and session (seen in /proc and from the inside). */
#include <unistd.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root (session 0, group 0)
 *  |- 1  setsid             session 1, group 1
 *  |   |- 2                 session 1, group 1
 *  |   |   `- 10 joins group 3 (made by its uncle)
 *  |   `- 3  setpgid        session 1, group 3
 *  |       `- 4             session 1, group 3
 *  |- 5  setsid             session 5, group 5
 *  |   `- 6  setpgid        session 5, group 6
 *  |       `- 7  setsid     session 7, group 7 (a session made inside session 5)
 *  |           `- 8         session 7, group 7
 *  `- 9  setpgid            session 0, group 9
 *      `- 11                session 0, group 9
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .flags = TREE_SETSID, .ppid = 0, .pgrp = 1, .sid = 1 },
	[2] = { .creator = 1, .ppid = 1, .pgrp = 1, .sid = 1 },
	[3] = { .creator = 1, .flags = TREE_SETPGID, .pg = 3, .ppid = 1, .pgrp = 3, .sid = 1 },
	[4] = { .creator = 3, .ppid = 3, .pgrp = 3, .sid = 1 },
	[5] = { .creator = 0, .flags = TREE_SETSID, .ppid = 0, .pgrp = 5, .sid = 5 },
	[6] = { .creator = 5, .flags = TREE_SETPGID, .pg = 6, .ppid = 5, .pgrp = 6, .sid = 5 },
	[7] = { .creator = 6, .flags = TREE_SETSID, .ppid = 6, .pgrp = 7, .sid = 7 },
	[8] = { .creator = 7, .ppid = 7, .pgrp = 7, .sid = 7 },
	[9] = { .creator = 0, .flags = TREE_SETPGID, .pg = 9, .ppid = 0, .pgrp = 9, .sid = 0 },
	[10] = { .creator = 2, .flags = TREE_SETPGID, .pg = 3, .ppid = 2, .pgrp = 3, .sid = 1 },
	[11] = { .creator = 9, .ppid = 9, .pgrp = 9, .sid = 0 },
};

/* From the inside: a session leader cannot start another session, nor leave its group. */
static int node_hook(int i)
{
	if (shape[i].sid != i)
		return 0;
	if (setsid() >= 0 || errno != EPERM)
		return zdtm_fail("node %d (pid %d) leads session %d, yet setsid() did not fail with EPERM",
				 i, getpid(), getsid(0));
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
