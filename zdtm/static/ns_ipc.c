/* A private IPC namespace survives C/R with its objects and settings. Child H unshares
 * an IPC namespace, sets its IPC sysctls (msgmax, msgmnb, shmmax, sem), and creates a
 * 64 KiB shared memory segment (attached by H and by H's child G), a set of five
 * semaphores and a message queue holding six messages of three types. H checks the
 * sysctls, the objects' attributes and contents (messages in per-type FIFO order), and
 * that G still shares the segment (G writes, H sees it); the root checks that the
 * objects are not visible in its own namespace and that H's namespace is not its own. */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SHM_SIZE 65536
#define SEED 0x1bc
#define NSEMS 5
#define NMSG 6
#define MSG_MAX 4000

static const unsigned short sem_vals[NSEMS] = { 0, 1, 7, 100, 32767 };
static const long msg_types[NMSG] = { 1, 2, 3, 2, 1, 2 };

static const struct {
	const char *path, *value;
} sysctls[] = {
	{ "/proc/sys/kernel/msgmax", "4000" },
	{ "/proc/sys/kernel/msgmnb", "30000" },
	{ "/proc/sys/kernel/shmmax", "33554432" },
	{ "/proc/sys/kernel/sem", "200\t20000\t40\t64" },
};

struct msg {
	long mtype;
	char mtext[MSG_MAX];
};

static key_t key;		/* same value for all three objects, in H's namespace only */
static int shm_id = -1, sem_id = -1, msg_id = -1;
static uint8_t *shm;		/* H's and G's attachment */
static pid_t holder, g_pid;

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

static size_t msg_len(int i)
{
	return 100 + i * 700;	/* 100 .. 3600 bytes, all below msgmax */
}

static int write_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || zdtm_write_all(fd, value, strlen(value)) < 0 || close(fd))
		return zdtm_err("H: write %s", path);
	return 0;
}

static int g_setup(void *arg)
{
	(void)arg;
	return 0;	/* inherits H's attachment of the segment */
}

static int g_check(void *arg)
{
	ssize_t bad;

	(void)arg;
	bad = zdtm_verify(shm, SHM_SIZE - 8, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("G: shared segment differs at byte %zd", bad);
	memcpy(shm + SHM_SIZE - 8, "G-was-in", 8);	/* H looks for this */
	return 0;
}

static int h_setup(void *arg)
{
	static const struct zdtm_task g = { .setup = g_setup, .check = g_check };
	unsigned short vals[NSEMS];
	union semun su = { .array = vals };
	static struct msg m;

	(void)arg;
	if (unshare(CLONE_NEWIPC))
		return zdtm_err("H: unshare(CLONE_NEWIPC)");
	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++)
		if (write_sysctl(sysctls[i].path, sysctls[i].value))
			return -1;

	shm_id = shmget(key, SHM_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	if (shm_id < 0)
		return zdtm_err("H: shmget");
	shm = shmat(shm_id, NULL, 0);
	if (shm == (void *)-1)
		return zdtm_err("H: shmat");
	zdtm_fill(shm, SHM_SIZE, SEED, 0);

	sem_id = semget(key, NSEMS, IPC_CREAT | IPC_EXCL | 0600);
	if (sem_id < 0)
		return zdtm_err("H: semget");
	memcpy(vals, sem_vals, sizeof(vals));
	if (semctl(sem_id, 0, SETALL, su))
		return zdtm_err("H: semctl SETALL");

	msg_id = msgget(key, IPC_CREAT | IPC_EXCL | 0620);
	if (msg_id < 0)
		return zdtm_err("H: msgget");
	for (int i = 0; i < NMSG; i++) {
		m.mtype = msg_types[i];
		zdtm_fill(m.mtext, msg_len(i), SEED + 1, i * 10000);
		if (msgsnd(msg_id, &m, msg_len(i), IPC_NOWAIT))
			return zdtm_err("H: msgsnd %d (%zu bytes)", i, msg_len(i));
	}
	g_pid = zdtm_child(&g);
	return g_pid > 0 ? 0 : -1;
}

static int h_check_sysctls(void)
{
	char buf[128];

	for (size_t i = 0; i < sizeof(sysctls) / sizeof(sysctls[0]); i++) {
		if (zdtm_read_file(sysctls[i].path, buf, sizeof(buf)) < 0)
			return zdtm_err("H: read %s", sysctls[i].path);
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, sysctls[i].value))
			return zdtm_fail("H: %s is '%s', expected '%s'", sysctls[i].path, buf,
					 sysctls[i].value);
	}
	return 0;
}

