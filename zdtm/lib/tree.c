/* Process trees from a table: the engine of the tree_* shape tests (see tree.h). */
#include "zdtm.h"
#include "tree.h"

#include <linux/futex.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED 0x7ee0000
#define COW_LEN (4 * 4096)

struct tree {
	struct zdtm_sync turn;		/* node i gets made once turn reaches i */
	struct zdtm_sync settled;	/* live non-root nodes done building */
	int64_t deadline;		/* CLOCK_MONOTONIC ms: waits give up then */
	pid_t pid[TREE_MAXN];
};

struct pstat {
	char state;
	int ppid, pgrp, sid;
};

static struct tree_node nodes[TREE_MAXN];
static int nr_nodes;
static int (*node_hook)(int i);
static struct tree *tree;	/* NULL until setup built the tree */
static char *mem;		/* this task's heap data */
static size_t mem_len;
static char *cow;		/* mapped by the root: every task writes its own data there */

int64_t tree_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

pid_t tree_pid(int i)
{
	return tree && i >= 0 && i < nr_nodes ? tree->pid[i] : 0;
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
		if (tree_now_ms() > tree->deadline)
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
		if (tree_now_ms() > tree->deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return zdtm_fail("task %d did not finish in time: killed", pid);
		}
		usleep(1000);
	}
}

bool tree_live(int j)
{
	return !(nodes[j].flags & (TREE_EXIT | TREE_ZOMBIE));
}

static bool is_zombie(int j)
{
	return nodes[j].flags & TREE_ZOMBIE;
}

/* The wait status a dead node must give. */
static int end_status(int j)
{
	return nodes[j].sig ? nodes[j].sig : (100 + j) << 8;
}

/* Wait by the deadline until the child pid is a zombie, without reaping it. */
static int wait_zombie(pid_t pid, int *status)
{
	siginfo_t si;

	for (;;) {
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT))
			return zdtm_err("waitid(%d) in task %d", pid, getpid());
		if (si.si_pid == pid) {
			*status = si.si_code == CLD_EXITED ? si.si_status << 8 : si.si_status;
			return 0;
		}
		if (tree_now_ms() > tree->deadline)
			return zdtm_fail("task %d did not die in time", pid);
		usleep(1000);
	}
}

/* Node i takes its place: session, group, subreaper flag, its own data. */
static int become(int i)
{
	const struct tree_node *n = &nodes[i];

	if ((n->flags & TREE_SETSID) && setsid() < 0)
		return zdtm_err("node %d: setsid", i);
	if ((n->flags & TREE_SETPGID) && setpgid(0, tree->pid[n->pg]))
		return zdtm_err("node %d: setpgid to the group %d of node %d", i, tree->pid[n->pg], n->pg);
	if ((n->flags & TREE_SUBREAPER) && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
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

/* Like fork(): the child runs on a copy of the caller's stack. */
static int spawn(int j)
{
	struct clone_args ca = { .flags = CLONE_PARENT };	/* clone3 wants exit_signal 0 here */
	pid_t pid;

	if (nodes[j].flags & TREE_CLONE3)
		pid = syscall(__NR_clone3, &ca, sizeof(ca));
	else if (nodes[j].flags & TREE_CLONE_PARENT)
		pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
	else
		pid = fork();
	if (pid < 0)
		return zdtm_err("fork node %d", j);
	if (pid == 0)
		node_main(j);
	return 0;
}

/* Make node i's children in turn, then reap those that exit (zombies: wait, not reap). */
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
		if (nodes[j].creator != i || tree_live(j))
			continue;
		if (is_zombie(j) ? wait_zombie(tree->pid[j], &status) : reap(tree->pid[j], &status))
			return -1;
		if (status == end_status(j))
			continue;
		if (is_zombie(j))
			return zdtm_fail("node %d ended with status 0x%x, expected 0x%x",
					 j, status, end_status(j));
		return zdtm_fail("node %d ended with status 0x%x, expected exit %d", j, status, 100 + j);
	}
	return 0;
}

/* Node i checks itself from the inside. */
static int self_check(int i)
{
	const struct tree_node *n = &nodes[i];
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
	else if (v != !!(n->flags & TREE_SUBREAPER))
		rc = zdtm_fail("node %d (pid %d): child subreaper flag %d, expected %d",
			       i, getpid(), v, !!(n->flags & TREE_SUBREAPER));
	bad = zdtm_verify(mem, mem_len, SEED + i, 0);
	if (bad >= 0)
		rc = zdtm_fail("node %d (pid %d): heap byte %zd of %zu differs", i, getpid(), bad, mem_len);
	bad = zdtm_verify(cow, COW_LEN, SEED + i, 1 << 20);
	if (bad >= 0)
		rc = zdtm_fail("node %d (pid %d): byte %zd of the copy-on-write area %p differs",
			       i, getpid(), bad, cow);
	if (node_hook && node_hook(i))
		rc = -1;
	return rc;
}

