/* zdtm-treebuild: the process-tree builder of the fuzzer.
 *
 * A script makes a tree, the check proves that a checkpoint/restore kept it. Started by the
 * zdtm protocol as `zdtm-treebuild --pidfile=P --outfile=O --script=FILE`.
 *
 * The script has one operation per line; blank lines and `#` comments are ignored. Tasks are
 * named by index: task 0 is the root (the library's setsid'ed child), and every fork or
 * clone_parent makes the next index. At most 64 tasks, 4 extra threads a task and 512
 * operations (blank and comment lines do not count).
 *
 *	fork A            A forks a child
 *	clone_parent A    A makes a child with clone(CLONE_PARENT): a sibling of A (not the root)
 *	thread A          A starts a thread that blocks every signal and parks
 *	setsid A          setsid() in A
 *	setpgid A B       setpgid(0, pid of B) in A; B may be dead, its pid is still known
 *	subreaper A 0|1   PR_SET_CHILD_SUBREAPER in A (the root is one and stays one)
 *	exit A CODE       A calls _exit(CODE) and stays a zombie (not the root)
 *	kill A SIG        A dies by SIG, one of 1 2 9 10 12 14 15 (not the root)
 *	reap A B          A reaps its dead child B, which must give the status it died with
 *	stop A            A gets SIGSTOP and takes no further operation (not the root)
 *
 * The root is the coordinator: it runs the lines in order, each finished before the next.
 * It does task 0's operations itself; every other task runs an agent loop on its mailbox
 * slot in memory shared by the whole tree: the coordinator posts an operation by bumping
 * the slot's seq, the agent does it, writes the results and sets done to seq (both futex
 * words). Once the script ran, the root prints the table of every task (`table task ...`
 * lines in the outfile) and says ready.
 *
 * The check compares /proc and what each live task says of itself with the table, makes
 * sure zombies can be reaped by their parents and that every subreaper still collects
 * orphans, then kills and reaps the whole tree.
 */
#include "zdtm.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TASKS	64
#define MAX_THREADS	4		/* extra threads in one task */
#define MAX_OPS		512		/* operations in a script */
#define MAX_SCRIPT	(1 << 20)	/* bytes of a script file */
#define OP_MS		5000		/* each operation, of the build or the check, gets this long */
#define ORPHAN_MS	2000		/* for a new orphan to reach its subreaper */
#define THREAD_STACK	(64 << 10)	/* a parked thread needs next to nothing */

enum op_kind {
	OP_FORK = 1,
	OP_CLONE_PARENT,
	OP_THREAD,
	OP_SETSID,
	OP_SETPGID,
	OP_SUBREAPER,
	OP_EXIT,
	OP_KILL,
	OP_REAP,
	OP_STOP,
	/* the coordinator's own requests, never in a script */
	OP_QUERY,
	OP_WAIT_NOHANG,
	OP_ORPHAN,
};

/* What OP_QUERY answers, in slot.val. */
enum { Q_PID, Q_PPID, Q_PGRP, Q_SID, Q_SUBREAPER, Q_USR1, Q_NR };

/* How OP_ORPHAN ended (slot.ret); details in slot.err and slot.val. */
enum {
	ORPHAN_OK,
	ORPHAN_CLONE,		/* the child could not be made: err */
	ORPHAN_NO_GRANDCHILD,	/* the child did not make the grandchild: val[0] its status */
	ORPHAN_WAIT_CHILD,	/* waitpid of the child: err */
	ORPHAN_STAT,		/* /proc/G/stat of the grandchild val[0]: err */
	ORPHAN_ELSEWHERE,	/* the grandchild val[0] went to val[1] */
	ORPHAN_REAP,		/* waitpid of the grandchild val[0] after SIGKILL: err */
};

/* One task's mailbox, in memory shared by the whole tree. */
struct slot {
	uint32_t seq;		/* futex: bumped by the coordinator to post op */
	uint32_t done;		/* futex: set to seq by the agent once op is done */
	uint32_t pid;		/* futex: the task writes its pid once its agent loop runs */
	uint32_t orphan;	/* OP_ORPHAN: the grandchild's pid, written by the child */
	int op, arg;
	long ret;		/* the call's result; < 0: it failed with err */
	int err;
	int status;		/* a wait status (OP_REAP, OP_WAIT_NOHANG) */
	int val[Q_NR];
};

/* One line of the script. */
struct op {
	int kind, task, arg;
	int lineno;
	char *text;		/* the line as written, trimmed */
};

/* The table: what the coordinator knows of each task. */
struct task {
	char state;		/* R alive, T stopped, Z zombie, X reaped; 0: not made yet */
	pid_t pid, ppid, pgid, sid;	/* from /proc once built; X: the last values seen */
	int threads;		/* all its threads, from /proc (X: 0) */
	int extra;		/* threads the script started in it */
	int subreaper;
	int status;		/* the wait status it died with (0 while alive) */
	int usr1;		/* its SIGUSR1 count once built */
};

struct pstat {
	char state;
	int ppid, pgrp, sid;
};

static const struct {
	const char *word;
	int kind;
	int nargs;		/* numbers after the task */
	const char *usage;	/* for error messages */
} words[] = {
	{ "fork", OP_FORK, 0, "fork A" },
	{ "clone_parent", OP_CLONE_PARENT, 0, "clone_parent A" },
	{ "thread", OP_THREAD, 0, "thread A" },
	{ "setsid", OP_SETSID, 0, "setsid A" },
	{ "setpgid", OP_SETPGID, 1, "setpgid A B" },
	{ "subreaper", OP_SUBREAPER, 1, "subreaper A 0|1" },
	{ "exit", OP_EXIT, 1, "exit A CODE" },
	{ "kill", OP_KILL, 1, "kill A SIG" },
	{ "reap", OP_REAP, 1, "reap A B" },
	{ "stop", OP_STOP, 0, "stop A" },
};

