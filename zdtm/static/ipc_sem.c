/* SysV semaphore sets survive C/R with their ids, keys, modes, sizes and values: three sets
 * (1, 5 and 20 semaphores; one with a key, two private), values set by SETALL, SETVAL and
 * semop. After C/R IPC_STAT, GETALL and semget by key give exactly what was built. */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include "zdtm.h"

#define NSETS 3
#define MAXSEM 20

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static const struct {
	int nsems;
	int mode;
	bool keyed;
} sets[NSETS] = {
	{ 1, 0600, false },
	{ 5, 0640, true },
	{ 20, 0666, false },
};

static int ids[NSETS] = { -1, -1, -1 };
static key_t keys[NSETS];

/* The values set i must hold. */
static void expected(int i, unsigned short *v)
{
	static const unsigned short five[5] = { 0, 1, 32767, 100, 5 };

	for (int k = 0; k < sets[i].nsems; k++)
		v[k] = i == 0 ? 7 : i == 1 ? five[k] : (unsigned short)(k * k + 3 + (k == 3 ? 10 : 0));
}

static int setup(void)
{
	unsigned short v[MAXSEM];
	struct sembuf op = { .sem_num = 3, .sem_op = 10, .sem_flg = 0 };

	for (int i = 0; i < NSETS; i++) {
		keys[i] = sets[i].keyed ? (key_t)(0x5e000000 | (getpid() & 0xffffff)) : IPC_PRIVATE;
		ids[i] = semget(keys[i], sets[i].nsems, IPC_CREAT | IPC_EXCL | sets[i].mode);
		if (ids[i] < 0)
			return zdtm_err("semget(0x%x, %d)", keys[i], sets[i].nsems);
		expected(i, v);
		if (i == 2)
			v[3] -= 10;	/* the last 10 come from a semop below */
		if (i == 0) {
			if (semctl(ids[i], 0, SETVAL, (union semun){ .val = v[0] }))
				return zdtm_err("SETVAL");
		} else if (semctl(ids[i], 0, SETALL, (union semun){ .array = v })) {
			return zdtm_err("SETALL on set %d", ids[i]);
		}
	}
	if (semop(ids[2], &op, 1))
		return zdtm_err("semop");
	return 0;
}

static int check_set(int i)
{
	unsigned short got[MAXSEM], want[MAXSEM];
	struct semid_ds ds;

	if (ids[i] < 0)
		return zdtm_fail("semaphore set %d was never created", i);
	if (semctl(ids[i], 0, IPC_STAT, (union semun){ .buf = &ds }))
		return zdtm_err("IPC_STAT on semaphore set id %d", ids[i]);
	if (ds.sem_nsems != (unsigned long)sets[i].nsems ||
	    (int)(ds.sem_perm.mode & 0777) != sets[i].mode ||
	    ds.sem_perm.__key != keys[i] || ds.sem_perm.uid != getuid() ||
	    ds.sem_perm.cuid != getuid())
		return zdtm_fail("set id %d: %lu semaphores mode %03o key 0x%x uid %d cuid %d; "
				 "expected %d mode %03o key 0x%x uid %d", ids[i],
				 (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777,
				 ds.sem_perm.__key, ds.sem_perm.uid, ds.sem_perm.cuid,
				 sets[i].nsems, sets[i].mode, keys[i], getuid());
	if (semctl(ids[i], 0, GETALL, (union semun){ .array = got }))
		return zdtm_err("GETALL on set id %d", ids[i]);
	expected(i, want);
	for (int k = 0; k < sets[i].nsems; k++) {
		if (got[k] != want[k])
			return zdtm_fail("set id %d semaphore %d is %u, expected %u", ids[i], k,
					 got[k], want[k]);
		if (semctl(ids[i], k, GETNCNT) != 0 || semctl(ids[i], k, GETZCNT) != 0)
			return zdtm_fail("set id %d semaphore %d has waiters", ids[i], k);
	}
	if (sets[i].keyed) {
		int id = semget(keys[i], 0, 0);

		if (id != ids[i])
			return zdtm_fail("semget(key 0x%x) finds id %d, expected %d", keys[i], id,
					 ids[i]);
	}
	return 0;
}

static int check(void)
{
	int rc = 0;

	for (int i = 0; i < NSETS && !rc; i++)
		rc = check_set(i);
	/* These outlive the process: remove them, pass or fail. */
	for (int i = 0; i < NSETS; i++)
		if (ids[i] >= 0 && semctl(ids[i], 0, IPC_RMID) && !rc)
			rc = zdtm_err("IPC_RMID semaphore set id %d", ids[i]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
