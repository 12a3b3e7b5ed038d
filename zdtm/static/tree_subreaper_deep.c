/* Orphans go to the nearest subreaper above them, however far: an orphan whose dead
 * parent's parent is no subreaper goes to the subreaper two levels up; under a nested
 * subreaper, orphans go to the inner one, not the outer one, a session leader among them.
 * Every task keeps its pid, parent, group and session; after C/R, new orphans made by
 * restored tasks still go to the right subreaper. */
#include "zdtm.h"
#include "tree.h"

/*
 * root
 *  `- 1  subreaper (outer)
 *      `- 2  no subreaper
 *          |- 3  exits                  its child goes two levels up, past 2:
 *          |   `- 4                     parent 1
 *          |       `- 5                 parent 4
 *          `- 6  subreaper (inner)
 *              `- 7  no subreaper
 *                  `- 8  exits          its children go to 6, not to 1:
 *                      |- 9             parent 6
 *                      `- 10 setsid     parent 6, session 10
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .flags = TREE_SUBREAPER, .ppid = 0 },
	[2] = { .creator = 1, .ppid = 1 },
	[3] = { .creator = 2, .flags = TREE_EXIT },
	[4] = { .creator = 3, .ppid = 1 },
	[5] = { .creator = 4, .ppid = 4 },
	[6] = { .creator = 2, .flags = TREE_SUBREAPER, .ppid = 2 },
	[7] = { .creator = 6, .ppid = 6 },
	[8] = { .creator = 7, .flags = TREE_EXIT },
	[9] = { .creator = 8, .ppid = 6 },
	[10] = { .creator = 8, .flags = TREE_SETSID, .ppid = 6, .pgrp = 10, .sid = 10 },
};

/* New orphans after C/R: from 2 and 5 they go to the outer subreaper, from 7 and 10 to
 * the inner one. */
static int node_hook(int i)
{
	switch (i) {
	case 2:
	case 5:
		return tree_late_orphan(i, 1);
	case 7:
	case 10:
		return tree_late_orphan(i, 6);
	}
	return 0;
}

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), node_hook);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