/* Deadly signals that do not dump core: a core file would be written in the test's cwd. */
static const int deadly[] = { SIGHUP, SIGINT, SIGKILL, SIGUSR1, SIGUSR2, SIGALRM, SIGTERM };

/* Shared by every task. */
static struct slot *board;
/* Private to each task. */
static volatile sig_atomic_t usr1_count;
static volatile sig_atomic_t hup_count;	/* the root's only: agents keep SIGHUP deadly */
static uint32_t threads_up;		/* futex: threads of this task that reached their park */
/* The coordinator's. */
static const char *script_path;
static struct op ops[MAX_OPS];
static int nr_ops;
static struct task tasks[MAX_TASKS];
static int nr_tasks;
static pid_t sessions[MAX_TASKS];	/* every session the tree made: teardown kills only there */
static int nr_sessions;
static bool built;

/* "script FILE line N (`text`): " for a failure of a script line, "" for the check's. */
static const char *where(const struct op *op)
{
	static char buf[512];

	if (!op)
		return "";
	snprintf(buf, sizeof(buf), "script %s line %d (`%.200s`): ", script_path, op->lineno, op->text);
	return buf;
}

/* zdtm_err with an errno that a task sent back (0: none) */
#define fail_errno(err, ...) zdtm_fail_at(__FILE__, __LINE__, err, __VA_ARGS__)
/* a failure of script line op (NULL: of the check) */
#define op_fail(op, err, fmt, ...) fail_errno(err, "%s" fmt, where(op), ##__VA_ARGS__)

/* --- what every task runs ---------------------------------------------------------------------
 * Agents may be raw clones of a multithreaded task: a lock of malloc or stdio that another
 * thread held at the clone stays held in the clone for good, so this part keeps off stdio
 * and malloc. fork() and pthread_create() are fine: the other threads are parked in pause()
 * and hold no lock. */

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, word, op, val, ts, NULL, 0);
}

