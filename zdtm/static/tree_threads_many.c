/* Many threads: 20 threads in the root and 8 in a child process. /proc lists exactly the
 * tids made in each process (a lost or an extra thread shows), each thread is asleep, and
 * each thread then checks its own tid, __thread value and stack data. */
#include <dirent.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define MAXT 128
#define STACK_DATA 2048

/* The threads of one process. */
struct pool {
	int n;
	uint64_t seed;
	pid_t pid;
	pid_t tid[MAXT];
	uint32_t ready, go, done, failed;
};

static struct pool *mine;	/* this process's pool (for the child: in shared memory) */
static struct pool *kid;	/* the child's pool, shared with the root */
static pthread_t ths[MAXT];
static pid_t child;
static __thread uint64_t tls_word;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void futex_wait(uint32_t *w, uint32_t v, long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	syscall(SYS_futex, w, FUTEX_WAIT, v, ms ? &ts : NULL, NULL, 0);
}

static void futex_wake(uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

static void *thread_fn(void *arg)
{
	struct pool *p = mine;
	int i = (int)(long)arg;
	char stack[STACK_DATA];
	ssize_t bad;
	int rc = 0;

	p->tid[i] = zdtm_gettid();
	tls_word = p->seed + i;
	zdtm_fill(stack, sizeof(stack), p->seed + i, 0);
	__atomic_add_fetch(&p->ready, 1, __ATOMIC_SEQ_CST);
	futex_wake(&p->ready);
	while (!__atomic_load_n(&p->go, __ATOMIC_SEQ_CST))
		futex_wait(&p->go, 0, 0);
	if (zdtm_gettid() != p->tid[i])
		rc = zdtm_fail("process %d thread %d: tid %d, expected %d", p->pid, i, zdtm_gettid(), p->tid[i]);
	if (tls_word != p->seed + i)
		rc = zdtm_fail("process %d thread %d (tid %d): __thread value 0x%llx, expected 0x%llx",
			       p->pid, i, p->tid[i], (unsigned long long)tls_word,
			       (unsigned long long)(p->seed + i));
	bad = zdtm_verify(stack, sizeof(stack), p->seed + i, 0);
	if (bad >= 0)
		rc = zdtm_fail("process %d thread %d (tid %d): stack byte %zd differs", p->pid, i, p->tid[i], bad);
	if (rc)
		__atomic_add_fetch(&p->failed, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&p->done, 1, __ATOMIC_SEQ_CST);
	futex_wake(&p->done);
	return NULL;
}

static int pool_start(struct pool *p, int n, uint64_t seed)
{
	uint32_t r;

	mine = p;
	p->n = n;
	p->seed = seed;
	p->pid = getpid();
	for (long i = 0; i < n; i++)
		if (pthread_create(&ths[i], NULL, thread_fn, (void *)i))
			return zdtm_fail("process %d: pthread_create %ld of %d", getpid(), i, n);
	while ((r = __atomic_load_n(&p->ready, __ATOMIC_SEQ_CST)) < (uint32_t)n)
		futex_wait(&p->ready, r, 0);
	return 0;
}

/* Let the threads of this process check themselves. */
static int pool_check(struct pool *p)
{
	int64_t end = now_ms() + 1000;
	uint32_t d;

	__atomic_store_n(&p->go, 1, __ATOMIC_SEQ_CST);
	futex_wake(&p->go);
	while ((d = __atomic_load_n(&p->done, __ATOMIC_SEQ_CST)) < (uint32_t)p->n) {
		if (now_ms() > end)
			return zdtm_fail("process %d: only %u of %d threads finished their check", p->pid, d, p->n);
		futex_wait(&p->done, d, 50);
	}
	for (int i = 0; i < p->n; i++)
		pthread_join(ths[i], NULL);
	return p->failed ? -1 : 0;
}

/* /proc/PID/task must list the main thread and exactly the pool's threads, all asleep. */
static int check_tasks(const struct pool *p)
{
	bool seen[MAXT] = { false };
	char path[64], buf[512], *s;
	struct dirent *de;
	int found = 0, rc = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", p->pid);
	d = opendir(path);
	if (!d)
		return zdtm_err("process %d: %s", p->pid, path);
	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name);
		int i;

		if (tid <= 0)
			continue;
		found++;
		if (tid == p->pid)
			continue;
		for (i = 0; i < p->n && p->tid[i] != tid; i++)
			;
		if (i == p->n) {
			rc = zdtm_fail("process %d has a thread %d it never made", p->pid, tid);
			continue;
		}
		seen[i] = true;
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", p->pid, tid);
		if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || !(s = strrchr(buf, ')')))
			rc = zdtm_err("%s", path);
		else if (s[2] != 'S' && s[2] != 'R')
			rc = zdtm_fail("process %d thread %d (tid %d) is in state %c, expected S",
				       p->pid, i, tid, s[2]);
	}
	closedir(d);
	for (int i = 0; i < p->n; i++)
		if (!seen[i])
			rc = zdtm_fail("process %d lost its thread %d (tid %d)", p->pid, i, p->tid[i]);
	if (found != p->n + 1)
		rc = zdtm_fail("process %d has %d threads, expected %d", p->pid, found, p->n + 1);
	return rc;
}

static int child_setup(void *arg)
{
	return pool_start(arg, kid->n, 0xc41d0000);
}

static int child_check(void *arg)
{
	return pool_check(arg);
}

static int setup(void)
{
	long n = zdtm_opt_long("threads", 20), cn = zdtm_opt_long("child-threads", 8);
	static struct zdtm_task t = { .setup = child_setup, .check = child_check };

	if (n < 1 || n > MAXT || cn < 1 || cn > MAXT)
		return zdtm_fail("--threads=%ld --child-threads=%ld: expected 1..%d", n, cn, MAXT);
	kid = zdtm_shmem(sizeof(*kid));
	if (!kid)
		return zdtm_err("shmem");
	kid->n = cn;
	t.arg = kid;
	child = zdtm_child(&t);
	if (child < 0)
		return -1;
	return pool_start(calloc(1, sizeof(struct pool)), n, 0x4007000);
}

static int check(void)
{
	char path[64], buf[512], *s;
	int ppid = 0, rc = 0;

	if (!mine || child <= 0)
		return zdtm_fail("setup never ran: no threads");
	rc |= check_tasks(mine);
	rc |= check_tasks(kid);
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || !(s = strrchr(buf, ')')) ||
	    sscanf(s + 2, "%*c %d", &ppid) != 1 || ppid != getpid())
		rc = zdtm_fail("the child %d has parent %d, expected %d", child, ppid, getpid());
	rc |= pool_check(mine);
	rc |= zdtm_child_check(child);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
