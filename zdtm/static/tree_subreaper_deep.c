/* Orphans go to the nearest subreaper above them, however far: an orphan whose dead
 * parent's parent is no subreaper goes to the subreaper two levels up; under a nested
 * subreaper, orphans go to the inner one, not the outer one, a session leader among them.
 * Every task keeps its pid, parent, group and session; after C/R, new orphans made by
 * restored tasks still go to the right subreaper. */
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

/* --- the tree engine (the same code in each tree_* shape test) ----------------------
 * A table of nodes says who makes whom, what each node does once made (setsid, setpgid,
 * subreaper, exit) and the shape expected once all is built. Nodes are made one at a
 * time in index order (a shared turn counter), so a node may join the group of any
 * earlier node. Exiting nodes exit once the whole tree is made and are reaped by their
 * creator, so their children get reparented before the root reports ready.
 * At check the root reads /proc for every node; then SIGTERM goes down the tree: each task
 * checks itself from the inside, passes SIGTERM to its children and reaps them. */

#define MAXN 64
#define SEED 0x7ee0000
#define COW_LEN (4 * 4096)

#define F_SETSID	0x01	/* calls setsid() */
#define F_SETPGID	0x02	/* calls setpgid(0, pid of node .pg) */
#define F_SUBREAPER	0x04	/* becomes a child subreaper */
#define F_EXIT		0x08	/* exits with 100 + index once the tree is made; its creator reaps it */

struct node {
	int creator;		/* the node that forks it (none for the root, node 0) */
	unsigned int flags;
	int pg;			/* F_SETPGID: the node whose group it joins */
	int ppid, pgrp, sid;	/* the shape once built, as node indexes */
};

struct tree {
	struct zdtm_sync turn;		/* node i gets made once turn reaches i */
	struct zdtm_sync settled;	/* live non-root nodes done building */
	int64_t deadline;		/* CLOCK_MONOTONIC ms: waits give up then */
	pid_t pid[MAXN];
};

struct pstat {
	char state;
	int ppid, pgrp, sid;
};

static struct node nodes[MAXN];
static int nr_nodes;
static struct tree *tree;	/* NULL until setup built the tree */
static char *mem;		/* this task's heap data */
static size_t mem_len;
static char *cow;		/* mapped by the root: every task writes its own data there */

static int node_hook(int i);

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_stat(pid_t pid, struct pstat *st)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d %d %d", &st->state, &st->ppid, &st->pgrp, &st->sid) != 4) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Wait until s reaches want; give up at the deadline or once any task failed. */
static int wait_for(struct zdtm_sync *s, uint32_t want, const char *what)
{
	struct timespec ts = { 0, 20 * 1000000 };
	uint32_t v;

	while ((v = __atomic_load_n(&s->value, __ATOMIC_SEQ_CST)) < want) {
		if (zdtm_failed())
			return -1;
		if (now_ms() > tree->deadline)
			return zdtm_fail("timed out waiting for %s (%u of %u)", what, v, want);
		syscall(SYS_futex, &s->value, FUTEX_WAIT, v, &ts, NULL, 0);
	}
	return 0;
}

/* Reap the child pid by the deadline. A child that stops or hangs is killed: a failure. */
static int reap(pid_t pid, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG | WUNTRACED);

		if (r == pid && WIFSTOPPED(*status)) {
			int sig = WSTOPSIG(*status);

			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return zdtm_fail("task %d stopped with signal %d", pid, sig);
		}
		if (r == pid)
			return 0;
		if (r < 0 && errno != EINTR)
			return zdtm_err("waitpid(%d) in task %d", pid, getpid());
		if (now_ms() > tree->deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return zdtm_fail("task %d did not finish in time: killed", pid);
		}
		usleep(1000);
	}
}

static bool is_live(int j)
{
	return !(nodes[j].flags & F_EXIT);
}

