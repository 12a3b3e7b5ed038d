/* SysV shared memory attached in several tasks survives C/R: segment A is attached by the
 * root and inherited by a child, segment B (keyed, 10000 bytes) twice by the root, read-write
 * and read-only, and inherited, segment C (1 MiB + 4 KiB) only by the child. After C/R sizes,
 * modes, keys and shm_nattch are exact, every attachment is at its address with its data
 * and protection, a write by the root is seen by the child, and nattch drops as the child
 * exits. */
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

enum { SA, SB, SC, NSEG };

static const struct {
	size_t size;
	int mode;
	bool keyed;
	unsigned long nattch, nattch_after;	/* with the child alive, after it exited */
	uint64_t seed;
} segs[NSEG] = {
	{ 8192, 0600, false, 2, 1, 0x5a },
	{ 10000, 0640, true, 4, 2, 0x5b },
	{ (1 << 20) + 4096, 0600, false, 1, 0, 0x5c },
};
#define SEED_A2 0x5d		/* written into A by the root at check */

static int ids[NSEG] = { -1, -1, -1 };
static key_t keys[NSEG];
static char *a1, *b1, *b2;	/* the root's attachments (inherited by the child) */
static char *c1;		/* the child's own attachment of C */
static pid_t child;

/* The maps line starting at addr: a SysV shm mapping of segment seg (the inode is the shm
 * id), with these perms. */
static int check_map(const char *who, const void *addr, int seg, const char *want_perms)
{
	unsigned long want_len = (segs[seg].size + 4095) & ~4095UL, len;
	struct zdtm_vma v;
	int n = zdtm_maps_read(0, (unsigned long)addr, (unsigned long)addr + 1, &v, 1);

	if (n < 0)
		return -1;
	if (n == 0 || v.start != (unsigned long)addr || !strstr(v.path, "/SYSV"))
		return zdtm_fail("%s: no SysV shm mapping at %p (segment %d)", who, addr, ids[seg]);
	len = v.end - v.start;
	if (strcmp(v.perms, want_perms) || v.ino != (unsigned long)ids[seg] || len != want_len)
		return zdtm_fail("%s: mapping at %p is %s inode %lu %lu bytes, expected %s shm id %d "
				 "%lu bytes", who, addr, v.perms, v.ino, len, want_perms, ids[seg],
				 want_len);
	return 0;
}

static int check_data(const char *who, const char *addr, int seg, uint64_t seed)
{
	ssize_t bad = zdtm_verify(addr, segs[seg].size, seed, 0);

	if (bad >= 0)
		return zdtm_fail("%s: segment %d at %p: byte %zd differs", who, ids[seg], addr, bad);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	c1 = shmat(ids[SC], NULL, 0);
	if (c1 == (void *)-1)
		return zdtm_err("child: shmat segment %d", ids[SC]);
	zdtm_fill(c1, segs[SC].size, segs[SC].seed, 0);
	return 0;
}

static int child_check(void *arg)
{
	(void)arg;
	return check_map("child", a1, SA, "rw-s") || check_map("child", b1, SB, "rw-s") ||
	       check_map("child", b2, SB, "r--s") || check_map("child", c1, SC, "rw-s") ||
	       check_data("child", a1, SA, SEED_A2) || check_data("child", b2, SB, segs[SB].seed) ||
	       check_data("child", c1, SC, segs[SC].seed);
}

static int setup(void)
{
	struct zdtm_task t = { .setup = child_setup, .check = child_check };

	for (int i = 0; i < NSEG; i++) {
		keys[i] = segs[i].keyed ? (key_t)(0x53000000 | (getpid() & 0xffffff)) : IPC_PRIVATE;
		ids[i] = shmget(keys[i], segs[i].size, IPC_CREAT | IPC_EXCL | segs[i].mode);
		if (ids[i] < 0)
			return zdtm_err("shmget(0x%x, %zu)", keys[i], segs[i].size);
	}
	a1 = shmat(ids[SA], NULL, 0);
	b1 = shmat(ids[SB], NULL, 0);
	b2 = shmat(ids[SB], NULL, SHM_RDONLY);
	if (a1 == (void *)-1 || b1 == (void *)-1 || b2 == (void *)-1)
		return zdtm_err("shmat");
	zdtm_fill(a1, segs[SA].size, segs[SA].seed, 0);
	zdtm_fill(b1, segs[SB].size, segs[SB].seed, 0);
	child = zdtm_child(&t);
	return child < 0 ? -1 : 0;
}

static int check_stat(int i, bool child_alive)
{
	unsigned long want = child_alive ? segs[i].nattch : segs[i].nattch_after;
	struct shmid_ds ds;

	if (shmctl(ids[i], IPC_STAT, &ds))
		return zdtm_err("IPC_STAT segment %d", ids[i]);
	if (ds.shm_segsz != segs[i].size || (int)(ds.shm_perm.mode & 0777) != segs[i].mode ||
	    ds.shm_perm.__key != keys[i])
		return zdtm_fail("segment %d: %zu bytes mode %03o key 0x%x, expected %zu mode %03o "
				 "key 0x%x", ids[i], (size_t)ds.shm_segsz, ds.shm_perm.mode & 0777,
				 ds.shm_perm.__key, segs[i].size, segs[i].mode, keys[i]);
	if (ds.shm_nattch != want)
		return zdtm_fail("segment %d: shm_nattch %lu %s, expected %lu", ids[i],
				 (unsigned long)ds.shm_nattch,
				 child_alive ? "with the child alive" : "after the child exited", want);
	return 0;
}

static int check_all(void)
{
	if (ids[SA] < 0 || !a1 || child <= 0)
		return zdtm_fail("the segments were never set up (ids %d %d %d, child %d)", ids[SA],
				 ids[SB], ids[SC], child);
	for (int i = 0; i < NSEG; i++)
		if (check_stat(i, true))
			return -1;
	if (check_map("root", a1, SA, "rw-s") || check_map("root", b1, SB, "rw-s") ||
	    check_map("root", b2, SB, "r--s"))
		return -1;
	if (check_data("root", a1, SA, segs[SA].seed) || check_data("root", b1, SB, segs[SB].seed) ||
	    check_data("root", b2, SB, segs[SB].seed))
		return -1;
	/* One segment, two addresses: a write through b1 shows at b2. */
	b1[segs[SB].size - 1] ^= 0xff;
	if (b2[segs[SB].size - 1] != b1[segs[SB].size - 1])
		return zdtm_fail("a write at %p (segment %d) does not show at %p", b1, ids[SB], b2);
	b1[segs[SB].size - 1] ^= 0xff;
	/* A is shared with the child: it must see this. */
	zdtm_fill(a1, segs[SA].size, SEED_A2, 0);
	if (zdtm_child_check(child))
		return -1;
	child = 0;
	for (int i = 0; i < NSEG; i++)
		if (check_stat(i, false))
			return -1;
	return 0;
}

static int check(void)
{
	int rc = check_all();

	if (child > 0)
		zdtm_child_check(child);
	for (int i = 0; i < NSEG; i++)
		if (ids[i] >= 0 && shmctl(ids[i], IPC_RMID, NULL) && !rc)
			rc = zdtm_err("IPC_RMID segment %d", ids[i]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
