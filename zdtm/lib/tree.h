/* Process trees from a table: the engine of the tree_* shape tests.
 *
 * A table of nodes says who makes whom and how (fork, or clone with CLONE_PARENT), what each
 * node does once made (setsid, setpgid, subreaper, exit, die unreaped) and the shape expected
 * once all is built. Nodes are made one at a time in index order (a shared turn counter), so
 * a node may join the group of any earlier node. Exiting nodes exit once the whole tree is
 * made and are reaped by their creator, so their children get reparented before the root
 * reports ready; zombie nodes die then too, but stay unreaped until the check.
 * At check the root reads /proc for every node; then SIGTERM goes down the tree: each task
 * checks itself from the inside (pid, parent, group, session, subreaper flag, its own heap
 * and copy-on-write data, then the test's hook), passes SIGTERM to its children and reaps
 * them. Whatever is left after a failure is killed and reaped.
 *
 *	static const struct tree_node shape[] = {
 *		[0] = { .creator = -1, .flags = TREE_SUBREAPER },
 *		[1] = { .creator = 0, .flags = TREE_SETSID, .ppid = 0, .pgrp = 1, .sid = 1 },
 *	};
 *	static int setup(void) { return tree_setup(shape, TREE_SIZE(shape), NULL); }
 *	ZDTM_TEST(.setup = setup, .check = tree_check);
 *
 * Node 0 is the test's root task. Node indexes stand for the pids the nodes got, so .pgrp = 1
 * means "the group whose id is node 1's pid", whether node 1 is alive or not.
 */
#ifndef ZDTM_TREE_H
#define ZDTM_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TREE_MAXN 64	/* nodes in a table, the root included */
#define TREE_SIZE(table) ((int)(sizeof(table) / sizeof((table)[0])))

/* What a node is: how it is made, what it does once made, how it ends (flags, or-ed). */
enum tree_kind {
	TREE_SETSID = 0x01,		/* calls setsid() */
	TREE_SETPGID = 0x02,		/* calls setpgid(0, pid of node .pg) */
	TREE_SUBREAPER = 0x04,		/* becomes a child subreaper */
	TREE_EXIT = 0x08,		/* exits with 100 + index once the tree is made; its creator reaps it */
	TREE_CLONE_PARENT = 0x10,	/* made with clone(CLONE_PARENT | SIGCHLD): a sibling of its creator */
	TREE_CLONE3 = 0x20,		/* made with clone3(CLONE_PARENT): exit signal that of its creator */
	TREE_ZOMBIE = 0x40,		/* dies like TREE_EXIT (or by signal .sig) but nobody reaps it before the check */
};

struct tree_node {
	int creator;		/* the node that makes it (none for the root, node 0: -1) */
	unsigned int flags;	/* enum tree_kind */
	int pg;			/* TREE_SETPGID: the node whose group it joins */
	int sig;		/* TREE_ZOMBIE: killed by this signal rather than exiting */
	int ppid, pgrp, sid;	/* the shape once built, as node indexes */
};

/* Build the tree of nodes[0..nr-1] (copied); hook (may be NULL) runs in every live task,
 * the root included, after its own checks: 0 or a recorded failure. 0 once all is built. */
int tree_setup(const struct tree_node *nodes, int nr, int (*hook)(int i));
/* The test's check: /proc view of every node, self-checks down the tree, teardown.
 * Safe in --check-only mode (fails: no tree). */
int tree_check(void);

/* The pid node i got (valid in any task once that node was made). */
pid_t tree_pid(int i);
/* Node i stays alive until the check (neither TREE_EXIT nor TREE_ZOMBIE). */
bool tree_live(int i);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t tree_now_ms(void);
/* From a hook of node i: make a new orphan (a child that forks a grandchild and exits) and
 * check it goes to node reaper, the nearest subreaper above i; it is then killed and left a
 * zombie for that subreaper to reap in its teardown. */
int tree_late_orphan(int i, int reaper);

#endif