/* Node i takes its place: session, group, subreaper flag, its own data. */
static int become(int i)
{
	const struct node *n = &nodes[i];

	if ((n->flags & F_SETSID) && setsid() < 0)
		return zdtm_err("node %d: setsid", i);
	if ((n->flags & F_SETPGID) && setpgid(0, tree->pid[n->pg]))
		return zdtm_err("node %d: setpgid to the group %d of node %d", i, tree->pid[n->pg], n->pg);
	if ((n->flags & F_SUBREAPER) && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		return zdtm_err("node %d: PR_SET_CHILD_SUBREAPER", i);
	mem_len = 4096 * (1 + i % 3) + 40 * i;
	mem = malloc(mem_len);
	if (!mem)
		return zdtm_err("node %d: malloc(%zu)", i, mem_len);
	zdtm_fill(mem, mem_len, SEED + i, 0);
	zdtm_fill(cow, COW_LEN, SEED + i, 1 << 20);
	return 0;
}

static void node_main(int i);

static int spawn(int j)
{
	pid_t pid = fork();

	if (pid < 0)
		return zdtm_err("fork node %d", j);
	if (pid == 0)
		node_main(j);
	return 0;
}

/* Make node i's children in turn, then reap those that exit. */
static int build(int i)
{
	int j, status;

	for (j = 1; j < nr_nodes; j++) {
		if (nodes[j].creator != i)
			continue;
		if (wait_for(&tree->turn, j, "the tree to be made") || spawn(j))
			return -1;
	}
	if (wait_for(&tree->turn, nr_nodes, "the tree to be made"))
		return -1;
	for (j = 1; j < nr_nodes; j++) {
		if (nodes[j].creator != i || is_live(j))
			continue;
		if (reap(tree->pid[j], &status))
			return -1;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 100 + j)
			return zdtm_fail("node %d ended with status 0x%x, expected exit %d",
					 j, status, 100 + j);
	}
	return 0;
}

/* Node i checks itself from the inside. */
static int self_check(int i)
{
	const struct node *n = &nodes[i];
	int rc = 0, v = 0;
	ssize_t bad;

	if (getpid() != tree->pid[i])
		rc = zdtm_fail("node %d: pid %d, expected %d", i, getpid(), tree->pid[i]);
	if (i && getppid() != tree->pid[n->ppid])
		rc = zdtm_fail("node %d (pid %d): parent %d, expected node %d (pid %d)",
			       i, getpid(), getppid(), n->ppid, tree->pid[n->ppid]);
	if (getpgrp() != tree->pid[n->pgrp])
		rc = zdtm_fail("node %d (pid %d): process group %d, expected %d (node %d)",
			       i, getpid(), getpgrp(), tree->pid[n->pgrp], n->pgrp);
	if (getsid(0) != tree->pid[n->sid])
		rc = zdtm_fail("node %d (pid %d): session %d, expected %d (node %d)",
			       i, getpid(), getsid(0), tree->pid[n->sid], n->sid);
	if (prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0))
		rc = zdtm_err("node %d: PR_GET_CHILD_SUBREAPER", i);
	else if (v != !!(n->flags & F_SUBREAPER))
		rc = zdtm_fail("node %d (pid %d): child subreaper flag %d, expected %d",
			       i, getpid(), v, !!(n->flags & F_SUBREAPER));
	bad = zdtm_verify(mem, mem_len, SEED + i, 0);
	if (bad >= 0)
		rc = zdtm_fail("node %d (pid %d): heap byte %zd of %zu differs", i, getpid(), bad, mem_len);
	bad = zdtm_verify(cow, COW_LEN, SEED + i, 1 << 20);
	if (bad >= 0)
		rc = zdtm_fail("node %d (pid %d): byte %zd of the copy-on-write area %p differs",
			       i, getpid(), bad, cow);
	if (node_hook(i))
		rc = -1;
	return rc;
}

/* Node i asks its live children to check themselves and reaps them. */
static int teardown(int i)
{
	int j, status, rc = 0;
	pid_t pid;

	for (j = 1; j < nr_nodes; j++)
		if (is_live(j) && nodes[j].ppid == i && kill(tree->pid[j], SIGTERM))
			rc = zdtm_err("node %d: SIGTERM to node %d (pid %d)", i, j, tree->pid[j]);
	for (j = 1; j < nr_nodes; j++) {
		if (!is_live(j) || nodes[j].ppid != i)
			continue;
		if (reap(tree->pid[j], &status))
			rc = -1;
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			rc = zdtm_fail("node %d (pid %d) ended its check with status 0x%x",
				       j, tree->pid[j], status);
	}
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		zdtm_msg("node %d reaped a stray task %d (status 0x%x)", i, pid, status);
	return rc;
}

