/* The restore plan executor: builds a process tree by running each actor's operations
 * (engine/plan.py gives their semantics) in the actor itself, with exact pids (clone3
 * set_tid). Actors share one MAP_SHARED table to follow each other's progress (futexes).
 *
 * Every actor but the caller is a fork of a possibly multithreaded interpreter: from the
 * fork on it calls nothing but raw syscalls (no malloc, no stdio, no locks). Given a stub
 * program (native/stub.c: this file with a main), the caller's children exec it at once and
 * go on there: their descendants are then forks of a small static program, not of the
 * interpreter, and each stub's address space is cheap to empty at restore. A live actor
 * ends parked (every signal blocked, in pause) for the restorer to seize and rebuild. An
 * actor that fails records errno and its step, raises `failed` and parks: the caller kills
 * every actor it knows of. Included by ffi_build through the `plan` cdefs topic.
 *
 * Pids: an actor's `pid` is how the caller sees it (it reads /proc, traces and kills by
 * it): for a task with its pid given at every level the outermost one; else what clone3 returned, when the
 * creator is in the caller's pid namespace; else the actor reads it from /proc/self (the
 * caller's proc: a new mount namespace starts as a copy of the caller's). `vpid` is how its
 * creator sees it, for wait4. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CKPT_PLAN_LEVELS 8

enum {
	CKPT_OP_FORK = 1,	/* a: actor index, b: 1 for CLONE_PARENT */
	CKPT_OP_SETSID,
	CKPT_OP_SETPGID,	/* a: pgid (0: its own pid) */
	CKPT_OP_SUBREAPER,	/* a: on */
	CKPT_OP_WAIT,		/* a: actor index, b: step */
	CKPT_OP_EXIT,		/* a: wait status */
	CKPT_OP_REAP,		/* a: actor index */
};

struct ckpt_plan_op {
	int kind, a, b;
};

struct ckpt_plan_actor {
	int first, nops;	/* its operations: ops[first .. first + nops) */
	int nlevels;		/* pids given, innermost first; 0: any free pid */
	int tids[CKPT_PLAN_LEVELS];
	int flags;		/* CLONE_NEW* namespaces its fork makes, CLONE_FILES */
	int depth;		/* pid namespaces below the caller's it lives in */
	int init;		/* 1: the init of a new pid namespace of ours (see plan_init) */
	int pid;		/* as the caller sees it, once made */
	int vpid;		/* as its creator (and so its parent) sees it */
	int done;		/* operations completed (a futex word) */
	int err, step;		/* on failure: errno and the failing operation's index */
	uint64_t blocked, ignored, caught;	/* an exiting actor's signal state to die with */
	char comm[16];				/* and its name ("" to keep ours) */
};

struct ckpt_plan_shared {
	int failed;		/* a futex word too: raised once, never lowered */
	int finished;		/* actors (caller excluded) that completed their list */
	int nactors, nops;
	struct ckpt_plan_actor actors[];	/* then the operations */
};

/* Set by ckpt_plan_run in the caller, so its forked children see them too. */
static const char *plan_stub;	/* the stub program to exec; NULL: go on in the fork */
static int plan_memfd = -1;	/* the shared table's memfd, passed to the stub */
static int plan_keep = -1;	/* a caller's fd the stubs keep across their exec (or -1) */

static struct ckpt_plan_op *plan_ops(struct ckpt_plan_shared *s)
{
	return (struct ckpt_plan_op *)&s->actors[s->nactors];
}

static void plan_futex_wait(int *word, int seen, long ns)
{
	struct timespec ts = { 0, ns };

	syscall(SYS_futex, word, FUTEX_WAIT, seen, &ts, NULL, 0);
}

