/* Many SysV semaphores survive C/R: one set of --nsems (4000) semaphores and --nsets (200)
 * small sets of 3, each with its own values and mode. After C/R every id holds its set
 * with the right size, mode and every value. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <unistd.h>

#include "zdtm.h"

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static int big = -1;
static int *small;
static int nsems, nsets;

static unsigned short big_val(int i)
{
	return (unsigned short)((i * 7919L) % 32768);
}

static unsigned short small_val(int set, int k)
{
	return (unsigned short)((set * 3 + k * 1000 + 1) % 32768);
}

static int small_mode(int set)
{
	return set % 2 ? 0640 : 0600;
}

static int setup(void)
{
	unsigned short *v;

	nsems = zdtm_opt_long("nsems", 4000);
	nsets = zdtm_opt_long("nsets", 200);
	v = calloc(nsems > 3 ? nsems : 3, sizeof(*v));
	small = calloc(nsets, sizeof(*small));
	if (!v || !small)
		return zdtm_err("calloc");
	big = semget(IPC_PRIVATE, nsems, IPC_CREAT | 0600);
	if (big < 0)
		return zdtm_err("semget of %d semaphores", nsems);
	for (int i = 0; i < nsems; i++)
		v[i] = big_val(i);
	if (semctl(big, 0, SETALL, (union semun){ .array = v }))
		return zdtm_err("SETALL");
	for (int s = 0; s < nsets; s++)
		small[s] = -1;
	for (int s = 0; s < nsets; s++) {
		small[s] = semget(IPC_PRIVATE, 3, IPC_CREAT | small_mode(s));
		if (small[s] < 0)
			return zdtm_err("semget small set %d", s);
		for (int k = 0; k < 3; k++)
			v[k] = small_val(s, k);
		if (semctl(small[s], 0, SETALL, (union semun){ .array = v }))
			return zdtm_err("SETALL small set %d", s);
	}
	free(v);
	return 0;
}

static int check_set(int id, int n, int mode, const char *what)
{
	struct semid_ds ds;

	if (semctl(id, 0, IPC_STAT, (union semun){ .buf = &ds }))
		return zdtm_err("%s: IPC_STAT id %d", what, id);
	if (ds.sem_nsems != (unsigned long)n || (int)(ds.sem_perm.mode & 0777) != mode)
		return zdtm_fail("%s: id %d has %lu semaphores mode %03o, expected %d mode %03o", what,
				 id, (unsigned long)ds.sem_nsems, ds.sem_perm.mode & 0777, n, mode);
	return 0;
}

static int check_all(void)
{
	unsigned short *got;
	char what[32];

	if (big < 0 || !small)
		return zdtm_fail("the semaphore sets were never created");
	got = calloc(nsems, sizeof(*got));
	if (!got)
		return zdtm_err("calloc");
	if (check_set(big, nsems, 0600, "big set"))
		return -1;
	if (semctl(big, 0, GETALL, (union semun){ .array = got }))
		return zdtm_err("GETALL big set %d", big);
	for (int i = 0; i < nsems; i++)
		if (got[i] != big_val(i))
			return zdtm_fail("big set %d: semaphore %d is %u, expected %u", big, i, got[i],
					 big_val(i));
	for (int s = 0; s < nsets; s++) {
		snprintf(what, sizeof(what), "small set %d", s);
		if (check_set(small[s], 3, small_mode(s), what))
			return -1;
		if (semctl(small[s], 0, GETALL, (union semun){ .array = got }))
			return zdtm_err("GETALL %s", what);
		for (int k = 0; k < 3; k++)
			if (got[k] != small_val(s, k))
				return zdtm_fail("%s (id %d): semaphore %d is %u, expected %u", what,
						 small[s], k, got[k], small_val(s, k));
	}
	free(got);
	return 0;
}

static int check(void)
{
	int rc = check_all();

	if (big >= 0 && semctl(big, 0, IPC_RMID) && !rc)
		rc = zdtm_err("IPC_RMID set %d", big);
	for (int s = 0; small && s < nsets; s++)
		if (small[s] >= 0 && semctl(small[s], 0, IPC_RMID) && !rc)
			rc = zdtm_err("IPC_RMID set %d", small[s]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