static void wake(uint32_t *word, uint32_t val)
{
	__atomic_store_n(word, val, __ATOMIC_SEQ_CST);
	futex(word, FUTEX_WAKE, INT_MAX, NULL);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

/* "/proc/PID/LEAF" without snprintf. */
static void proc_path(char *buf, pid_t pid, const char *leaf)
{
	char digits[12];
	int n = 0;

	do
		digits[n++] = '0' + pid % 10;
	while ((pid /= 10) > 0);
	strcpy(buf, "/proc/");
	buf += strlen(buf);
	while (n)
		*buf++ = digits[--n];
	*buf++ = '/';
	strcpy(buf, leaf);
}

/* State, ppid, pgrp and session of pid from /proc/PID/stat; -1 with errno if gone. */
static int read_stat(pid_t pid, struct pstat *st)
{
	char path[48], buf[512], *p, *end;
	long v[3];
	int k;

	proc_path(path, pid, "stat");
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	/* the command name may hold anything, ')' and spaces too: fields follow its last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		goto bad;
	st->state = p[2];
	p += 3;
	for (k = 0; k < 3; k++) {
		v[k] = strtol(p, &end, 10);
		if (end == p)
			goto bad;
		p = end;
	}
	st->ppid = v[0];
	st->pgrp = v[1];
	st->sid = v[2];
	return 0;
bad:
	errno = EINVAL;
	return -1;
}

static void on_usr1(int sig)
{
	(void)sig;
	usr1_count++;
}

static void on_hup(int sig)
{
	(void)sig;
	hup_count++;
}

static void *parked(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&threads_up, 1, __ATOMIC_SEQ_CST);
	futex(&threads_up, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	for (;;)
		pause();
	return NULL;
}

/* A thread that blocks every signal (so they all go to the agent) and parks; 0 once it runs. */
static long add_thread(void)
{
	uint32_t want = __atomic_load_n(&threads_up, __ATOMIC_SEQ_CST) + 1, v;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int err;

	/* a new thread starts with its creator's mask: blocked from its first instruction */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK);
	err = pthread_create(&t, &attr, parked, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		errno = err;
		return -1;
	}
	while ((v = __atomic_load_n(&threads_up, __ATOMIC_SEQ_CST)) < want)
		futex(&threads_up, FUTEX_WAIT_PRIVATE, v, NULL);
	return 0;
}

/* Die by sig, so that the wait status is exactly sig. */
static __attribute__((noreturn)) void die(int sig)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	sigset_t set;

	sigemptyset(&sa.sa_mask);
	if (sig != SIGKILL)
		sigaction(sig, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	/* raise() by hand: glibc's idea of our thread id is stale after a raw clone */
	syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
	/* the signal is fatal; should it not be, the coordinator times out waiting for 'Z' */
	for (;;)
		pause();
}

static pid_t raw_fork(unsigned long flags)
{
	return syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
}

/* In a subreaper: make a child that forks a grandchild and exits, see the grandchild come
 * to us, kill and reap it. The child and the grandchild are raw clones and make only system
 * calls: we may be multithreaded. */
static long orphan(struct slot *s)
{
	long rc = ORPHAN_OK;
	struct pstat st;
	int status = 0;
	int64_t end;
	pid_t c, g;

	__atomic_store_n(&s->orphan, 0, __ATOMIC_SEQ_CST);
	c = raw_fork(0);
	if (c < 0) {
		s->err = errno;
		return ORPHAN_CLONE;
	}
	if (c == 0) {
		g = raw_fork(0);
		if (g == 0)
			for (;;)
				pause();
		if (g < 0)
			_exit(1);
		__atomic_store_n(&s->orphan, g, __ATOMIC_SEQ_CST);
		_exit(0);
	}
	while (waitpid(c, &status, 0) < 0) {
		if (errno != EINTR) {
			s->err = errno;
			return ORPHAN_WAIT_CHILD;
		}
	}
	g = __atomic_load_n(&s->orphan, __ATOMIC_SEQ_CST);
	if (status || g <= 0) {
		s->val[0] = status;
		return ORPHAN_NO_GRANDCHILD;
	}
	s->val[0] = g;
	for (end = now_ms() + ORPHAN_MS;; sleep_ms(1)) {
		if (read_stat(g, &st)) {
			s->err = errno;
			rc = ORPHAN_STAT;
			break;
		}
		if (st.ppid == getpid())
			break;
		if (now_ms() > end) {
			s->val[1] = st.ppid;
			rc = ORPHAN_ELSEWHERE;
			break;
		}
	}
	kill(g, SIGKILL);
	/* not ours to reap when it went elsewhere: its reaper (or the teardown) does */
	if (rc == ORPHAN_OK) {
		while (waitpid(g, &status, 0) < 0) {
			if (errno != EINTR) {
				s->err = errno;
				return ORPHAN_REAP;
			}
		}
	}
	return rc;
}

static void agent(int self) __attribute__((noreturn));

/* fork A / clone_parent A: the child becomes task j. */
static long spawn(int kind, int j)
{
	pid_t pid;

	/* glibc's clone() wants a stack and a function: the raw call returns twice, like fork */
	pid = kind == OP_FORK ? fork() : raw_fork(CLONE_PARENT);
	if (pid == 0)
		agent(j);
	return pid;
}

static long wait_child(pid_t pid, int *status, int flags)
{
	long r;

	while ((r = waitpid(pid, status, flags)) < 0 && errno == EINTR)
		;
	return r;
}

/* Do the operation posted in s (in an agent, or in the root for task 0). */
static void do_op(struct slot *s)
{
	int v = -1;

	errno = 0;
	switch (s->op) {
	case OP_FORK:
	case OP_CLONE_PARENT:
		s->ret = spawn(s->op, s->arg);
		break;
	case OP_THREAD:
		s->ret = add_thread();
		break;
	case OP_SETSID:
		s->ret = setsid();
		break;
	case OP_SETPGID:
		s->ret = setpgid(0, s->arg);
		break;
	case OP_SUBREAPER:
		s->ret = prctl(PR_SET_CHILD_SUBREAPER, s->arg, 0, 0, 0);
		break;
	case OP_EXIT:
		_exit(s->arg);
	case OP_KILL:
		die(s->arg);
	case OP_REAP:
		s->ret = wait_child(s->arg, &s->status, 0);
		break;
	case OP_WAIT_NOHANG:
		s->ret = wait_child(s->arg, &s->status, WNOHANG);
		break;
	case OP_QUERY:
		s->val[Q_PID] = getpid();
		s->val[Q_PPID] = getppid();
		s->val[Q_PGRP] = getpgrp();
		s->val[Q_SID] = getsid(0);
		s->ret = prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0);
		s->val[Q_SUBREAPER] = v;
		s->val[Q_USR1] = usr1_count;
		break;
	case OP_ORPHAN:
		s->ret = orphan(s);
		return;
	default:
		s->ret = -1;
		errno = EINVAL;
		break;
	}
	s->err = s->ret < 0 ? errno : 0;
}

/* Task self waits for operations and does them, until it exits or dies by one. */
static void agent(int self)
{
	struct slot *s = &board[self];
	uint32_t seen = 0, seq;

	/* fds of the creator, among them the library's ready pipe to the starter: only the
	 * root may answer the starter (like zdtm_child), and the tree is about tasks, not fds */
	syscall(SYS_close_range, 3, ~0U, 0);
	/* counters of this task, not copies of the creator's */
	usr1_count = 0;
	threads_up = 0;
	/* only the root survives SIGHUP (see setup) */
	signal(SIGHUP, SIG_DFL);
	wake(&s->pid, getpid());
	for (;;) {
		seq = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST);
		if (seq == seen) {
			/* EINTR (a SIGUSR1 ran its handler) and EAGAIN just look again */
			futex(&s->seq, FUTEX_WAIT, seq, NULL);
			continue;
		}
		seen = seq;
		do_op(s);
		wake(&s->done, seq);
	}
}

/* --- the coordinator (the root) ----------------------------------------------------------- */

static bool state_is(char model, char seen)
{
	switch (model) {
	case 'R':
		return seen == 'R' || seen == 'S' || seen == 'D';
	case 'T':
		return seen == 'T' || seen == 't';
	default:
		return seen == model;
	}
}

static int read_threads(pid_t pid, int *n)
{
	char buf[32];

	if (zdtm_proc_status(pid, "Threads", buf, sizeof(buf)))
		return -1;
	*n = atoi(buf);
	return 0;
}

/* Wait until *word == want; -1 with errno ETIMEDOUT at the deadline, or ESRCH once the task
 * watch is gone or dead (it will never answer). */
