/* Big SysV message queues survive C/R: one filled to exactly msg_qbytes with messages of
 * msgmax bytes (a further msgsnd gets EAGAIN after C/R too), one holding 600 small messages
 * of 13 types. Every message comes back with its type, size and contents, in order. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

#include "zdtm.h"

#define NSMALL 600
#define SEED_BIG 0x4e00
#define SEED_SMALL 0x4f00
#define MAXBIG 64

struct msg {
	long mtype;
	char mtext[65536];
};

static int qbig = -1, qsmall = -1;
static long msgmax, qbytes;	/* the limits when the queues were made */
static int nbig;
static size_t big_len[MAXBIG];

static size_t small_len(int i)
{
	return (size_t)(i * 7) % 40 + 1;
}

static long small_type(int i)
{
	return i % 13 + 1;
}

static long read_long(const char *path)
{
	char buf[32];

	return zdtm_read_file(path, buf, sizeof(buf)) < 0 ? -1 : atol(buf);
}

static int setup(void)
{
	static struct msg m;
	struct msqid_ds ds;
	long left;

	msgmax = read_long("/proc/sys/kernel/msgmax");
	qbig = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	qsmall = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (msgmax <= 0 || msgmax > (long)sizeof(m.mtext) || qbig < 0 || qsmall < 0)
		return zdtm_err("msgget (msgmax %ld)", msgmax);
	if (msgctl(qbig, IPC_STAT, &ds))
		return zdtm_err("IPC_STAT");
	qbytes = ds.msg_qbytes;

	/* Fill to exactly qbytes: msgmax-sized messages, the last one shorter. */
	for (left = qbytes; left > 0 && nbig < MAXBIG; nbig++) {
		big_len[nbig] = left < msgmax ? left : msgmax;
		m.mtype = 100 + nbig;
		zdtm_fill(m.mtext, big_len[nbig], SEED_BIG + nbig, 0);
		if (msgsnd(qbig, &m, big_len[nbig], IPC_NOWAIT))
			return zdtm_err("msgsnd big message %d (%zu bytes)", nbig, big_len[nbig]);
		left -= big_len[nbig];
	}
	if (left)
		return zdtm_fail("cannot fill %ld bytes with %d messages", qbytes, MAXBIG);

	for (int i = 0; i < NSMALL; i++) {
		m.mtype = small_type(i);
		zdtm_fill(m.mtext, small_len(i), SEED_SMALL + i, 0);
		if (msgsnd(qsmall, &m, small_len(i), IPC_NOWAIT))
			return zdtm_err("msgsnd small message %d", i);
	}
	return 0;
}

static int check_stat(int q, unsigned long qnum, unsigned long cbytes)
{
	struct msqid_ds ds;

	if (msgctl(q, IPC_STAT, &ds))
		return zdtm_err("IPC_STAT queue %d", q);
	if (ds.msg_qnum != qnum || ds.__msg_cbytes != cbytes || ds.msg_qbytes != (unsigned long)qbytes)
		return zdtm_fail("queue %d: qnum %lu cbytes %lu qbytes %lu; expected %lu %lu %ld", q,
				 (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes,
				 (unsigned long)ds.msg_qbytes, qnum, cbytes, qbytes);
	return 0;
}

static int receive(int q, long msgtyp, long type, size_t len, uint64_t seed, const char *what)
{
	static struct msg m;
	ssize_t n = msgrcv(q, &m, sizeof(m.mtext), msgtyp, IPC_NOWAIT), bad;

	if (n < 0)
		return zdtm_err("%s: msgrcv(msgtyp %ld) on queue %d", what, msgtyp, q);
	if (m.mtype != type || (size_t)n != len)
		return zdtm_fail("%s: type %ld, %zd bytes; expected type %ld, %zu bytes", what,
				 m.mtype, n, type, len);
	bad = zdtm_verify(m.mtext, len, seed, 0);
	if (bad >= 0)
		return zdtm_fail("%s: byte %zd differs", what, bad);
	return 0;
}

static int check_all(void)
{
	unsigned long small_bytes = 0;
	char what[64];
	struct msg one = { .mtype = 1 };

	if (qbig < 0 || qsmall < 0)
		return zdtm_fail("the queues were never created (ids %d, %d)", qbig, qsmall);
	for (int i = 0; i < NSMALL; i++)
		small_bytes += small_len(i);
	if (check_stat(qbig, nbig, qbytes) || check_stat(qsmall, NSMALL, small_bytes))
		return -1;
	if (msgsnd(qbig, &one, 1, IPC_NOWAIT) == 0 || errno != EAGAIN)
		return zdtm_fail("a 1-byte msgsnd into the full queue %d was not refused with EAGAIN",
				 qbig);

	for (int i = 0; i < nbig; i++) {
		snprintf(what, sizeof(what), "big message %d", i);
		if (receive(qbig, 0, 100 + i, big_len[i], SEED_BIG + i, what))
			return -1;
	}
	/* The first of type 13 first, then everything else in order. */
	if (receive(qsmall, 13, small_type(12), small_len(12), SEED_SMALL + 12, "small message 12"))
		return -1;
	for (int i = 0; i < NSMALL; i++) {
		if (i == 12)
			continue;
		snprintf(what, sizeof(what), "small message %d", i);
		if (receive(qsmall, 0, small_type(i), small_len(i), SEED_SMALL + i, what))
			return -1;
	}
	return check_stat(qbig, 0, 0) || check_stat(qsmall, 0, 0);
}

static int check(void)
{
	int rc = check_all();

	if (qbig >= 0 && msgctl(qbig, IPC_RMID, NULL) && !rc)
		rc = zdtm_err("IPC_RMID queue %d", qbig);
	if (qsmall >= 0 && msgctl(qsmall, IPC_RMID, NULL) && !rc)
		rc = zdtm_err("IPC_RMID queue %d", qsmall);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
