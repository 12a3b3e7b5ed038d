/* A process whose main thread (the thread-group leader) exited with code 13 while its
 * other threads live on: /proc shows the leader as a zombie (Z) holding exit code 13 and
 * the threads asleep, and the parent cannot reap the process yet. At check the threads
 * verify themselves and exit one by one, with code 13 too (which thread's code wait()
 * reports has changed across kernel versions). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 3
#define LEADER_CODE 13
#define SEED 0x1eade400

struct shared {
	struct zdtm_sync ready;		/* threads started */
	pid_t tid[NTHREADS];
	uint32_t checked[NTHREADS];	/* set by each thread once its check passed */
};

static struct shared *sh;
static pid_t child;		/* the process with the zombie leader, 0 until made */
static __thread uint64_t tls_val;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* State and exit code (field 52) of a thread, from /proc/PID/task/TID/stat. */
static char proc_state(pid_t pid, pid_t tid, int *exit_code)
{
	char path[96], buf[1024], *p;
	int field;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return 0;
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return '?';
	if (exit_code) {
		char *q = p + 2;

		/* field 3 is the state, right after the ')' that ends field 2 */
		for (field = 3; field < 52 && q; field++)
			q = strchr(q + 1, ' ');
		if (!q || sscanf(q, " %d", exit_code) != 1)
			*exit_code = -1;
	}
	return p[2];
}

static void *thread_fn(void *arg)
{
	int i = (int)(long)arg;
	int rc = 0;

	tls_val = SEED + i;
	sh->tid[i] = zdtm_gettid();
	zdtm_sync_add(&sh->ready, 1);
	zdtm_wait_stop();
	if (zdtm_gettid() != sh->tid[i])
		rc = zdtm_fail("thread %d: tid %d, expected %d", i, zdtm_gettid(), sh->tid[i]);
	if (tls_val != SEED + (uint64_t)i)
		rc = zdtm_fail("thread %d (tid %d): TLS value 0x%llx, expected 0x%llx", i, zdtm_gettid(),
			       (unsigned long long)tls_val, (unsigned long long)(SEED + i));
	if (rc)
		syscall(SYS_exit_group, 1);
	sh->checked[i] = 1;
	syscall(SYS_exit, LEADER_CODE);	/* this thread only; the last one ends the process */
	return NULL;
}

static void child_main(void)
{
	pthread_t th;

	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&th, NULL, thread_fn, (void *)i)) {
			zdtm_fail("pthread_create");
			syscall(SYS_exit_group, 2);
		}
	zdtm_sync_wait(&sh->ready, NTHREADS);
	syscall(SYS_exit, LEADER_CODE);	/* the main thread only */
}

static int setup(void)
{
	int64_t end = now_ms() + 2000;
	int i;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shmem");
	child = fork();
	if (child < 0)
		return zdtm_err("fork");
	if (child == 0)
		child_main();
	/* ready once the leader is a zombie and every thread sleeps */
	for (;;) {
		bool done = proc_state(child, child, NULL) == 'Z' &&
			    __atomic_load_n(&sh->ready.value, __ATOMIC_SEQ_CST) == NTHREADS;

		for (i = 0; done && i < NTHREADS; i++)
			done = proc_state(child, sh->tid[i], NULL) == 'S';
		if (done)
			return 0;
		if (now_ms() > end)
			return zdtm_fail("process %d: the leader did not become a zombie with %d threads asleep",
					 child, NTHREADS);
		usleep(1000);
	}
}

static int check(void)
{
	int64_t end = now_ms() + 1500;
	int i, status, code, rc = 0;
	char st;
	pid_t r;

	if (child <= 0)
		return zdtm_fail("the process with a zombie leader was never made");
	st = proc_state(child, child, &code);
	if (st != 'Z')
		rc = zdtm_fail("the leader of process %d is in state %c, expected Z", child, st ? st : '-');
	else if (code != LEADER_CODE << 8)
		rc = zdtm_fail("the zombie leader of process %d holds exit code 0x%x, expected 0x%x",
			       child, code, LEADER_CODE << 8);
	for (i = 0; i < NTHREADS; i++) {
		st = proc_state(child, sh->tid[i], NULL);
		if (st != 'S' && st != 'R')
			rc = zdtm_fail("thread %d (tid %d) of process %d is in state %c, expected S",
				       i, sh->tid[i], child, st ? st : '-');
	}
	r = waitpid(child, &status, WNOHANG);
	if (r != 0)
		rc = zdtm_fail("process %d could be reaped (waitpid %d, status 0x%x) while its threads live",
			       child, r, status);
	if (r == child)
		return rc;
	/* a process-wide SIGTERM reaches one of the threads; every thread then checks itself */
	if (kill(child, SIGTERM))
		return zdtm_err("SIGTERM to %d", child);
	while ((r = waitpid(child, &status, WNOHANG)) == 0 && now_ms() < end)
		usleep(1000);
	if (r == 0) {
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		return zdtm_fail("process %d did not end after SIGTERM: killed", child);
	}
	if (r < 0)
		return zdtm_err("waitpid(%d)", child);
	for (i = 0; i < NTHREADS; i++)
		if (!sh->checked[i])
			rc = zdtm_fail("thread %d (tid %d) did not finish its check", i, sh->tid[i]);
	if (status != LEADER_CODE << 8)
		rc = zdtm_fail("process %d ended with status 0x%x, expected exit %d (0x%x)",
			       child, status, LEADER_CODE, LEADER_CODE << 8);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