static void node_main(int i)
{
	int rc;

	tree->pid[i] = getpid();
	if (become(i))
		_exit(2);
	zdtm_sync_set(&tree->turn, i + 1);
	if (build(i))
		_exit(2);
	if (nodes[i].flags & F_EXIT)
		_exit(100 + i);
	zdtm_sync_add(&tree->settled, 1);
	zdtm_wait_stop();
	rc = self_check(i);
	rc |= teardown(i);
	_exit(rc ? 1 : 0);
}

/* Does a live node use node j's pid as its group (what = 0) or session (what = 1)? */
static bool used_as(int j, int what)
{
	for (int k = 0; k < nr_nodes; k++)
		if (is_live(k) && (what ? nodes[k].sid : nodes[k].pgrp) == j)
			return true;
	return false;
}

/* The root's outside view of every node, from /proc. */
static int proc_check(void)
{
	struct pstat st;
	int j, rc = 0;

	for (j = 1; j < nr_nodes; j++) {
		const struct node *n = &nodes[j];
		pid_t pid = tree->pid[j];

		if (!is_live(j)) {
			/* its pid stays allocated only while a group or session uses it */
			if (!used_as(j, 0) && !used_as(j, 1))
				continue;
			if (read_stat(pid, &st) == 0)
				rc = zdtm_fail("node %d (pid %d) exited, yet /proc shows it in state %c",
					       j, pid, st.state);
			if (used_as(j, 0) && kill(-pid, 0))
				rc = zdtm_err("the group %d of the dead node %d has no members", pid, j);
			continue;
		}
		if (read_stat(pid, &st)) {
			rc = zdtm_err("node %d (pid %d): /proc/%d/stat", j, pid, pid);
			continue;
		}
		if (st.state != 'S' && st.state != 'R')
			rc = zdtm_fail("node %d (pid %d) is in state %c, expected S", j, pid, st.state);
		if (st.ppid != tree->pid[n->ppid])
			rc = zdtm_fail("node %d (pid %d): /proc ppid %d, expected node %d (pid %d)",
				       j, pid, st.ppid, n->ppid, tree->pid[n->ppid]);
		if (st.pgrp != tree->pid[n->pgrp])
			rc = zdtm_fail("node %d (pid %d): /proc pgrp %d, expected node %d (pid %d)",
				       j, pid, st.pgrp, n->pgrp, tree->pid[n->pgrp]);
		if (st.sid != tree->pid[n->sid])
			rc = zdtm_fail("node %d (pid %d): /proc session %d, expected node %d (pid %d)",
				       j, pid, st.sid, n->sid, tree->pid[n->sid]);
	}
	return rc;
}

static int tree_setup(void)
{
	int j, live = 0;

	for (j = 1; j < nr_nodes; j++)
		live += is_live(j);
	tree = zdtm_shmem(sizeof(*tree));
	cow = mmap(NULL, COW_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!tree || cow == MAP_FAILED)
		return zdtm_err("mmap");
	tree->deadline = now_ms() + 5000;
	tree->pid[0] = getpid();
	if (become(0))
		return -1;
	zdtm_sync_set(&tree->turn, 1);
	if (build(0) || wait_for(&tree->settled, live, "the tree to settle")) {
		for (j = 1; j < nr_nodes; j++)
			if (is_live(j) && tree->pid[j] > 0)
				kill(tree->pid[j], SIGKILL);
		return -1;
	}
	zdtm_msg("tree of %d nodes (%d live) built", nr_nodes, live + 1);
	return 0;
}

