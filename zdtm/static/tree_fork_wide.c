/* A wide tree: the root has --fanout children, each of them --fanout children, and so on
 * for --levels levels (3 x 3 x 3: 39 tasks). Every task keeps its pid, parent, group and
 * session, and its own data: a heap buffer of its own size and a copy-on-write area that
 * sits at the same address in all 40 tasks with different contents in each. */
#include "zdtm.h"
#include "tree.h"

static int setup(void)
{
	static struct tree_node nodes[TREE_MAXN];
	long levels = zdtm_opt_long("levels", 3), fanout = zdtm_opt_long("fanout", 3);
	int first = 0, count = 1, next = 1;

	/* breadth first: the nodes of one level are first..first+count-1 */
	for (long l = 0; l < levels; l++) {
		for (int p = first; p < first + count; p++)
			for (long c = 0; c < fanout; c++) {
				if (next >= TREE_MAXN)
					return zdtm_fail("--levels=%ld --fanout=%ld: more than %d tasks",
							 levels, fanout, TREE_MAXN);
				nodes[next++] = (struct tree_node){ .creator = p, .ppid = p };
			}
		first += count;
		count *= fanout;
	}
	if (next < 2)
		return zdtm_fail("--levels=%ld --fanout=%ld: no tasks", levels, fanout);
	return tree_setup(nodes, next, NULL);
}

ZDTM_TEST(.setup = setup, .check = tree_check);