static int wait_word(uint32_t *word, uint32_t want, pid_t watch, int64_t deadline)
{
	struct timespec ts = { 0, 20 * 1000000 };
	struct pstat st;
	uint32_t v;

	while ((v = __atomic_load_n(word, __ATOMIC_SEQ_CST)) != want) {
		if (read_stat(watch, &st) || st.state == 'Z' || st.state == 'X') {
			errno = ESRCH;
			return -1;
		}
		if (now_ms() > deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		futex(word, FUTEX_WAIT, v, &ts);
	}
	return 0;
}

/* Every thread of pid is in the state class want: a group stop reaches them one by one. */
static bool threads_in(pid_t pid, char want)
{
	char path[48];
	struct dirent *e;
	struct pstat st;
	bool all = true;
	DIR *d;

	proc_path(path, pid, "task");
	d = opendir(path);
	if (!d)
		return false;
	while (all && (e = readdir(d)))
		if (e->d_name[0] != '.')
			all = !read_stat(atoi(e->d_name), &st) && state_is(want, st.state);
	closedir(d);
	return all;
}

/* Wait until /proc shows pid in the state class want: for T all its threads, for Z its
 * threads all gone (so that its parent can reap it at once). -1 at the deadline, *seen the
 * last state of pid. */
static int wait_state(pid_t pid, char want, int64_t deadline, char *seen)
{
	struct pstat st;
	int n;

	for (;; sleep_ms(1)) {
		*seen = read_stat(pid, &st) ? '?' : st.state;
		if (state_is(want, *seen) &&
		    (want != 'Z' || (read_threads(pid, &n) == 0 && n == 1)) &&
		    (want != 'T' || threads_in(pid, 'T')))
			return 0;
		if (now_ms() > deadline)
			return -1;
	}
}

static struct slot *fill(int i, int kind, int arg)
{
	struct slot *s = &board[i];

	s->op = kind;
	s->arg = arg;
	s->ret = 0;
	s->err = 0;
	s->status = 0;
	memset(s->val, 0, sizeof(s->val));
	return s;
}

static void post(int i, int kind, int arg)
{
	struct slot *s = fill(i, kind, arg);

	__atomic_add_fetch(&s->seq, 1, __ATOMIC_SEQ_CST);
	futex(&s->seq, FUTEX_WAKE, INT_MAX, NULL);
}

/* Have task i do an operation and wait for it (task 0: do it here). The slot with the
 * results, or NULL (the failure is recorded, naming op, or nothing for the check's). */
static struct slot *call(const struct op *op, int i, int kind, int arg)
{
	struct slot *s = &board[i];

	if (i == 0) {
		do_op(fill(0, kind, arg));
		return s;
	}
	post(i, kind, arg);
	if (!wait_word(&s->done, s->seq, tasks[i].pid, now_ms() + OP_MS))
		return s;
	if (errno == ESRCH)
		op_fail(op, 0, "task %d (pid %d) died before it answered", i, tasks[i].pid);
	else
		op_fail(op, 0, "task %d (pid %d) did not answer in %d s", i, tasks[i].pid, OP_MS / 1000);
	return NULL;
}

static int index_of(pid_t pid)
{
	for (int i = 0; i < nr_tasks; i++)
		if (tasks[i].pid == pid)
			return i;
	return -1;
}

static void add_session(pid_t sid)
{
	for (int k = 0; k < nr_sessions; k++)
		if (sessions[k] == sid)
			return;
	if (nr_sessions < MAX_TASKS)
		sessions[nr_sessions++] = sid;
}

/* fork A / clone_parent A: task nr_tasks is born and runs its agent loop. */
static int make_task(const struct op *op)
{
	int j = nr_tasks, a = op->task;
	struct slot *s;
	pid_t pid;

	if (j == MAX_TASKS)
		return op_fail(op, 0, "it would make task %d: at most %d tasks", j, MAX_TASKS);
	/* before the child exists: it starts reading its slot at once */
	memset(&board[j], 0, sizeof(board[j]));
	s = call(op, a, op->kind, j);
	if (!s)
		return -1;
	if (s->ret < 0)
		return op_fail(op, s->err, "%s in task %d (pid %d)",
			       op->kind == OP_FORK ? "fork" : "clone(CLONE_PARENT)", a, tasks[a].pid);
	pid = s->ret;
	/* counted at once, so that a failure from here on kills it too */
	tasks[j] = (struct task){ .state = 'R', .pid = pid };
	nr_tasks++;
	if (wait_word(&board[j].pid, pid, pid, now_ms() + OP_MS))
		return op_fail(op, 0, "the new task %d (pid %d) %s", j, pid,
			       errno == ESRCH ? "died before it ran its agent loop"
					      : "did not start its agent loop in time");
	return 0;
}

/* After an exit: no other task may have changed state on its own. The kernel sends SIGHUP
 * and SIGCONT to a process group that an exit orphans while a member is stopped
 * (kernel/exit.c, kill_orphaned_pgrp): the SIGCONT has woken such a member by the time the
 * exiting task shows as a zombie, so this is seen at once. */
static int after_exit(const struct op *op)
{
	struct pstat st;

	if (hup_count)
		return op_fail(op, 0, "the root got SIGHUP: the exit orphaned its process group "
			       "while a member was stopped");
	for (int k = 1; k < nr_tasks; k++) {
		char seen;

		if (tasks[k].state != 'R' && tasks[k].state != 'T')
			continue;
		seen = read_stat(tasks[k].pid, &st) ? '?' : st.state;
		if (!state_is(tasks[k].state, seen))
			return op_fail(op, 0, "task %d (pid %d) went from state %c to %c: an exit that "
				       "orphans a process group with a stopped member sends the group "
				       "SIGHUP and SIGCONT", k, tasks[k].pid, tasks[k].state, seen);
	}
	return 0;
}

/* exit A CODE / kill A SIG: A dies; it is a zombie once this returns. */
static int end_task(const struct op *op)
{
	struct task *t = &tasks[op->task];
	char seen;

	post(op->task, op->kind, op->arg);
	if (wait_state(t->pid, 'Z', now_ms() + OP_MS, &seen))
		return op_fail(op, 0, "task %d (pid %d) did not become a zombie in %d s (state %c)",
			       op->task, t->pid, OP_MS / 1000, seen);
	t->state = 'Z';
	t->status = op->kind == OP_EXIT ? op->arg << 8 : op->arg;
	return after_exit(op);
}

/* reap A B: B must be a dead child of A, and give the status it died with. */
static int reap_task(const struct op *op)
{
	struct task *t = &tasks[op->task], *b;
	struct pstat st;
	struct slot *s;

	if (op->arg >= nr_tasks)
		return op_fail(op, 0, "no task %d yet (tasks 0..%d)", op->arg, nr_tasks - 1);
	b = &tasks[op->arg];
	if (b->state == 'X')
		return op_fail(op, 0, "task %d (pid %d) was reaped already", op->arg, b->pid);
	if (b->state != 'Z')
		return op_fail(op, 0, "task %d (pid %d) is not dead", op->arg, b->pid);
	if (read_stat(b->pid, &st))
		return op_fail(op, errno, "the zombie task %d (pid %d): /proc/%d/stat",
			       op->arg, b->pid, b->pid);
	if (st.ppid != t->pid)
		return op_fail(op, 0, "task %d (pid %d) is not a child of task %d (pid %d): "
			       "its parent is pid %d", op->arg, b->pid, op->task, t->pid, st.ppid);
	s = call(op, op->task, OP_REAP, b->pid);
	if (!s)
		return -1;
	if (s->ret < 0)
		return op_fail(op, s->err, "waitpid(%d) in task %d (pid %d)", b->pid, op->task, t->pid);
	if (s->ret != b->pid || s->status != b->status)
		return op_fail(op, 0, "waitpid(%d) in task %d (pid %d) gave pid %ld status 0x%x, "
			       "expected 0x%x", b->pid, op->task, t->pid, s->ret, s->status, b->status);
	/* gone: the last values seen stand for it in the table */
	b->state = 'X';
	b->ppid = st.ppid;
	b->pgid = st.pgrp;
	b->sid = st.sid;
	b->threads = 0;
	return 0;
}

/* Have task i do a plain operation that says 0 / -1 with errno. */
static int simple(const struct op *op, int kind, int arg, const char *what)
{
	struct slot *s = call(op, op->task, kind, arg);

	if (!s)
		return -1;
	if (s->ret < 0)
		return op_fail(op, s->err, "%s in task %d (pid %d)", what, op->task, tasks[op->task].pid);
	return 0;
}

static int run_line(const struct op *op)
{
	struct task *t;
	char seen;

	if (op->task >= nr_tasks)
		return op_fail(op, 0, "no task %d yet (tasks 0..%d)", op->task, nr_tasks - 1);
	t = &tasks[op->task];
	if (t->state == 'Z' || t->state == 'X')
		return op_fail(op, 0, "task %d (pid %d) is dead", op->task, t->pid);
	if (t->state == 'T')
		return op_fail(op, 0, "task %d (pid %d) is stopped: it takes no further operation",
			       op->task, t->pid);
	if (op->task == 0) {
		if (op->kind == OP_CLONE_PARENT)
			return op_fail(op, 0, "a sibling of the root would be outside the test's tree");
		if (op->kind == OP_EXIT || op->kind == OP_KILL)
			return op_fail(op, 0, "the root cannot die: it runs the script and the check");
		if (op->kind == OP_STOP)
			return op_fail(op, 0, "the root cannot be stopped: it runs the script");
		if (op->kind == OP_SUBREAPER && !op->arg)
			return op_fail(op, 0, "the root must stay a subreaper, so that orphans stay "
				       "in the test's tree");
	}
	switch (op->kind) {
	case OP_FORK:
	case OP_CLONE_PARENT:
		return make_task(op);
	case OP_THREAD:
		if (t->extra == MAX_THREADS)
			return op_fail(op, 0, "task %d has %d threads of the script already: at most %d",
				       op->task, t->extra, MAX_THREADS);
		if (simple(op, OP_THREAD, 0, "pthread_create"))
			return -1;
		t->extra++;
		return 0;
	case OP_SETSID:
		if (simple(op, OP_SETSID, 0, "setsid"))
			return -1;
		add_session(t->pid);
		return 0;
	case OP_SETPGID:
		if (op->arg >= nr_tasks)
			return op_fail(op, 0, "no task %d yet (tasks 0..%d)", op->arg, nr_tasks - 1);
		return simple(op, OP_SETPGID, tasks[op->arg].pid, "setpgid");
	case OP_SUBREAPER:
		if (simple(op, OP_SUBREAPER, op->arg, "PR_SET_CHILD_SUBREAPER"))
			return -1;
		t->subreaper = op->arg;
		return 0;
	case OP_EXIT:
	case OP_KILL:
		return end_task(op);
	case OP_REAP:
		return reap_task(op);
	case OP_STOP:
		if (kill(t->pid, SIGSTOP))
			return op_fail(op, errno, "SIGSTOP to task %d (pid %d)", op->task, t->pid);
		if (wait_state(t->pid, 'T', now_ms() + OP_MS, &seen))
			return op_fail(op, 0, "task %d (pid %d) did not stop in %d s (state %c)",
				       op->task, t->pid, OP_MS / 1000, seen);
		t->state = 'T';
		return 0;
	}
	return op_fail(op, 0, "operation %d unknown", op->kind);
}

/* --- the script file ------------------------------------------------------------------------ */

/* A whole decimal number in 0..max (no sign, no spaces); -1 if it is not. */
static long number(const char *s, long max)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	return v;
}

