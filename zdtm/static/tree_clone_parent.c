/* Tasks made with CLONE_PARENT (by clone and by clone3) are siblings of their creator:
 * children of the creator's parent, in the creator's group and session. Every task keeps
 * its pid, parent, group and session; a creator still cannot wait for the task it made. */
#include <sys/wait.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root
 *  |- 1
 *  |   |- 4
 *  |   `- 6  setpgid
 *  |- 2  made by 1 with clone(CLONE_PARENT)
 *  |- 3  made by 2 with clone3(CLONE_PARENT)
 *  |- 5  made by 4 with clone(CLONE_PARENT): parent 1
 *  |- 7  made by 6 with clone3(CLONE_PARENT): parent 1, group 6
 *  |- 8  setsid
 *  `- 9  made by 8 with clone(CLONE_PARENT): session 8
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .ppid = 0 },
	[2] = { .creator = 1, .flags = TREE_CLONE_PARENT, .ppid = 0 },
	[3] = { .creator = 2, .flags = TREE_CLONE3, .ppid = 0 },
	[4] = { .creator = 1, .ppid = 1 },
	[5] = { .creator = 4, .flags = TREE_CLONE_PARENT, .ppid = 1 },
	[6] = { .creator = 1, .flags = TREE_SETPGID, .pg = 6, .ppid = 1, .pgrp = 6 },
	[7] = { .creator = 6, .flags = TREE_CLONE3, .ppid = 1, .pgrp = 6 },
	[8] = { .creator = 0, .flags = TREE_SETSID, .ppid = 0, .pgrp = 8, .sid = 8 },
	[9] = { .creator = 8, .flags = TREE_CLONE_PARENT, .ppid = 0, .pgrp = 8, .sid = 8 },
};

/* From the inside: the tasks a node made with CLONE_PARENT are not its children. */
static int node_hook(int i)
{
	int status;

	for (int j = 1; j < TREE_SIZE(shape); j++) {
		if (shape[j].creator != i || !(shape[j].flags & (TREE_CLONE_PARENT | TREE_CLONE3)))
			continue;
		if (waitpid(tree_pid(j), &status, WNOHANG) >= 0 || errno != ECHILD)
			return zdtm_fail("node %d (pid %d) can wait for node %d (pid %d) it made with CLONE_PARENT",
					 i, getpid(), j, tree_pid(j));
	}
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