static int h_check_msgs(void)
{
	static const int order[NMSG] = { 1, 3, 5, 0, 2, 4 };	/* type 2 first, then the rest */
	struct msqid_ds ds;
	static struct msg m;
	size_t bytes = 0;

	for (int i = 0; i < NMSG; i++)
		bytes += msg_len(i);
	if (msgctl(msg_id, IPC_STAT, &ds))
		return zdtm_err("H: msgctl IPC_STAT");
	if (ds.msg_qnum != NMSG || ds.__msg_cbytes != bytes || (ds.msg_perm.mode & 0777) != 0620 ||
	    ds.msg_perm.__key != key)
		return zdtm_fail("H: queue has %lu messages, %lu bytes, mode %o, key %#x; expected "
				 "%d, %zu, 620, %#x", (unsigned long)ds.msg_qnum,
				 (unsigned long)ds.__msg_cbytes, ds.msg_perm.mode & 0777,
				 ds.msg_perm.__key, NMSG, bytes, key);
	for (int k = 0; k < NMSG; k++) {
		int i = order[k];
		ssize_t n = msgrcv(msg_id, &m, MSG_MAX, k < 3 ? 2 : 0, IPC_NOWAIT);

		if (n < 0)
			return zdtm_err("H: msgrcv #%d", k);
		if (m.mtype != msg_types[i] || (size_t)n != msg_len(i))
			return zdtm_fail("H: receive #%d gave type %ld, %zd bytes; expected message %d "
					 "(type %ld, %zu bytes)", k, m.mtype, n, i, msg_types[i],
					 msg_len(i));
		if (zdtm_verify(m.mtext, n, SEED + 1, i * 10000) >= 0)
			return zdtm_fail("H: message %d has wrong contents", i);
	}
	return 0;
}

static int h_check(void *arg)
{
	unsigned short vals[NSEMS];
	union semun su = { .array = vals };
	struct semid_ds sds;
	struct shmid_ds ds;
	ssize_t bad;
	int rc = 0;

	(void)arg;
	if (h_check_sysctls())
		rc = -1;
	if (shmctl(shm_id, IPC_STAT, &ds))
		return zdtm_err("H: shmctl IPC_STAT %d", shm_id);
	if (ds.shm_segsz != SHM_SIZE || ds.shm_nattch != 2 || (ds.shm_perm.mode & 0777) != 0640 ||
	    ds.shm_perm.__key != key || ds.shm_cpid != getpid())
		rc = zdtm_fail("H: segment has size %zu, %lu attaches, mode %o, key %#x, creator %d; "
			       "expected %d, 2, 640, %#x, %d", ds.shm_segsz,
			       (unsigned long)ds.shm_nattch, ds.shm_perm.mode & 0777,
			       ds.shm_perm.__key, ds.shm_cpid, SHM_SIZE, key, getpid());
	bad = zdtm_verify(shm, SHM_SIZE, SEED, 0);
	if (bad >= 0)
		rc = zdtm_fail("H: shared segment differs at byte %zd", bad);

	su.buf = &sds;
	if (semctl(sem_id, 0, IPC_STAT, su))
		return zdtm_err("H: semctl IPC_STAT");
	if (sds.sem_nsems != NSEMS || (sds.sem_perm.mode & 0777) != 0600)
		rc = zdtm_fail("H: semaphore set has %lu semaphores, mode %o",
			       (unsigned long)sds.sem_nsems, sds.sem_perm.mode & 0777);
	su.array = vals;
	if (semctl(sem_id, 0, GETALL, su))
		return zdtm_err("H: semctl GETALL");
	for (int i = 0; i < NSEMS; i++)
		if (vals[i] != sem_vals[i])
			rc = zdtm_fail("H: semaphore %d is %u, expected %u", i, vals[i], sem_vals[i]);
	if (h_check_msgs())
		rc = -1;

	if (zdtm_child_check(g_pid))
		rc = -1;
	else if (memcmp(shm + SHM_SIZE - 8, "G-was-in", 8))
		rc = zdtm_fail("H: G's write to the segment is not visible: not shared any more");

	shmdt(shm);
	shmctl(shm_id, IPC_RMID, NULL);
	semctl(sem_id, 0, IPC_RMID);
	msgctl(msg_id, IPC_RMID, NULL);
	return rc;
}

static int setup(void)
{
	static const struct zdtm_task h = { .setup = h_setup, .check = h_check };

	key = 0x2a000000 | (getpid() & 0xffffff);
	holder = zdtm_child(&h);
	return holder > 0 ? 0 : -1;
}

static int check(void)
{
	char path[64];
	struct stat me, h;
	int rc = 0;

	if (holder <= 0)
		return zdtm_fail("no IPC namespace holder: setup did not run");
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", holder);
	if (stat("/proc/self/ns/ipc", &me) || stat(path, &h))
		rc = zdtm_err("stat ns/ipc");
	else if (me.st_ino == h.st_ino)
		rc = zdtm_fail("holder %d shares the root's IPC namespace", holder);
	if (shmget(key, 0, 0) >= 0 || semget(key, 0, 0) >= 0 || msgget(key, 0) >= 0)
		rc = zdtm_fail("key %#x is visible in the root's IPC namespace", key);
	if (zdtm_child_check(holder))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