static int parse_line(struct op *op, char *line)
{
	const char *seps = " \t\r\v\f";
	char *save, *w[4] = { NULL };
	unsigned int k;
	int n = 0, nargs, sig;
	long v;

	for (char *tok = strtok_r(line, seps, &save); tok; tok = strtok_r(NULL, seps, &save))
		if (n++ < 4)
			w[n - 1] = tok;
	for (k = 0; k < sizeof(words) / sizeof(words[0]); k++)
		if (!strcmp(w[0], words[k].word))
			break;
	if (k == sizeof(words) / sizeof(words[0]))
		return op_fail(op, 0, "unknown operation '%s' (fork, clone_parent, thread, setsid, "
			       "setpgid, subreaper, exit, kill, reap, stop)", w[0]);
	op->kind = words[k].kind;
	nargs = words[k].nargs;
	if (n != 2 + nargs)
		return op_fail(op, 0, "expected `%s`", words[k].usage);
	op->task = number(w[1], MAX_TASKS - 1);
	if (op->task < 0)
		return op_fail(op, 0, "task '%s': expected an index 0..%d", w[1], MAX_TASKS - 1);
	if (!nargs)
		return 0;
	switch (op->kind) {
	case OP_SETPGID:
	case OP_REAP:
		v = number(w[2], MAX_TASKS - 1);
		if (v < 0)
			return op_fail(op, 0, "task '%s': expected an index 0..%d", w[2], MAX_TASKS - 1);
		break;
	case OP_SUBREAPER:
		v = number(w[2], 1);
		if (v < 0)
			return op_fail(op, 0, "'%s': expected 0 or 1", w[2]);
		break;
	case OP_EXIT:
		v = number(w[2], 255);
		if (v < 0)
			return op_fail(op, 0, "exit code '%s': expected 0..255", w[2]);
		break;
	default:
		v = number(w[2], 64);
		for (k = 0, sig = 0; k < sizeof(deadly) / sizeof(deadly[0]); k++)
			if (deadly[k] == v)
				sig = v;
		if (!sig)
			return op_fail(op, 0, "signal '%s': expected one of 1 2 9 10 12 14 15", w[2]);
		break;
	}
	op->arg = v;
	return 0;
}

