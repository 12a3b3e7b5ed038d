/* Tasks blocked in semop survive C/R still blocked: one child waits to take 2 from a
 * semaphore holding 1, another waits for a semaphore of 3 to reach zero. After C/R
 * GETNCNT/GETZCNT count them and they have not returned; when the root adds 2 and takes 3,
 * each waiter completes its operation and the values are exact. */
#include <signal.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum { W_TAKE, W_ZERO, NW };
enum { ST_NONE, ST_BLOCKING, ST_DONE, ST_ERROR };

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

struct waiter {
	int state, err, quit;
};

static int sem = -1;
static pid_t pids[NW];
static struct waiter *w;

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void waiter_main(int k, pid_t parent)
{
	struct sembuf op = k == W_TAKE ? (struct sembuf){ 0, -2, 0 } : (struct sembuf){ 1, 0, 0 };

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	__atomic_store_n(&w[k].state, ST_BLOCKING, __ATOMIC_SEQ_CST);
	if (semop(sem, &op, 1)) {
		w[k].err = errno;
		__atomic_store_n(&w[k].state, ST_ERROR, __ATOMIC_SEQ_CST);
		_exit(1);
	}
	__atomic_store_n(&w[k].state, ST_DONE, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&w[k].quit, __ATOMIC_SEQ_CST) && getppid() == parent)
		usleep(1000);
	_exit(0);
}

static const char *state_name(int st)
{
	return st == ST_NONE ? "not started" : st == ST_BLOCKING ? "blocked" :
	       st == ST_DONE ? "done" : "failed";
}

/* Wait until both waiters sleep in semop: GETNCNT(0) == 1 and GETZCNT(1) == 1. */
static bool wait_blocked(long long deadline)
{
	while (now_ms() < deadline) {
		for (int k = 0; k < NW; k++)
			if (w[k].state == ST_DONE || w[k].state == ST_ERROR)
				return false;
		if (semctl(sem, 0, GETNCNT) == 1 && semctl(sem, 1, GETZCNT) == 1 &&
		    w[W_TAKE].state == ST_BLOCKING && w[W_ZERO].state == ST_BLOCKING)
			return true;
		usleep(1000);
	}
	return false;
}

static void stop_waiters(void)
{
	for (int k = 0; k < NW; k++) {
		int status;

		if (pids[k] <= 0)
			continue;
		__atomic_store_n(&w[k].quit, 1, __ATOMIC_SEQ_CST);
		if (w[k].state != ST_DONE)
			kill(pids[k], SIGKILL);
		while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR)
			;
		pids[k] = 0;
	}
}

static int setup(void)
{
	unsigned short v[2] = { 1, 3 };
	pid_t parent = getpid();

	w = zdtm_shmem(4096);
	if (!w)
		return zdtm_err("shared page");
	sem = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
	if (sem < 0)
		return zdtm_err("semget");
	if (semctl(sem, 0, SETALL, (union semun){ .array = v }))
		return zdtm_err("SETALL");
	for (int k = 0; k < NW; k++) {
		pids[k] = fork();
		if (pids[k] < 0)
			return zdtm_err("fork");
		if (pids[k] == 0)
			waiter_main(k, parent);
	}
	if (!wait_blocked(now_ms() + 2500)) {
		zdtm_fail("the waiters did not block: %s, %s; ncnt %d zcnt %d",
			  state_name(w[0].state), state_name(w[1].state),
			  semctl(sem, 0, GETNCNT), semctl(sem, 1, GETZCNT));
		stop_waiters();
		return -1;
	}
	return 0;
}

static int wait_done(int k)
{
	long long deadline = now_ms() + 1000;

	while (w[k].state == ST_BLOCKING && now_ms() < deadline)
		usleep(1000);
	if (w[k].state != ST_DONE)
		return zdtm_fail("waiter %d is %s%s%s after the root's semop, expected done", pids[k],
				 state_name(w[k].state), w[k].state == ST_ERROR ? ": " : "",
				 w[k].state == ST_ERROR ? strerror(w[k].err) : "");
	return 0;
}

static int check_all(void)
{
	struct sembuf add = { 0, 2, 0 }, take = { 1, -3, 0 };
	unsigned short v[2];

	if (!w || sem < 0)
		return zdtm_fail("the semaphores and waiters were never set up");
	/* A restored waiter may need a moment to re-enter semop. */
	if (!wait_blocked(now_ms() + 1000))
		return zdtm_fail("waiters are %s and %s, GETNCNT %d GETZCNT %d; expected both "
				 "blocked, 1 and 1", state_name(w[0].state), state_name(w[1].state),
				 semctl(sem, 0, GETNCNT), semctl(sem, 1, GETZCNT));
	if (semctl(sem, 0, GETALL, (union semun){ .array = v }))
		return zdtm_err("GETALL");
	if (v[0] != 1 || v[1] != 3)
		return zdtm_fail("values {%u, %u} with both waiting, expected {1, 3}", v[0], v[1]);

	if (semop(sem, &add, 1) || wait_done(W_TAKE))
		return -1;
	if (semop(sem, &take, 1) || wait_done(W_ZERO))
		return -1;
	if (semctl(sem, 0, GETALL, (union semun){ .array = v }))
		return zdtm_err("GETALL");
	if (v[0] != 1 || v[1] != 0 || semctl(sem, 0, GETNCNT) || semctl(sem, 1, GETZCNT))
		return zdtm_fail("after the waiters: values {%u, %u} ncnt %d zcnt %d, expected {1, 0} "
				 "and no waiters", v[0], v[1], semctl(sem, 0, GETNCNT),
				 semctl(sem, 1, GETZCNT));
	return 0;
}

static int check(void)
{
	int rc = check_all();

	if (w)
		stop_waiters();
	if (sem >= 0 && semctl(sem, 0, IPC_RMID) && !rc)
		rc = zdtm_err("IPC_RMID set %d", sem);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