static void plan_futex_wake(int *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

static void plan_bump(int *word)
{
	__atomic_add_fetch(word, 1, __ATOMIC_SEQ_CST);
	plan_futex_wake(word);
}

/* Decimal text of n into buf (at least 12 bytes); raw, for a fork of the interpreter. */
static void plan_itoa(char *buf, int n)
{
	char digits[12];
	int len = 0, i = 0;

	do {
		digits[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	while (len)
		buf[i++] = digits[--len];
	buf[i] = 0;
}

/* Whether task `pid` (as we see it) is a zombie or gone: /proc/PID/stat, read raw. */
static int plan_dead(int pid)
{
	char path[32] = "/proc/", buf[512];
	int fd;
	long len;
	char *p;

	plan_itoa(path + 6, pid);
	memcpy(path + strlen(path), "/stat", 6);
	fd = (int)syscall(SYS_open, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	len = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
	syscall(SYS_close, fd);
	if (len <= 0)
		return 1;
	buf[len] = 0;
	p = strrchr(buf, ')');
	return !p || p[2] == 'Z' || p[2] == 'X';
}

static void plan_park(void)
{
	for (;;)
		syscall(SYS_pause);
}

static void plan_fail(struct ckpt_plan_shared *s, struct ckpt_plan_actor *me, int step, int err)
{
	me->err = err;
	me->step = step;
	__atomic_store_n(&s->failed, 1, __ATOMIC_SEQ_CST);
	plan_futex_wake(&s->failed);
}

static long plan_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait for actor `who` to have done `step` operations; when that step is its exit, until
 * it is a zombie (its children are reparented by then). Returns 0, ECANCELED once another
 * actor failed, ETIMEDOUT past `deadline` (CLOCK_MONOTONIC ms; 0: none). */
static int plan_wait(struct ckpt_plan_shared *s, int who, int step, long deadline)
{
	struct ckpt_plan_actor *a = &s->actors[who];
	int seen;

	while ((seen = __atomic_load_n(&a->done, __ATOMIC_SEQ_CST)) < step) {
		if (__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST))
			return ECANCELED;
		if (deadline && plan_now_ms() > deadline)
			return ETIMEDOUT;
		plan_futex_wait(&a->done, seen, 20 * 1000 * 1000);
	}
	if (a->nops == step && plan_ops(s)[a->first + step - 1].kind == CKPT_OP_EXIT) {
		while (!plan_dead(__atomic_load_n(&a->pid, __ATOMIC_SEQ_CST))) {
			if (__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST))
				return ECANCELED;
			if (deadline && plan_now_ms() > deadline)
				return ETIMEDOUT;
			plan_futex_wait(&s->failed, 0, 200 * 1000);
		}
	}
	return 0;
}

/* Every action back to its default (the restorer's own were inherited): zombies of the
 * plan stay zombies, and the restore sets only the actions that differ from the default. */
static void plan_default_signals(void)
{
	uint64_t act[4] = { 0, 0, 0, 0 };
	int sig;

	for (sig = 1; sig <= 64; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			syscall(SYS_rt_sigaction, sig, act, NULL, sizeof(uint64_t));
}

/* The signal state a zombie shows in /proc (SigBlk, SigIgn, SigCgt): dispositions (a
 * caught signal gets some handler: it never runs) and the mask. */
static void plan_zombie_signals(const struct ckpt_plan_actor *a)
{
	int sig;

	for (sig = 1; sig <= 64; sig++) {
		uint64_t bit = 1ULL << (sig - 1), act[4] = { 0, 0, 0, 0 };

		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (a->ignored & bit)
			act[0] = (uint64_t)(uintptr_t)SIG_IGN;
		else if (a->caught & bit)
			act[0] = (uint64_t)(uintptr_t)plan_park;
		syscall(SYS_rt_sigaction, sig, act, NULL, sizeof(uint64_t));
	}
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &a->blocked, NULL, sizeof(a->blocked));
}

static void plan_exit(const struct ckpt_plan_actor *a, int status)
{
	int sig = status & 0x7f;

	if (a->comm[0])
		syscall(SYS_prctl, PR_SET_NAME, a->comm, 0, 0, 0);
	plan_zombie_signals(a);

	if (sig) {
		/* Killed by `sig`: its default action, unblocked; no core file (the status
		 * must not gain the core bit). */
		uint64_t act[4] = { 0, 0, 0, 0 }, mask = 1ULL << (sig - 1);

		syscall(SYS_prctl, PR_SET_DUMPABLE, 0, 0, 0, 0);
		syscall(SYS_rt_sigaction, sig, act, NULL, sizeof(uint64_t));
		syscall(SYS_kill, syscall(SYS_getpid), sig);
		syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &mask, NULL, sizeof(mask));
	}
	syscall(SYS_exit_group, (status >> 8) & 0xff);
}

static long plan_clone(struct ckpt_plan_actor *child, int clone_parent)
{
	uint64_t a[11];

	memset(a, 0, sizeof(a));
	a[0] = (clone_parent ? CLONE_PARENT : 0) | (uint64_t)(unsigned)child->flags;	/* flags */
	a[4] = clone_parent ? 0 : SIGCHLD;		/* exit_signal (CLONE_PARENT takes ours) */
	a[8] = child->nlevels ? (uintptr_t)child->tids : 0;	/* set_tid (none: EINVAL) */
	a[9] = (uint64_t)child->nlevels;		/* set_tid_size */
	return syscall(SYS_clone3, a, sizeof(a));
}

static void plan_actor(struct ckpt_plan_shared *s, int me);

/* A child of the caller becomes the stub program, as actor `me`; if the exec fails it goes
 * on here (slower to empty at restore, the same tree). */
static void plan_become_stub(struct ckpt_plan_shared *s, int me)
{
	char fd_text[12], me_text[12];
	char *argv[] = { (char *)"ckpt-stub", fd_text, me_text, NULL };
	char *envp[] = { NULL };

	if (plan_stub && plan_memfd >= 0) {
		plan_itoa(fd_text, plan_memfd);
		plan_itoa(me_text, me);
		syscall(SYS_fcntl, plan_memfd, F_SETFD, 0);
		if (plan_keep >= 0)
			syscall(SYS_fcntl, plan_keep, F_SETFD, 0);
		syscall(SYS_execve, plan_stub, argv, envp);
	}
	plan_actor(s, me);
}

static void plan_set_pid(struct ckpt_plan_actor *a, int pid)
{
	int zero = 0;

	__atomic_compare_exchange_n(&a->pid, &zero, pid, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

/* The creator's side of a fork: the child's pids, as far as the creator knows them. */
static void plan_made(struct ckpt_plan_actor *child, int rc, const struct ckpt_plan_actor *me)
{
	__atomic_store_n(&child->vpid, rc, __ATOMIC_SEQ_CST);
	if (child->nlevels == child->depth + 1)	/* its pid in our namespace is given */
		plan_set_pid(child, child->tids[child->nlevels - 1]);
	else if (me->depth == 0)
		plan_set_pid(child, rc);
}

/* Our pid in the proc mounted at /proc (the caller's); 0 if it cannot be read. */
static int plan_proc_self(void)
{
	char buf[16];
	long n = syscall(SYS_readlink, "/proc/self", buf, sizeof(buf) - 1);
	int pid = 0;
	long i;

	for (i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		pid = pid * 10 + (buf[i] - '0');
	return n > 0 && i == n ? pid : 0;
}

/* One operation of actor `me`; returns 0 or an errno. Waits give up at `deadline`. */
static int plan_step(struct ckpt_plan_shared *s, const struct ckpt_plan_actor *me,
		     const struct ckpt_plan_op *op, long deadline)
{
	long rc = 0;
	int st;

	switch (op->kind) {
	case CKPT_OP_FORK:
		rc = plan_clone(&s->actors[op->a], op->b);
		if (rc == 0 && me == &s->actors[0])
			plan_become_stub(s, op->a);	/* never returns */
		if (rc == 0)
			plan_actor(s, op->a);	/* never returns */
		if (rc > 0)
			plan_made(&s->actors[op->a], (int)rc, me);
		break;
	case CKPT_OP_SETSID:
		rc = syscall(SYS_setsid);
		break;
	case CKPT_OP_SETPGID:
		rc = syscall(SYS_setpgid, 0, op->a);
		break;
	case CKPT_OP_SUBREAPER:
		rc = syscall(SYS_prctl, PR_SET_CHILD_SUBREAPER, op->a, 0, 0, 0);
		break;
	case CKPT_OP_WAIT:
		return plan_wait(s, op->a, op->b, deadline);
	case CKPT_OP_EXIT:
		break;	/* done by the caller of plan_step, after its progress is published */
	case CKPT_OP_REAP:
		rc = plan_wait(s, op->a, s->actors[op->a].nops, deadline);
		if (rc)
			return (int)rc;
		do
			rc = syscall(SYS_wait4, s->actors[op->a].vpid, &st, __WALL, NULL);
		while (rc < 0 && errno == EINTR);
		break;
	default:
		return EINVAL;
	}
	return rc < 0 ? errno : 0;
}

/* The init of a pid namespace the caller asked for, once its operations are done: when
 * every other actor is done too (no one reads /proc by the caller's pids any more), it
 * gives its mount namespace a private /proc of the new pid namespace, then lets go of the
 * caller's fds and reaps whatever comes to it; when its own children (the tree's roots) are
 * all gone it exits with the first one's status (128 + signal when killed). */
static void plan_init(struct ckpt_plan_shared *s, struct ckpt_plan_actor *a)
{
	const struct ckpt_plan_op *ops = &plan_ops(s)[a->first];
	int i, seen, st, first = -1, left = 0, pid;

	while ((seen = __atomic_load_n(&s->finished, __ATOMIC_SEQ_CST)) < s->nactors - 2) {
		if (__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST))
			plan_park();
		plan_futex_wait(&s->finished, seen, 20 * 1000 * 1000);
	}
	if (syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    syscall(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) {
		plan_fail(s, a, a->nops, errno);
		plan_park();
	}
	for (i = 0; i < a->nops; i++)	/* helpers it made were reaped by its own operations */
		left += (ops[i].kind == CKPT_OP_FORK) - (ops[i].kind == CKPT_OP_REAP);
	plan_bump(&s->finished);
	syscall(SYS_close_range, 0, ~0U, 0);
	syscall(SYS_prctl, PR_SET_NAME, "ckpt-init", 0, 0, 0);
	while (left > 0) {
		pid = (int)syscall(SYS_wait4, -1, &st, __WALL, NULL);
		if (pid < 0)
			continue;
		for (i = 0; i < a->nops; i++)
			if (ops[i].kind == CKPT_OP_FORK && s->actors[ops[i].a].vpid == pid) {
				if (first < 0)
					first = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
				left--;
			}
	}
	syscall(SYS_exit_group, first < 0 ? 0 : first);
}

/* The life of a forked actor: every signal blocked, its operations, then parked. */
static void plan_actor(struct ckpt_plan_shared *s, int me)
{
	struct ckpt_plan_actor *a = &s->actors[me];
	uint64_t all = ~0ULL;
	int i, err;

	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, sizeof(all));
	plan_default_signals();
	/* Before any progress is published: others read our state by this pid. */
	plan_set_pid(a, a->depth ? plan_proc_self() : (int)syscall(SYS_getpid));
	for (i = 0; i < a->nops; i++) {
		const struct ckpt_plan_op *op = &plan_ops(s)[a->first + i];

		if (__atomic_load_n(&s->failed, __ATOMIC_SEQ_CST))
			plan_park();
		err = plan_step(s, a, op, 0);
		if (err == ECANCELED)
			plan_park();	/* another actor failed: it says why */
		if (err) {
			plan_fail(s, a, i, err);
			plan_park();
		}
		plan_bump(&a->done);
		if (op->kind == CKPT_OP_EXIT) {
			plan_bump(&s->finished);
			plan_exit(a, op->a);
		}
	}
	if (a->init)
		plan_init(s, a);	/* never returns */
	plan_bump(&s->finished);
	plan_park();
}

#ifndef PLAN_STUB
/* Run a plan: actor 0 is the caller (it may only fork, wait and reap, and never blocks for
 * long: a failure elsewhere must reach it). Returns 0 once every other actor completed its
 * list, -1 if one failed (its err/step say why), -ETIMEDOUT. `actors` gets the pids,
 * progress and errors back. `stub`: the stub program the caller's children exec (NULL:
 * none); `keep`: an fd of the caller they keep open across it (-1: none). */
static int ckpt_plan_run(struct ckpt_plan_actor *actors, int nactors,
			 const struct ckpt_plan_op *ops, int nops, int timeout_ms,
			 const char *stub, int keep)
{
	size_t size = sizeof(struct ckpt_plan_shared) + nactors * sizeof(*actors) + nops * sizeof(*ops);
	long deadline = plan_now_ms() + timeout_ms;
	struct ckpt_plan_shared *s;
	int i, rc = 0, seen, memfd;

	/* A memfd, so a stub can map the same table after its exec; close-on-exec for every
	 * other program the interpreter may start meanwhile (a stub clears it for itself). */
	memfd = (int)syscall(SYS_memfd_create, "ckpt-plan", MFD_CLOEXEC);
	if (memfd < 0)
		return -errno;
	if (ftruncate(memfd, (off_t)size) < 0) {
		rc = -errno;
		close(memfd);
		return rc;
	}
	s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (s == MAP_FAILED) {
		rc = -errno;
		close(memfd);
		return rc;
	}
	plan_stub = stub;
	plan_memfd = memfd;
	plan_keep = keep;
	s->nactors = nactors;
	s->nops = nops;
	memcpy(s->actors, actors, nactors * sizeof(*actors));
	memcpy(plan_ops(s), ops, nops * sizeof(*ops));

	for (i = 0; i < s->actors[0].nops && !rc; i++) {
		const struct ckpt_plan_op *op = &plan_ops(s)[s->actors[0].first + i];
		int err;

		if (op->kind != CKPT_OP_FORK && op->kind != CKPT_OP_WAIT && op->kind != CKPT_OP_REAP)
			err = EINVAL;	/* the restorer does not change itself */
		else
			err = plan_step(s, &s->actors[0], op, deadline);
		if (err == ECANCELED || err == ETIMEDOUT) {
			rc = err == ETIMEDOUT ? -ETIMEDOUT : -1;
			break;
		}
		if (err) {
			plan_fail(s, &s->actors[0], i, err);
			rc = -1;
		} else {
			plan_bump(&s->actors[0].done);
		}
	}
	while (!rc && (seen = __atomic_load_n(&s->finished, __ATOMIC_SEQ_CST)) < nactors - 1) {
		if (s->failed)
			rc = -1;
		else if (plan_now_ms() > deadline)
			rc = -ETIMEDOUT;
		else
			plan_futex_wait(&s->finished, seen, 20 * 1000 * 1000);
	}
	if (!rc && s->failed)
		rc = -1;
	if (rc == -ETIMEDOUT) {
		__atomic_store_n(&s->failed, 1, __ATOMIC_SEQ_CST);
		plan_futex_wake(&s->failed);
	}
	memcpy(actors, s->actors, nactors * sizeof(*actors));
	munmap(s, size);
	close(memfd);
	plan_stub = NULL;
	plan_memfd = plan_keep = -1;
	return rc;
}
#endif /* PLAN_STUB */