/* Read and check the whole script before anything is built: a bad line builds nothing. */
static int parse(const char *path)
{
	char *buf, *text, *line, *next;
	int fd, lineno = 0;
	struct stat sb;
	ssize_t n;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb)) {
		zdtm_err("script %s", path);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size > MAX_SCRIPT) {
		close(fd);
		return zdtm_fail("script %s: expected a regular file of at most %d bytes", path, MAX_SCRIPT);
	}
	/* two copies: tokens are cut out of one, error messages quote the other */
	buf = malloc(2 * (sb.st_size + 1));
	if (!buf) {
		close(fd);
		return zdtm_err("script %s: malloc", path);
	}
	n = zdtm_read_all(fd, buf, sb.st_size);
	if (n < 0) {
		zdtm_err("script %s: read", path);
		close(fd);
		return -1;
	}
	close(fd);
	buf[n] = '\0';
	text = buf + sb.st_size + 1;
	memcpy(text, buf, n + 1);
	for (line = buf; line; line = next) {
		struct op one = { 0 }, *op = &one;	/* into ops[] once it is an operation */
		char *hash, *end;

		next = strchr(line, '\n');
		if (next) {
			*next++ = '\0';
			text[next - buf - 1] = '\0';
		}
		lineno++;
		op->lineno = lineno;
		op->text = text + (line - buf);
		op->text += strspn(op->text, " \t\r\v\f");
		for (end = op->text + strlen(op->text); end > op->text && strchr(" \t\r\v\f", end[-1]); end--)
			end[-1] = '\0';
		hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		if (!line[strspn(line, " \t\r\v\f")])
			continue;
		if (nr_ops == MAX_OPS)
			return op_fail(op, 0, "more than %d operations", MAX_OPS);
		if (parse_line(op, line))
			return -1;
		ops[nr_ops++] = one;
	}
	return 0;
}

/* --- the table, teardown, setup and check ---------------------------------------------------- */

/* SIGKILL pid if it still is one of the tree's: a stranger that took a freed pid is not in
 * any session the tree made. */
static void kill_ours(pid_t pid)
{
	struct pstat st;

	if (pid <= 0 || pid == getpid() || read_stat(pid, &st))
		return;
	for (int k = 0; k < nr_sessions; k++)
		if (st.sid == sessions[k]) {
			kill(pid, SIGKILL);
			return;
		}
}

/* Children of the root the table may not know of (made by an operation that timed out),
 * reparented here as their parents die. */
static void kill_children(void)
{
	char path[64], buf[4096], *p, *end;

	snprintf(path, sizeof(path), "/proc/self/task/%d/children", getpid());
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return;
	for (p = buf;; p = end) {
		long pid = strtol(p, &end, 10);

		if (end == p)
			break;
		kill_ours(pid);
	}
}

