/* A stopped thread group: a child with 4 threads stops itself with SIGSTOP, so all 5
 * threads are in state T. At check /proc shows exactly those threads, all stopped, and the
 * stop report waits for the root. The threads are then woken through a futex while still
 * stopped: none may run. SIGCONT lets every thread check its tid and __thread value, and
 * the process ends cleanly. */
#include <dirent.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NTHREADS 4
#define SEED 0x5709000

struct shared {
	struct zdtm_sync ready;		/* threads started */
	uint32_t go;			/* futex: set by the root at check */
	pid_t tid[NTHREADS];
	uint32_t ran[NTHREADS + 1];	/* thread i (NTHREADS: main) ran past the stop */
	uint32_t failed;
};

static struct shared *sh;
static pid_t child;
static __thread uint64_t tls_word;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *thread_fn(void *arg)
{
	int i = (int)(long)arg;

	tls_word = SEED + i;
	sh->tid[i] = zdtm_gettid();
	zdtm_sync_add(&sh->ready, 1);
	while (!__atomic_load_n(&sh->go, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &sh->go, FUTEX_WAIT, 0, NULL, NULL, 0);
	__atomic_store_n(&sh->ran[i], 1, __ATOMIC_SEQ_CST);
	if (zdtm_gettid() != sh->tid[i] || tls_word != SEED + (uint64_t)i) {
		zdtm_fail("thread %d: tid %d __thread 0x%llx, expected %d and 0x%llx", i, zdtm_gettid(),
			  (unsigned long long)tls_word, sh->tid[i], (unsigned long long)(SEED + i));
		__atomic_store_n(&sh->failed, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

static void child_main(void)
{
	pthread_t th[NTHREADS];

	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_fn, (void *)i))
			_exit(2);
	if (zdtm_sync_wait(&sh->ready, NTHREADS))
		_exit(2);
	kill(getpid(), SIGSTOP);	/* the whole group stops */
	__atomic_store_n(&sh->ran[NTHREADS], 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	_exit(sh->failed ? 1 : 0);
}

/* Thread states from /proc/CHILD/task: all must be T (or all not T); exactly our threads. */
static int check_threads(bool stopped, bool report)
{
	char path[96], buf[1024], *p;
	int found = 0, rc = 0;
	struct dirent *de;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", child);
	d = opendir(path);
	if (!d)
		return report ? zdtm_err("%s", path) : -1;
	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name);
		int i;

		if (tid <= 0)
			continue;
		found++;
		for (i = 0; i < NTHREADS && sh->tid[i] != tid; i++)
			;
		if (tid != child && i == NTHREADS) {
			rc = report ? zdtm_fail("process %d has a thread %d it never made", child, tid) : -1;
			continue;
		}
		snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", child, tid);
		if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || !(p = strrchr(buf, ')')))
			rc = report ? zdtm_err("%s", path) : -1;
		else if ((p[2] == 'T') != stopped)
			rc = report ? zdtm_fail("thread %d of process %d is in state %c, expected %s", tid,
						child, p[2], stopped ? "T" : "not T") : -1;
	}
	closedir(d);
	if (found != NTHREADS + 1)
		rc = report ? zdtm_fail("process %d has %d threads, expected %d", child, found, NTHREADS + 1) : -1;
	return rc;
}

static int setup(void)
{
	int64_t end = now_ms() + 2000;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shmem");
	child = fork();
	if (child < 0)
		return zdtm_err("fork");
	if (child == 0)
		child_main();
	if (zdtm_sync_wait(&sh->ready, NTHREADS))
		return zdtm_fail("stopped before the threads were ready");
	while (check_threads(true, false)) {
		if (now_ms() > end)
			return check_threads(true, true) ? -1 : zdtm_fail("the thread group did not stop");
		usleep(1000);
	}
	return 0;
}

static int check(void)
{
	int64_t end;
	siginfo_t si;
	int i, ran = 0, status, rc;
	pid_t r;

	if (child <= 0)
		return zdtm_fail("no stopped thread group was made");
	rc = check_threads(true, true);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, child, &si, WSTOPPED | WNOWAIT | WNOHANG) || si.si_pid != child ||
	    si.si_code != CLD_STOPPED || si.si_status != SIGSTOP)
		rc = zdtm_fail("process %d: stop report pid %d code %d status %d, expected code %d status %d",
			       child, si.si_pid, si.si_code, si.si_status, CLD_STOPPED, SIGSTOP);
	/* wake the threads while stopped: none may run until SIGCONT */
	__atomic_store_n(&sh->go, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &sh->go, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
	usleep(30000);
	for (i = 0; i <= NTHREADS; i++)
		ran += __atomic_load_n(&sh->ran[i], __ATOMIC_SEQ_CST);
	if (ran)
		rc = zdtm_fail("%d threads of the stopped process %d ran", ran, child);

	kill(child, SIGCONT);
	end = now_ms() + 1500;
	while ((r = waitpid(child, &status, WNOHANG)) == 0 && now_ms() < end)
		usleep(1000);
	if (r == 0) {
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		return zdtm_fail("process %d did not end after SIGCONT: killed", child);
	}
	if (r != child || status)
		return zdtm_fail("process %d ended with status 0x%x", child, status);
	for (i = 0; i <= NTHREADS; i++)
		if (!sh->ran[i])
			rc = zdtm_fail("thread %d of process %d never ran after SIGCONT", i, child);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
