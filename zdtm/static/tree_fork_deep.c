/* A chain of tasks (root -> 1 -> 2 -> ... -> depth): every task keeps its pid, parent,
 * process group and session, and its own data (heap and a copy-on-write area mapped at
 * the same address in every task). The root reads /proc for each task, then each task
 * checks itself from the inside, and the chain is torn down from the top. */
#include "zdtm.h"
#include "tree.h"

static int setup(void)
{
	static struct tree_node nodes[TREE_MAXN];
	long depth = zdtm_opt_long("depth", 5);

	if (depth < 1 || depth >= TREE_MAXN)
		return zdtm_fail("--depth=%ld: expected 1..%d", depth, TREE_MAXN - 1);
	for (int i = 1; i <= depth; i++)
		nodes[i] = (struct tree_node){ .creator = i - 1, .ppid = i - 1, .pgrp = 0, .sid = 0 };
	return tree_setup(nodes, depth + 1, NULL);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