/* Kill every task of the tree but the root, and reap them: they all end up the root's
 * children, since it is a subreaper. Stopped tasks go first: a SIGKILL stops them counting
 * as stopped at once (complete_signal sets SIGNAL_GROUP_EXIT), so no exit that follows
 * orphans a group with a stopped member, which would SIGHUP the group (the root's too). */
static void teardown(void)
{
	int64_t end = now_ms() + OP_MS;
	int status;
	pid_t r;

	for (int i = 1; i < nr_tasks; i++)
		if (tasks[i].state == 'T')
			kill_ours(tasks[i].pid);
	for (int i = 1; i < nr_tasks; i++)
		if (tasks[i].state == 'R' || tasks[i].state == 'Z')
			kill_ours(tasks[i].pid);
	for (;;) {
		r = waitpid(-1, &status, WNOHANG);
		if (r > 0 || (r < 0 && errno == EINTR))
			continue;
		if (r < 0)
			break;
		if (now_ms() > end) {
			zdtm_msg("teardown: the root still has children after %d s", OP_MS / 1000);
			break;
		}
		kill_children();
		sleep_ms(2);
	}
}

/* Fill the table from /proc and from the tasks themselves, and print it. */
static int make_table(void)
{
	struct pstat st;
	struct slot *s;
	int i;

	for (i = 0; i < nr_tasks; i++) {
		struct task *t = &tasks[i];

		if (t->state == 'X')
			continue;
		if (read_stat(t->pid, &st))
			return zdtm_err("after the script: task %d (pid %d): /proc/%d/stat",
					i, t->pid, t->pid);
		if (!state_is(t->state, st.state))
			return zdtm_fail("after the script: task %d (pid %d) is in state %c, expected %c",
					 i, t->pid, st.state, t->state);
		t->ppid = st.ppid;
		t->pgid = st.pgrp;
		t->sid = st.sid;
		add_session(st.sid);
		if (read_threads(t->pid, &t->threads))
			return zdtm_err("after the script: task %d (pid %d): /proc/%d/status",
					i, t->pid, t->pid);
		if (t->state != 'R')
			continue;
		s = call(NULL, i, OP_QUERY, 0);
		if (!s)
			return -1;
		if (s->ret < 0)
			return fail_errno(s->err, "PR_GET_CHILD_SUBREAPER in task %d (pid %d)", i, t->pid);
		t->subreaper = s->val[Q_SUBREAPER];
		t->usr1 = s->val[Q_USR1];
	}
	for (i = 0; i < nr_tasks; i++) {
		struct task *t = &tasks[i];

		zdtm_msg("table task %d pid %d ppid %d pgid %d sid %d state %c threads %d "
			 "subreaper %d status %d", i, t->pid, t->ppid, t->pgid, t->sid, t->state,
			 t->threads, t->subreaper, t->status);
	}
	return 0;
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };	/* no SA_RESTART: a futex wait says EINTR */
	struct sigaction hup = { .sa_handler = on_hup };
	int i;

	script_path = zdtm_opt("script", NULL);
	if (!script_path)
		return zdtm_fail("no --script=FILE: nothing to build");
	if (parse(script_path))
		return -1;
	board = zdtm_shmem(MAX_TASKS * sizeof(*board));
	if (!board)
		return zdtm_err("mmap of the mailboxes");
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction(SIGUSR1)");
	/* The kernel SIGHUPs a process group that an exit orphans while a member is stopped,
	 * and the root's group may be one: the root must live to say so and to clean up. */
	sigemptyset(&hup.sa_mask);
	if (sigaction(SIGHUP, &hup, NULL))
		return zdtm_err("sigaction(SIGHUP)");
	/* orphans of the tree come to the root rather than leave the test */
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		return zdtm_err("PR_SET_CHILD_SUBREAPER in the root");
	tasks[0] = (struct task){ .state = 'R', .pid = getpid(), .subreaper = 1 };
	board[0].pid = getpid();
	nr_tasks = 1;
	add_session(getsid(0));
	for (i = 0; i < nr_ops; i++)
		if (run_line(&ops[i]))
			break;
	if (i < nr_ops || make_table()) {
		teardown();
		return -1;
	}
	built = true;
	return 0;
}

/* The check's view of a task from /proc must be the table's. */
static int check_proc(int i)
{
	const struct task *t = &tasks[i];
	struct pstat st;
	int rc = 0, n;

	if (read_stat(t->pid, &st))
		return zdtm_err("task %d (pid %d): /proc/%d/stat", i, t->pid, t->pid);
	if (!state_is(t->state, st.state))
		rc = zdtm_fail("task %d (pid %d): state %c, expected %c", i, t->pid, st.state, t->state);
	if (i && st.ppid != t->ppid)
		rc = zdtm_fail("task %d (pid %d): ppid %d, expected %d", i, t->pid, st.ppid, t->ppid);
	if (st.pgrp != t->pgid)
		rc = zdtm_fail("task %d (pid %d): pgid %d, expected %d", i, t->pid, st.pgrp, t->pgid);
	if (st.sid != t->sid)
		rc = zdtm_fail("task %d (pid %d): sid %d, expected %d", i, t->pid, st.sid, t->sid);
	if (t->state == 'Z')
		return rc;
	if (read_threads(t->pid, &n))
		rc = zdtm_err("task %d (pid %d): /proc/%d/status", i, t->pid, t->pid);
	else if (n != t->threads)
		rc = zdtm_fail("task %d (pid %d): threads %d, expected %d", i, t->pid, n, t->threads);
	return rc;
}

