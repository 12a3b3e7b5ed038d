/* SysV message queues survive C/R with their messages: a keyed queue (lowered msg_qbytes)
 * holding eight messages of five types and sizes 0..2048, and an empty private queue.
 * After C/R IPC_STAT is exact (qnum, cbytes, qbytes, mode, key), and receiving by type (a
 * type, the lowest type up to N, MSG_EXCEPT, then in order) yields each message with its
 * type and contents in the right order; a too-small buffer gets E2BIG and leaves it. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#include "zdtm.h"

#define NMSG 8
#define MAXLEN 2048
#define QBYTES 8000
#define SEED 0x4d00

static const struct {
	long type;
	size_t len;
} msgs[NMSG] = {
	{ 2, 17 }, { 1, 1 }, { 3, 300 }, { 2, 64 }, { 5, 0 }, { 1, 1000 }, { 3, 8 }, { 4, 2048 },
};

/* Receive steps: msgtyp and flags, and which message must come. */
static const struct {
	long msgtyp;
	int flags;
	int want;
} steps[NMSG] = {
	{ 3, 0, 2 },		/* the first of type 3 */
	{ -2, 0, 1 },		/* the first of the lowest type <= 2: type 1 */
	{ 2, MSG_EXCEPT, 4 },	/* the first whose type is not 2 */
	{ 0, 0, 0 }, { 0, 0, 3 }, { 0, 0, 5 }, { 0, 0, 6 }, { 0, 0, 7 },
};

struct msg {
	long mtype;
	char mtext[MAXLEN];
};

static int q1 = -1, q2 = -1;
static key_t key1;
static long msgmnb;

static int setup(void)
{
	static struct msg m;
	struct msqid_ds ds;
	char buf[32];

	if (zdtm_read_file("/proc/sys/kernel/msgmnb", buf, sizeof(buf)) < 0)
		return zdtm_err("read msgmnb");
	msgmnb = atol(buf);
	key1 = (key_t)(0x4d000000 | (getpid() & 0xffffff));
	q1 = msgget(key1, IPC_CREAT | IPC_EXCL | 0620);
	q2 = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (q1 < 0 || q2 < 0)
		return zdtm_err("msgget");
	if (msgctl(q1, IPC_STAT, &ds))
		return zdtm_err("IPC_STAT");
	ds.msg_qbytes = QBYTES;
	if (msgctl(q1, IPC_SET, &ds))
		return zdtm_err("IPC_SET msg_qbytes %d", QBYTES);
	for (int i = 0; i < NMSG; i++) {
		m.mtype = msgs[i].type;
		zdtm_fill(m.mtext, msgs[i].len, SEED + i, 0);
		if (msgsnd(q1, &m, msgs[i].len, IPC_NOWAIT))
			return zdtm_err("msgsnd message %d", i);
	}
	return 0;
}

static int check_stat(int q, key_t key, int mode, unsigned long qnum, unsigned long cbytes,
		      unsigned long qbytes)
{
	struct msqid_ds ds;

	if (msgctl(q, IPC_STAT, &ds))
		return zdtm_err("IPC_STAT queue %d", q);
	if (ds.msg_qnum != qnum || ds.__msg_cbytes != cbytes || ds.msg_qbytes != qbytes ||
	    (int)(ds.msg_perm.mode & 0777) != mode || ds.msg_perm.__key != key)
		return zdtm_fail("queue %d: qnum %lu cbytes %lu qbytes %lu mode %03o key 0x%x; "
				 "expected %lu %lu %lu %03o 0x%x", q, (unsigned long)ds.msg_qnum,
				 (unsigned long)ds.__msg_cbytes, (unsigned long)ds.msg_qbytes,
				 ds.msg_perm.mode & 0777, ds.msg_perm.__key, qnum, cbytes, qbytes,
				 mode, key);
	return 0;
}

static int check_all(void)
{
	static struct msg m;
	unsigned long total = 0;
	ssize_t n;
	int id;

	if (q1 < 0 || q2 < 0)
		return zdtm_fail("the queues were never created (ids %d, %d)", q1, q2);
	for (int i = 0; i < NMSG; i++)
		total += msgs[i].len;
	if (check_stat(q1, key1, 0620, NMSG, total, QBYTES) ||
	    check_stat(q2, IPC_PRIVATE, 0600, 0, 0, msgmnb))
		return -1;
	id = msgget(key1, 0);
	if (id != q1)
		return zdtm_fail("msgget(key 0x%x) finds %d, expected %d", key1, id, q1);

	/* The 2048-byte message does not fit 100 bytes: E2BIG, and it stays queued. */
	n = msgrcv(q1, &m, 100, 4, IPC_NOWAIT);
	if (n >= 0 || errno != E2BIG)
		return zdtm_fail("msgrcv(type 4) into 100 bytes gave %zd (%s), expected E2BIG", n,
				 n >= 0 ? "a message" : strerror(errno));

	for (int s = 0; s < NMSG; s++) {
		int w = steps[s].want;
		ssize_t bad;

		n = msgrcv(q1, &m, MAXLEN, steps[s].msgtyp, steps[s].flags | IPC_NOWAIT);
		if (n < 0)
			return zdtm_err("step %d: msgrcv(msgtyp %ld%s) found nothing, expected message "
					"%d", s, steps[s].msgtyp,
					steps[s].flags ? ", MSG_EXCEPT" : "", w);
		if (m.mtype != msgs[w].type || (size_t)n != msgs[w].len)
			return zdtm_fail("step %d: msgrcv(msgtyp %ld%s) gave type %ld, %zd bytes; "
					 "expected message %d: type %ld, %zu bytes", s,
					 steps[s].msgtyp, steps[s].flags ? ", MSG_EXCEPT" : "",
					 m.mtype, n, w, msgs[w].type, msgs[w].len);
		bad = zdtm_verify(m.mtext, n, SEED + w, 0);
		if (bad >= 0)
			return zdtm_fail("message %d: byte %zd differs", w, bad);
	}
	n = msgrcv(q1, &m, MAXLEN, 0, IPC_NOWAIT);
	if (n >= 0 || errno != ENOMSG)
		return zdtm_fail("an extra message came out of queue %d", q1);
	return check_stat(q1, key1, 0620, 0, 0, QBYTES);
}

static int check(void)
{
	int rc = check_all();

	if (q1 >= 0 && msgctl(q1, IPC_RMID, NULL) && !rc)
		rc = zdtm_err("IPC_RMID queue %d", q1);
	if (q2 >= 0 && msgctl(q2, IPC_RMID, NULL) && !rc)
		rc = zdtm_err("IPC_RMID queue %d", q2);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