/* Node i reaps its zombies, asks its live children to check themselves and reaps them. */
static int teardown(int i)
{
	int j, status, rc = 0;
	pid_t pid;

	/* zombies first: each must be reapable at once, with its exact status */
	for (j = 1; j < nr_nodes; j++) {
		if (!is_zombie(j) || nodes[j].ppid != i)
			continue;
		pid = waitpid(tree->pid[j], &status, WNOHANG);
		if (pid == 0) {
			rc = zdtm_fail("zombie node %d (pid %d) is alive: killed", j, tree->pid[j]);
			kill(tree->pid[j], SIGKILL);
			waitpid(tree->pid[j], &status, 0);
		} else if (pid < 0)
			rc = zdtm_err("node %d: waitpid for its zombie node %d (pid %d)", i, j, tree->pid[j]);
		else if (status != end_status(j))
			rc = zdtm_fail("zombie node %d (pid %d) gave wait status 0x%x, expected 0x%x",
				       j, tree->pid[j], status, end_status(j));
	}
	for (j = 1; j < nr_nodes; j++)
		if (tree_live(j) && nodes[j].ppid == i && kill(tree->pid[j], SIGTERM))
			rc = zdtm_err("node %d: SIGTERM to node %d (pid %d)", i, j, tree->pid[j]);
	for (j = 1; j < nr_nodes; j++) {
		if (!tree_live(j) || nodes[j].ppid != i)
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
	if ((nodes[i].flags & TREE_ZOMBIE) && nodes[i].sig) {
		sigset_t none;

		sigemptyset(&none);
		signal(nodes[i].sig, SIG_DFL);
		sigprocmask(SIG_SETMASK, &none, NULL);
		kill(getpid(), nodes[i].sig);
	}
	if (nodes[i].flags & (TREE_EXIT | TREE_ZOMBIE))
		_exit(100 + i);
	zdtm_sync_add(&tree->settled, 1);
	zdtm_wait_stop();
	rc = self_check(i);
	rc |= teardown(i);
	_exit(rc ? 1 : 0);
}

/* Does a node still in /proc (live or zombie) use node j's pid as its group (what = 0) or
 * session (what = 1)? */
static bool used_as(int j, int what)
{
	for (int k = 0; k < nr_nodes; k++)
		if (!(nodes[k].flags & TREE_EXIT) && (what ? nodes[k].sid : nodes[k].pgrp) == j)
			return true;
	return false;
}

/* The root's outside view of every node, from /proc. */
static int proc_check(void)
{
	struct pstat st;
	int j, rc = 0;

	for (j = 1; j < nr_nodes; j++) {
		const struct tree_node *n = &nodes[j];
		pid_t pid = tree->pid[j];

		if (n->flags & TREE_EXIT) {
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
		if (is_zombie(j) ? st.state != 'Z' : st.state != 'S' && st.state != 'R')
			rc = zdtm_fail("node %d (pid %d) is in state %c, expected %c",
				       j, pid, st.state, is_zombie(j) ? 'Z' : 'S');
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

int tree_setup(const struct tree_node *table, int nr, int (*hook)(int i))
{
	int j, live = 0;

	if (nr < 1 || nr > TREE_MAXN)
		return zdtm_fail("a tree of %d nodes: expected 1..%d", nr, TREE_MAXN);
	memcpy(nodes, table, nr * sizeof(*table));
	nr_nodes = nr;
	node_hook = hook;
	for (j = 1; j < nr_nodes; j++)
		live += tree_live(j);
	tree = zdtm_shmem(sizeof(*tree));
	cow = mmap(NULL, COW_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!tree || cow == MAP_FAILED)
		return zdtm_err("mmap");
	tree->deadline = tree_now_ms() + 5000;
	tree->pid[0] = getpid();
	if (become(0))
		return -1;
	zdtm_sync_set(&tree->turn, 1);
	if (build(0) || wait_for(&tree->settled, live, "the tree to settle")) {
		for (j = 1; j < nr_nodes; j++)
			if (tree_live(j) && tree->pid[j] > 0)
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
		if (!tree_live(j) || read_stat(tree->pid[j], &st))
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

int tree_check(void)
{
	int rc;

	if (!tree)
		return zdtm_fail("the tree was never built: no tasks to check");
	rc = proc_check();
	rc |= self_check(0);
	tree->deadline = tree_now_ms() + 1500;
	rc |= teardown(0);
	if (rc)
		sweep();
	return rc;
}

int tree_late_orphan(int i, int reaper)
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
	for (end = tree_now_ms() + 500; tree_now_ms() < end; usleep(1000))
		if (read_stat(y, &st) || st.state == 'Z' || st.state == 'X')
			break;
	return rc;
}