/* A live task's view of itself must be the table's, and its SIGUSR1 handler must run. */
static int check_inside(int i)
{
	const struct task *t = &tasks[i];
	struct slot *s;
	int rc = 0;

	/* the signal is pending before the query is posted, so the agent's futex wait ends
	 * with the handler run before it reads the query */
	if (kill(t->pid, SIGUSR1))
		return zdtm_err("task %d (pid %d): SIGUSR1", i, t->pid);
	s = call(NULL, i, OP_QUERY, 0);
	if (!s)
		return -1;
	if (s->val[Q_PID] != t->pid)
		rc = zdtm_fail("task %d (pid %d): getpid %d, expected %d", i, t->pid, s->val[Q_PID], t->pid);
	if (i && s->val[Q_PPID] != t->ppid)
		rc = zdtm_fail("task %d (pid %d): getppid %d, expected %d",
			       i, t->pid, s->val[Q_PPID], t->ppid);
	if (s->val[Q_PGRP] != t->pgid)
		rc = zdtm_fail("task %d (pid %d): getpgrp %d, expected %d",
			       i, t->pid, s->val[Q_PGRP], t->pgid);
	if (s->val[Q_SID] != t->sid)
		rc = zdtm_fail("task %d (pid %d): getsid %d, expected %d", i, t->pid, s->val[Q_SID], t->sid);
	if (s->ret < 0)
		rc = fail_errno(s->err, "task %d (pid %d): PR_GET_CHILD_SUBREAPER", i, t->pid);
	else if (s->val[Q_SUBREAPER] != t->subreaper)
		rc = zdtm_fail("task %d (pid %d): child subreaper %d, expected %d",
			       i, t->pid, s->val[Q_SUBREAPER], t->subreaper);
	if (s->val[Q_USR1] <= t->usr1)
		rc = zdtm_fail("task %d (pid %d): SIGUSR1 count %d, expected more than %d: "
			       "its handler did not run", i, t->pid, s->val[Q_USR1], t->usr1);
	return rc;
}

/* Zombie task i must be reapable by its parent, with the status it died with. */
static int check_zombie(int i)
{
	struct task *t = &tasks[i];
	int p = index_of(t->ppid);
	struct slot *s;

	if (p < 0 || tasks[p].state != 'R')
		return 0;
	s = call(NULL, p, OP_WAIT_NOHANG, t->pid);
	if (!s)
		return -1;
	if (s->ret < 0)
		return fail_errno(s->err, "zombie task %d (pid %d): waitpid in its parent task %d "
				  "(pid %d)", i, t->pid, p, tasks[p].pid);
	if (s->ret != t->pid)
		return zdtm_fail("zombie task %d (pid %d): waitpid(WNOHANG) in its parent task %d "
				 "(pid %d) gave %ld", i, t->pid, p, tasks[p].pid, s->ret);
	t->state = 'X';
	if (s->status != t->status)
		return zdtm_fail("zombie task %d (pid %d): wait status 0x%x, expected 0x%x",
				 i, t->pid, s->status, t->status);
	return 0;
}

/* Subreaper task i must still collect orphans of its descendants. */
static int check_subreaper(int i)
{
	const struct task *t = &tasks[i];
	struct slot *s = call(NULL, i, OP_ORPHAN, 0);

	if (!s)
		return -1;
	switch (s->ret) {
	case ORPHAN_OK:
		return 0;
	case ORPHAN_CLONE:
		return fail_errno(s->err, "subreaper task %d (pid %d): clone of the orphan's parent",
				  i, t->pid);
	case ORPHAN_NO_GRANDCHILD:
		return zdtm_fail("subreaper task %d (pid %d): the orphan's parent did not make it "
				 "(status 0x%x)", i, t->pid, s->val[0]);
	case ORPHAN_WAIT_CHILD:
		return fail_errno(s->err, "subreaper task %d (pid %d): waitpid of the orphan's parent",
				  i, t->pid);
	case ORPHAN_STAT:
		return fail_errno(s->err, "subreaper task %d (pid %d): /proc/%d/stat of the orphan",
				  i, t->pid, s->val[0]);
	case ORPHAN_ELSEWHERE:
		return zdtm_fail("subreaper task %d (pid %d): the orphan %d went to pid %d, "
				 "not to the subreaper", i, t->pid, s->val[0], s->val[1]);
	case ORPHAN_REAP:
		return fail_errno(s->err, "subreaper task %d (pid %d): waitpid of the orphan %d",
				  i, t->pid, s->val[0]);
	}
	return zdtm_fail("subreaper task %d (pid %d): the orphan check said %ld", i, t->pid, s->ret);
}

static int check(void)
{
	int i, rc = 0;

	if (!built)
		return zdtm_fail("no tree: the setup never ran");
	for (i = 0; i < nr_tasks; i++)
		if (tasks[i].state != 'X' && check_proc(i))
			rc = -1;
	for (i = 0; i < nr_tasks; i++)
		if (tasks[i].state == 'R' && check_inside(i))
			rc = -1;
	for (i = 0; i < nr_tasks; i++)
		if (tasks[i].state == 'Z' && check_zombie(i))
			rc = -1;
	for (i = 0; i < nr_tasks; i++)
		if (tasks[i].state == 'R' && tasks[i].subreaper && check_subreaper(i))
			rc = -1;
	if (hup_count)
		rc = zdtm_fail("the root got SIGHUP: its process group was orphaned while a member "
			       "was stopped");
	teardown();
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
