/* Zombies with children: a task makes children and dies unreaped; its children live on as
 * children of the root (a child subreaper), and so does its own unreaped zombie child. A
 * session leader killed by a signal stays a zombie while its session lives on in its
 * children; a zombie's parent may be a plain task. Every task and zombie keeps its pid,
 * parent, group and session; each zombie gives its exact wait status to its parent. */
#include <signal.h>

#include "zdtm.h"
#include "tree.h"

/*
 * root  subreaper
 *  |- 1  zombie (exit 101)        its children now belong to the root:
 *  |- 2                           parent root (made by 1)
 *  |   `- 3
 *  |- 4  setpgid                  parent root (made by 1), group 4
 *  |- 5  zombie (exit 105)        made by 1, dead before it: a zombie handed to the root
 *  |- 6  setsid, zombie (SIGUSR1) a zombie session leader
 *  |- 7                           parent root (made by 6), session 6
 *  |   `- 8  setpgid              session 6, group 8
 *  |- 9
 *  |   `- 10 zombie (SIGKILL)     a zombie of a plain task, made 11:
 *  `- 11                          parent root (9 is no subreaper)
 */
static const struct tree_node shape[] = {
	[0] = { .creator = -1, .flags = TREE_SUBREAPER },
	[1] = { .creator = 0, .flags = TREE_ZOMBIE, .ppid = 0 },
	[2] = { .creator = 1, .ppid = 0 },
	[3] = { .creator = 2, .ppid = 2 },
	[4] = { .creator = 1, .flags = TREE_SETPGID, .pg = 4, .ppid = 0, .pgrp = 4 },
	[5] = { .creator = 1, .flags = TREE_ZOMBIE, .ppid = 0 },
	[6] = { .creator = 0, .flags = TREE_SETSID | TREE_ZOMBIE, .sig = SIGUSR1, .ppid = 0, .pgrp = 6, .sid = 6 },
	[7] = { .creator = 6, .ppid = 0, .pgrp = 6, .sid = 6 },
	[8] = { .creator = 7, .flags = TREE_SETPGID, .pg = 8, .ppid = 7, .pgrp = 8, .sid = 6 },
	[9] = { .creator = 0, .ppid = 0 },
	[10] = { .creator = 9, .flags = TREE_ZOMBIE, .sig = SIGKILL, .ppid = 9 },
	[11] = { .creator = 10, .ppid = 0 },
};

static int setup(void)
{
	return tree_setup(shape, TREE_SIZE(shape), NULL);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
