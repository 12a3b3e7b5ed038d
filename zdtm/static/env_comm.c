/* Task names (comm) survive C/R, per thread and per process: the main thread takes a
 * full 15-byte name with PR_SET_NAME, two threads get other names (one with spaces and
 * punctuation, one set by pthread_setname_np from the main thread), a child process one
 * more. Checked with PR_GET_NAME in each task and /proc/self/task/TID/comm from outside. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define ROOT_NAME "comm-root-15chr"	/* exactly TASK_COMM_LEN - 1 bytes */
#define CHILD_NAME "child: [c] #2"
#define NTHREADS 2

struct worker {
	pthread_t th;
	pid_t tid;
	const char *name;
	bool self_named;	/* PR_SET_NAME in the thread, else pthread_setname_np from main */
	int bad;		/* set by the thread: its own PR_GET_NAME differed */
	char seen[16];
};

static struct worker workers[NTHREADS] = {
	{ .name = "w0 (self) ~!", .self_named = true },
	{ .name = "w1-set-by-main", .self_named = false },
};
static uint32_t started, release;
static bool root_set;
static pid_t child;

static void futex_wait(uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);	/* SIGTERM is the main thread's */
	w->tid = zdtm_gettid();
	if (w->self_named)
		prctl(PR_SET_NAME, w->name);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	futex_wake(&started);
	while (!__atomic_load_n(&release, __ATOMIC_SEQ_CST))
		futex_wait(&release, 0);
	prctl(PR_GET_NAME, w->seen);
	w->bad = strcmp(w->seen, w->name) != 0;
	return NULL;
}

static int proc_comm(pid_t pid, pid_t tid, const char *want, const char *who)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", pid, tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read %s", who, path);
	buf[strcspn(buf, "\n")] = '\0';
	if (strcmp(buf, want))
		return zdtm_fail("%s: %s is '%s', expected '%s'", who, path, buf, want);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	return prctl(PR_SET_NAME, CHILD_NAME) ? zdtm_err("PR_SET_NAME") : 0;
}

static int child_check(void *arg)
{
	char name[16] = "";

	(void)arg;
	prctl(PR_GET_NAME, name);
	if (strcmp(name, CHILD_NAME))
		return zdtm_fail("child: PR_GET_NAME is '%s', expected '%s'", name, CHILD_NAME);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_setup, .check = child_check };
	uint32_t n;

	child = zdtm_child(&t);
	if (child <= 0)
		return -1;
	if (prctl(PR_SET_NAME, ROOT_NAME " and more that is cut"))
		return zdtm_err("PR_SET_NAME");
	for (int i = 0; i < NTHREADS; i++) {
		int e = pthread_create(&workers[i].th, NULL, worker_fn, &workers[i]);

		if (e) {
			errno = e;
			return zdtm_err("pthread_create");
		}
	}
	while ((n = __atomic_load_n(&started, __ATOMIC_SEQ_CST)) < NTHREADS)
		futex_wait(&started, n);
	for (int i = 0; i < NTHREADS; i++) {
		if (workers[i].self_named)
			continue;
		errno = pthread_setname_np(workers[i].th, workers[i].name);
		if (errno)
			return zdtm_err("pthread_setname_np '%s'", workers[i].name);
	}
	root_set = true;
	return 0;
}

static int check(void)
{
	char name[16] = "", tname[16];
	int rc = 0;

	if (!root_set)
		return zdtm_fail("names never set: setup did not run");
	prctl(PR_GET_NAME, name);
	if (strcmp(name, ROOT_NAME))
		rc = zdtm_fail("main thread: PR_GET_NAME is '%s', expected '%s'", name, ROOT_NAME);
	if (proc_comm(getpid(), getpid(), ROOT_NAME, "main thread"))
		rc = -1;
	for (int i = 0; i < NTHREADS; i++) {
		struct worker *w = &workers[i];

		if (proc_comm(getpid(), w->tid, w->name, "thread"))
			rc = -1;
		if (pthread_getname_np(w->th, tname, sizeof(tname)) == 0 && strcmp(tname, w->name))
			rc = zdtm_fail("thread %d: pthread_getname_np is '%s', expected '%s'", w->tid,
				       tname, w->name);
	}
	__atomic_store_n(&release, 1, __ATOMIC_SEQ_CST);
	futex_wake(&release);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].th, NULL);
		if (workers[i].bad)
			rc = zdtm_fail("thread %d: its own PR_GET_NAME is '%s', expected '%s'",
				       workers[i].tid, workers[i].seen, workers[i].name);
	}
	if (proc_comm(child, child, CHILD_NAME, "child"))
		rc = -1;
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
