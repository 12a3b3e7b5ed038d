/* POSIX message queues survive C/R with names, attributes, descriptors and messages: queue
 * A (maxmsg 7, msgsize 300, mode 0640) open twice, O_RDWR|O_NONBLOCK and O_RDONLY, holding
 * six messages of four priorities; queue B (maxmsg 3, msgsize 8192) empty, open O_WRONLY.
 * After C/R mq_getattr and the fds' access modes are exact, the names lead to the same
 * queues, and the messages come out by priority, FIFO within one, with their contents. */
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NMSG 6
#define SEED 0x3100

static const struct {
	unsigned prio;
	size_t len;
} msgs[NMSG] = {
	{ 0, 10 }, { 5, 300 }, { 5, 1 }, { 9, 120 }, { 1, 0 }, { 5, 77 },
};
static const int order[NMSG] = { 3, 1, 2, 5, 4, 0 };	/* priority, then FIFO */

static char name_a[64], name_b[64];
static mqd_t a_nb = -1, a_rd = -1, b_wr = -1;

static int check_attr(mqd_t q, const char *what, long flags, long maxmsg, long msgsize,
		      long curmsgs, int accmode, mode_t mode)
{
	struct mq_attr at;
	struct stat st;
	int fl;

	if (mq_getattr(q, &at))
		return zdtm_err("%s: mq_getattr on fd %d", what, q);
	if (at.mq_flags != flags || at.mq_maxmsg != maxmsg || at.mq_msgsize != msgsize ||
	    at.mq_curmsgs != curmsgs)
		return zdtm_fail("%s (fd %d): flags 0x%lx maxmsg %ld msgsize %ld curmsgs %ld; "
				 "expected 0x%lx %ld %ld %ld", what, q, at.mq_flags, at.mq_maxmsg,
				 at.mq_msgsize, at.mq_curmsgs, flags, maxmsg, msgsize, curmsgs);
	fl = fcntl(q, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != accmode)
		return zdtm_fail("%s (fd %d): access mode %d, expected %d", what, q,
				 fl < 0 ? -1 : fl & O_ACCMODE, accmode);
	if (fstat(q, &st) || (st.st_mode & 0777) != mode)
		return zdtm_fail("%s (fd %d): mode %03o, expected %03o", what, q,
				 (unsigned)st.st_mode & 0777, (unsigned)mode);
	return 0;
}

static int setup(void)
{
	struct mq_attr aa = { .mq_maxmsg = 7, .mq_msgsize = 300 };
	struct mq_attr ab = { .mq_maxmsg = 3, .mq_msgsize = 8192 };
	char buf[300];

	snprintf(name_a, sizeof(name_a), "/zdtm_ipc_mq_%d_a", getpid());
	snprintf(name_b, sizeof(name_b), "/zdtm_ipc_mq_%d_b", getpid());
	a_nb = mq_open(name_a, O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK, 0640, &aa);
	if (a_nb < 0)
		return zdtm_err("mq_open %s", name_a);
	a_rd = mq_open(name_a, O_RDONLY);
	b_wr = mq_open(name_b, O_WRONLY | O_CREAT | O_EXCL, 0600, &ab);
	if (a_rd < 0 || b_wr < 0)
		return zdtm_err("mq_open");
	for (int i = 0; i < NMSG; i++) {
		zdtm_fill(buf, msgs[i].len, SEED + i, 0);
		if (mq_send(a_nb, buf, msgs[i].len, msgs[i].prio))
			return zdtm_err("mq_send message %d", i);
	}
	return 0;
}

static int check_all(void)
{
	char buf[8192];
	unsigned prio;
	ssize_t n, bad;
	mqd_t again;

	if (a_nb < 0 || a_rd < 0 || b_wr < 0)
		return zdtm_fail("the queues were never opened (fds %d %d %d)", a_nb, a_rd, b_wr);
	if (check_attr(a_nb, "A non-blocking", O_NONBLOCK, 7, 300, NMSG, O_RDWR, 0640) ||
	    check_attr(a_rd, "A read-only", 0, 7, 300, NMSG, O_RDONLY, 0640) ||
	    check_attr(b_wr, "B write-only", 0, 3, 8192, 0, O_WRONLY, 0600))
		return -1;

	/* The names still lead to the same queues. */
	again = mq_open(name_a, O_RDONLY | O_NONBLOCK);
	if (again < 0)
		return zdtm_err("mq_open %s after C/R", name_a);
	if (check_attr(again, "A opened again", O_NONBLOCK, 7, 300, NMSG, O_RDONLY, 0640))
		return -1;
	mq_close(again);
	again = mq_open(name_b, O_RDONLY | O_CREAT | O_EXCL, 0600, NULL);
	if (again >= 0 || errno != EEXIST) {
		if (again >= 0)
			mq_close(again);
		return zdtm_fail("%s is gone: O_CREAT|O_EXCL did not give EEXIST", name_b);
	}

	for (int k = 0; k < NMSG; k++) {
		int i = order[k];

		/* The first half through the blocking fd (messages are there), the rest not. */
		n = mq_receive(k < NMSG / 2 ? a_rd : a_nb, buf, sizeof(buf), &prio);
		if (n < 0)
			return zdtm_err("receive %d: nothing, expected message %d", k, i);
		if ((size_t)n != msgs[i].len || prio != msgs[i].prio)
			return zdtm_fail("receive %d: %zd bytes priority %u, expected message %d: %zu "
					 "bytes priority %u", k, n, prio, i, msgs[i].len,
					 msgs[i].prio);
		bad = zdtm_verify(buf, n, SEED + i, 0);
		if (bad >= 0)
			return zdtm_fail("message %d: byte %zd differs", i, bad);
	}
	n = mq_receive(a_nb, buf, sizeof(buf), &prio);
	if (n >= 0 || errno != EAGAIN)
		return zdtm_fail("the emptied queue gave %zd (%s), expected EAGAIN", n,
				 n >= 0 ? "a message" : strerror(errno));
	return 0;
}

static int check(void)
{
	int rc = check_all();

	/* The names outlive the process: unlink them, pass or fail. */
	if (name_a[0] && mq_unlink(name_a) && !rc)
		rc = zdtm_err("mq_unlink %s", name_a);
	if (name_b[0] && mq_unlink(name_b) && !rc)
		rc = zdtm_err("mq_unlink %s", name_b);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
