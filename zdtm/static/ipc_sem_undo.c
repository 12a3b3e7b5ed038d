/* SEM_UNDO adjustments held by tasks survive C/R: the root and two children changed two
 * SysV semaphore sets with SEM_UNDO (and one change without). After C/R the values are
 * exact, and as each child exits its own adjustments, and only those, are undone; the
 * root's are undone when it drops its undo list with unshare(CLONE_SYSVSEM). */
#include <sched.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include "zdtm.h"

#define NS 3
#define NT 2
#define NCHILD 2

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static int sem_s = -1, sem_t = -1;
static pid_t kids[NCHILD];

/* Expected values of S and T at each stage. */
enum { ST_ALL, ST_NO_C1, ST_NO_C2, ST_NO_ROOT, NSTAGES };
static const unsigned short want_s[NSTAGES][NS] = {
	{ 6, 15, 13 }, { 9, 10, 13 }, { 10, 10, 13 }, { 10, 10, 9 },
};
static const unsigned short want_t[NSTAGES][NT] = {
	{ 36, 43 }, { 36, 50 }, { 30, 50 }, { 50, 50 },
};
static const char *const stage_name[NSTAGES] = {
	"with every task alive", "after child 1 exited", "after child 2 exited",
	"after the root dropped its undo list",
};

static int ops(int id, const struct sembuf *sb, int n, const char *who)
{
	if (semop(id, (struct sembuf *)sb, n))
		return zdtm_err("%s: semop on set %d", who, id);
	return 0;
}

static int check_values(int stage)
{
	unsigned short s[NS], t[NT];

	if (semctl(sem_s, 0, GETALL, (union semun){ .array = s }) ||
	    semctl(sem_t, 0, GETALL, (union semun){ .array = t }))
		return zdtm_err("GETALL on sets %d, %d", sem_s, sem_t);
	if (memcmp(s, want_s[stage], sizeof(s)) || memcmp(t, want_t[stage], sizeof(t)))
		return zdtm_fail("%s: S = {%u, %u, %u} T = {%u, %u}, expected S = {%u, %u, %u} "
				 "T = {%u, %u}", stage_name[stage], s[0], s[1], s[2], t[0], t[1],
				 want_s[stage][0], want_s[stage][1], want_s[stage][2],
				 want_t[stage][0], want_t[stage][1]);
	return 0;
}

static int child_setup(void *arg)
{
	if (arg == (void *)1) {
		const struct sembuf s[] = {
			{ 0, -3, SEM_UNDO }, { 1, 5, SEM_UNDO }, { 2, -1, 0 },
		};
		const struct sembuf t[] = { { 1, -7, SEM_UNDO } };

		return ops(sem_s, s, 3, "child 1") || ops(sem_t, t, 1, "child 1");
	} else {
		/* Two changes of one semaphore add up to one adjustment of +1. */
		const struct sembuf s[] = { { 0, -2, SEM_UNDO }, { 0, 1, SEM_UNDO } };
		const struct sembuf t[] = { { 0, 6, SEM_UNDO } };

		return ops(sem_s, s, 2, "child 2") || ops(sem_t, t, 1, "child 2");
	}
}

/* The child still holds its adjustments (child 2 checks after child 1 has gone). */
static int child_check(void *arg)
{
	return check_values(arg == (void *)1 ? ST_ALL : ST_NO_C1);
}

static int setup(void)
{
	unsigned short s0[NS] = { 10, 10, 10 }, t0[NT] = { 50, 50 };
	const struct sembuf rs[] = { { 2, 4, SEM_UNDO } }, rt[] = { { 0, -20, SEM_UNDO } };

	sem_s = semget(IPC_PRIVATE, NS, IPC_CREAT | 0600);
	sem_t = semget(IPC_PRIVATE, NT, IPC_CREAT | 0600);
	if (sem_s < 0 || sem_t < 0)
		return zdtm_err("semget");
	if (semctl(sem_s, 0, SETALL, (union semun){ .array = s0 }) ||
	    semctl(sem_t, 0, SETALL, (union semun){ .array = t0 }))
		return zdtm_err("SETALL");
	if (ops(sem_s, rs, 1, "root") || ops(sem_t, rt, 1, "root"))
		return -1;
	for (int k = 0; k < NCHILD; k++) {
		struct zdtm_task t = { .setup = child_setup, .check = child_check,
				       .arg = (void *)(long)(k + 1) };

		kids[k] = zdtm_child(&t);
		if (kids[k] < 0)
			return -1;
	}
	return check_values(ST_ALL);
}

static int check_all(void)
{
	if (sem_s < 0 || sem_t < 0)
		return zdtm_fail("the semaphore sets were never created (ids %d, %d)", sem_s, sem_t);
	if (check_values(ST_ALL))
		return -1;
	for (int k = 0; k < NCHILD; k++) {
		if (zdtm_child_check(kids[k]))
			return -1;
		kids[k] = 0;
		if (check_values(k == 0 ? ST_NO_C1 : ST_NO_C2))
			return -1;
	}
	/* Dropping the last reference to the root's undo list applies it, as exit would. */
	if (unshare(CLONE_SYSVSEM))
		return zdtm_err("unshare(CLONE_SYSVSEM)");
	return check_values(ST_NO_ROOT);
}

static int check(void)
{
	int rc = check_all();

	for (int k = 0; k < NCHILD; k++)
		if (kids[k] > 0)
			zdtm_child_check(kids[k]);
	if (sem_s >= 0 && semctl(sem_s, 0, IPC_RMID) && !rc)
		rc = zdtm_err("IPC_RMID set %d", sem_s);
	if (sem_t >= 0 && semctl(sem_t, 0, IPC_RMID) && !rc)
		rc = zdtm_err("IPC_RMID set %d", sem_t);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
