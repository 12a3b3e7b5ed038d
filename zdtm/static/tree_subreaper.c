/* A child subreaper collects orphans: a task below it exits and its children, a group
 * leader among them, get the subreaper as their parent; a grandchild of two exiting tasks
 * goes there too. Every task keeps its pid, parent, group and session; after C/R, the
 * restored orphans still know the subreaper is above them (a new orphan goes to it). */
#include "zdtm.h"
#include "tree.h"

/*
 * root
 *  `- 1  subreaper
 *      |- 2  exits                   its children go to 1:
 *      |   |- 3                      parent 1
 *      |   |- 4                      parent 1
 *      |   |   `- 5                  parent 4
 *      |   `- 6  setpgid             parent 1, group 6
 *      `- 7  exits
 *          `- 8  exits (first)
 *              `- 9                  parent 1 (7 was alive but is no subreaper)
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .flags = TREE_SUBREAPER, .ppid = 0 },
	[2] = { .creator = 1, .flags = TREE_EXIT },
	[3] = { .creator = 2, .ppid = 1 },
	[4] = { .creator = 2, .ppid = 1 },
	[5] = { .creator = 4, .ppid = 4 },
	[6] = { .creator = 2, .flags = TREE_SETPGID, .pg = 6, .ppid = 1, .pgrp = 6 },
	[7] = { .creator = 1, .flags = TREE_EXIT },
	[8] = { .creator = 7, .flags = TREE_EXIT },
	[9] = { .creator = 8, .ppid = 1 },
};

/* After C/R, new orphans made by the restored nodes 3 and 5 go to the subreaper. */
static int node_hook(int i)
{
	if (i == 3 || i == 5)
		return tree_late_orphan(i, 1);
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