/* After a failure: kill what is left of the tree (tasks still in one of its sessions). */
static void sweep(void)
{
	struct pstat st;
	int j, k, status;

	for (j = 1; j < nr_nodes; j++) {
		if (!is_live(j) || read_stat(tree->pid[j], &st))
			continue;
		for (k = 0; k < nr_nodes; k++)
			if (st.sid == tree->pid[nodes[k].sid]) {
				zdtm_msg("killing the leftover node %d (pid %d)", j, tree->pid[j]);
				kill(tree->pid[j], SIGKILL);
				break;
			}
	}
	usleep(100000);
	while (waitpid(-1, &status, WNOHANG) > 0)
		;
}

static int tree_check(void)
{
	int rc;

	if (!tree)
		return zdtm_fail("the tree was never built: no tasks to check");
	rc = proc_check();
	rc |= self_check(0);
	tree->deadline = now_ms() + 1500;
	rc |= teardown(0);
	if (rc)
		sweep();
	return rc;
}

/* --- this shape: nested subreapers ------------------------------------------------------ */

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
static const struct node shape[] = {
	[0] = { .creator = -1 },
	[1] = { .creator = 0, .flags = F_SUBREAPER, .ppid = 0 },
	[2] = { .creator = 1, .ppid = 1 },
	[3] = { .creator = 2, .flags = F_EXIT },
	[4] = { .creator = 3, .ppid = 1 },
	[5] = { .creator = 4, .ppid = 4 },
	[6] = { .creator = 2, .flags = F_SUBREAPER, .ppid = 2 },
	[7] = { .creator = 6, .ppid = 6 },
	[8] = { .creator = 7, .flags = F_EXIT },
	[9] = { .creator = 8, .ppid = 6 },
	[10] = { .creator = 8, .flags = F_SETSID, .ppid = 6, .pgrp = 10, .sid = 10 },
};

/* After C/R, node i makes a new orphan: its child forks a grandchild and exits. The
 * grandchild must go to the nearest subreaper above node i (node reaper): the restored
 * tasks must still carry the kernel's mark that a subreaper is above them. The orphan is
 * then killed and left a zombie for that subreaper to reap in its teardown. */
static int late_orphan(int i, int reaper)
{
	struct pstat st;
	int p[2], status, rc = 0;
	pid_t x, y = 0;
	int64_t end;

	if (pipe(p))
		return zdtm_err("node %d: pipe", i);
	x = fork();
	if (x < 0)
		return zdtm_err("node %d: fork", i);
	if (x == 0) {
		close(p[0]);
		y = fork();
		if (y == 0)
			for (;;)
				pause();
		_exit(write(p[1], &y, sizeof(y)) == sizeof(y) && y > 0 ? 0 : 1);
	}
	close(p[1]);
	if (zdtm_read_all(p[0], &y, sizeof(y)) != sizeof(y))
		y = 0;
	close(p[0]);
	if (reap(x, &status))
		return -1;
	if (y <= 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		return zdtm_fail("node %d: its child %d could not make an orphan (status 0x%x)",
				 i, x, status);
	if (read_stat(y, &st))
		rc = zdtm_err("node %d: the new orphan %d: /proc stat", i, y);
	else if (st.ppid != tree->pid[reaper])
		rc = zdtm_fail("node %d: its new orphan %d went to %d, expected the subreaper node %d (pid %d)",
			       i, y, st.ppid, reaper, tree->pid[reaper]);
	kill(y, SIGKILL);
	for (end = now_ms() + 500; now_ms() < end; usleep(1000))
		if (read_stat(y, &st) || st.state == 'Z' || st.state == 'X')
			break;
	return rc;
}

/* New orphans after C/R: from 2 and 5 they go to the outer subreaper, from 7 and 10 to
 * the inner one. */
static int node_hook(int i)
{
	switch (i) {
	case 2:
	case 5:
		return late_orphan(i, 1);
	case 7:
	case 10:
		return late_orphan(i, 6);
	}
	return 0;
}

static int setup(void)
{
	nr_nodes = sizeof(shape) / sizeof(shape[0]);
	memcpy(nodes, shape, sizeof(shape));
	return tree_setup();
}

static int check(void)
{
	return tree_check();
}

ZDTM_TEST(.setup = setup, .check = check);
