/* SysV shm segments nobody has attached, and one already removed, survive C/R: a keyed
 * segment filled and detached (nattch 0) keeps its key, size, mode and data; a segment
 * never attached stays all zeroes; a segment marked IPC_RMID while still attached keeps its
 * data and SHM_DEST, its key is gone, and it vanishes when the last attachment goes. */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "zdtm.h"

enum { D_DETACHED, D_UNTOUCHED, D_REMOVED, ND };

static const struct {
	size_t size;
	int mode;
	bool keyed;
	uint64_t seed;		/* 0: never written */
} segs[ND] = {
	{ 20000, 0604, true, 0xd1 },
	{ 5000, 0600, false, 0 },
	{ 3 * 4096, 0660, true, 0xd3 },
};

static int ids[ND] = { -1, -1, -1 };
static key_t keys[ND];
static char *removed_at;	/* the attachment of D_REMOVED */

static int setup(void)
{
	char *p;

	for (int i = 0; i < ND; i++) {
		keys[i] = segs[i].keyed ? (key_t)((0x54000000 + (i << 24)) | (getpid() & 0xffffff)) :
					  IPC_PRIVATE;
		ids[i] = shmget(keys[i], segs[i].size, IPC_CREAT | IPC_EXCL | segs[i].mode);
		if (ids[i] < 0)
			return zdtm_err("shmget(0x%x, %zu)", keys[i], segs[i].size);
	}
	p = shmat(ids[D_DETACHED], NULL, 0);
	if (p == (void *)-1)
		return zdtm_err("shmat");
	zdtm_fill(p, segs[D_DETACHED].size, segs[D_DETACHED].seed, 0);
	if (shmdt(p))
		return zdtm_err("shmdt");

	removed_at = shmat(ids[D_REMOVED], NULL, 0);
	if (removed_at == (void *)-1)
		return zdtm_err("shmat");
	zdtm_fill(removed_at, segs[D_REMOVED].size, segs[D_REMOVED].seed, 0);
	if (shmctl(ids[D_REMOVED], IPC_RMID, NULL))
		return zdtm_err("IPC_RMID while attached");
	return 0;
}

static int check_stat(int i, key_t key, unsigned long nattch, bool dest)
{
	struct shmid_ds ds;

	if (shmctl(ids[i], IPC_STAT, &ds))
		return zdtm_err("IPC_STAT segment %d", ids[i]);
	if (ds.shm_segsz != segs[i].size || (int)(ds.shm_perm.mode & 0777) != segs[i].mode ||
	    ds.shm_perm.__key != key || ds.shm_nattch != nattch ||
	    !!(ds.shm_perm.mode & SHM_DEST) != dest)
		return zdtm_fail("segment %d: %zu bytes mode %04o key 0x%x nattch %lu; expected %zu "
				 "mode %s%03o key 0x%x nattch %lu", ids[i], (size_t)ds.shm_segsz,
				 ds.shm_perm.mode & 07777, ds.shm_perm.__key,
				 (unsigned long)ds.shm_nattch, segs[i].size, dest ? "SHM_DEST|" : "",
				 segs[i].mode, key, nattch);
	return 0;
}

/* Attach segment i now and check its contents. */
static int check_contents(int i)
{
	char *p = shmat(ids[i], NULL, SHM_RDONLY);
	ssize_t bad = -1;

	if (p == (void *)-1)
		return zdtm_err("shmat segment %d", ids[i]);
	if (segs[i].seed) {
		bad = zdtm_verify(p, segs[i].size, segs[i].seed, 0);
	} else {
		for (size_t k = 0; k < segs[i].size && bad < 0; k++)
			if (p[k])
				bad = k;
	}
	shmdt(p);
	if (bad >= 0)
		return zdtm_fail("segment %d: byte %zd differs", ids[i], bad);
	return 0;
}

static int check_all(void)
{
	struct shmid_ds ds;
	ssize_t bad;
	int id;

	if (ids[D_DETACHED] < 0 || !removed_at)
		return zdtm_fail("the segments were never set up (ids %d %d %d)", ids[0], ids[1],
				 ids[2]);
	for (int i = D_DETACHED; i <= D_UNTOUCHED; i++)
		if (check_stat(i, keys[i], 0, false) || check_contents(i))
			return -1;
	id = shmget(keys[D_DETACHED], 0, 0);
	if (id != ids[D_DETACHED])
		return zdtm_fail("shmget(key 0x%x) finds %d, expected %d", keys[D_DETACHED], id,
				 ids[D_DETACHED]);
	/* Back to nattch 0 after the checks' own attachments. */
	if (check_stat(D_DETACHED, keys[D_DETACHED], 0, false))
		return -1;

	if (check_stat(D_REMOVED, IPC_PRIVATE, 1, true))
		return -1;
	id = shmget(keys[D_REMOVED], 0, 0);
	if (id >= 0 || errno != ENOENT)
		return zdtm_fail("shmget(key 0x%x) of the removed segment gives %d (%s), expected "
				 "ENOENT", keys[D_REMOVED], id, id >= 0 ? "found" : strerror(errno));
	bad = zdtm_verify(removed_at, segs[D_REMOVED].size, segs[D_REMOVED].seed, 0);
	if (bad >= 0)
		return zdtm_fail("removed segment %d at %p: byte %zd differs", ids[D_REMOVED],
				 removed_at, bad);
	if (shmdt(removed_at))
		return zdtm_err("shmdt %p", removed_at);
	removed_at = NULL;
	if (shmctl(ids[D_REMOVED], IPC_STAT, &ds) == 0 || (errno != EINVAL && errno != EIDRM))
		return zdtm_fail("segment %d still exists after its last detach", ids[D_REMOVED]);
	ids[D_REMOVED] = -1;
	return 0;
}

static int check(void)
{
	int rc = check_all();

	if (removed_at)
		shmdt(removed_at);
	for (int i = 0; i < ND; i++)
		if (ids[i] >= 0 && shmctl(ids[i], IPC_RMID, NULL) && !rc && i != D_REMOVED)
			rc = zdtm_err("IPC_RMID segment %d", ids[i]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
