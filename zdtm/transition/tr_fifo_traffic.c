/* Data flowing through a named FIFO during C/R, from two writers at once: the parent and
 * a child each opened the FIFO for writing on their own and write sequence-numbered,
 * checksummed records of 32..512 bytes (each write atomic, below PIPE_BUF); the parent
 * reads through a third open file description and checks that the records never mix and
 * that each writer's sequence is contiguous. At check, once the child stopped, the parent
 * drains the FIFO and each writer's count must match exactly. */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define NAME "tr_fifo_traffic.fifo"
#define MAGIC 0x46494630u
#define MIN_REC 32
#define MAX_REC 512
#define MIN_STEPS 3
#define RBUF 65536

struct hdr {
	uint32_t magic;
	uint32_t writer;	/* 0 parent, 1 child */
	uint32_t seq;
	uint32_t len;		/* the whole record */
	uint32_t crc;		/* of the payload */
};

struct shared {
	uint32_t child_sent;
};

static int rfd = -1, wfd = -1;
static ino_t ino;
static pid_t child;
static struct shared *sh;
static unsigned long steps;
static uint32_t parent_sent, got[2];
static char rbuf[RBUF + MAX_REC];
static size_t carry;		/* bytes of an unfinished record at the start of rbuf */

static uint32_t rec_len(uint32_t writer, uint32_t seq)
{
	return MIN_REC + (seq * 40503u + writer * 977u) % (MAX_REC - MIN_REC + 1);
}

/* Write this writer's next record if there is room: 1 written, 0 full, -1 failure. */
static int put(int fd, uint32_t writer, uint32_t seq)
{
	char buf[MAX_REC];
	struct hdr *h = (struct hdr *)buf;
	uint32_t len = rec_len(writer, seq);
	ssize_t n;

	zdtm_fill(buf + sizeof(*h), len - sizeof(*h), MAGIC ^ writer, (uint64_t)seq << 10);
	*h = (struct hdr){ MAGIC, writer, seq, len,
			   zdtm_crc32(buf + sizeof(*h), len - sizeof(*h)) };
	n = write(fd, buf, len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n != (ssize_t)len)
		return zdtm_err("writer %u: write of record #%u (%zd of %u bytes)", writer, seq, n,
				len);
	return 1;
}

/* Read what is in the FIFO and check every whole record: bytes read or -1. */
static ssize_t drain_some(void)
{
	ssize_t n = read(rfd, rbuf + carry, RBUF);
	size_t off = 0;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0)
		return zdtm_err("read from %s", NAME);
	if (n == 0)
		return zdtm_fail("%s hit EOF: no writer is left", NAME);
	carry += n;
	while (carry - off >= sizeof(struct hdr)) {
		struct hdr *h = (struct hdr *)(rbuf + off);
		ssize_t bad;

		if (h->magic != MAGIC || h->writer > 1 || h->len != rec_len(h->writer, h->seq))
			return zdtm_fail("garbage in %s: magic %08x writer %u seq %u len %u "
					 "(records mixed?)", NAME, h->magic, h->writer, h->seq,
					 h->len);
		if (carry - off < h->len)
			break;
		if (h->seq != got[h->writer])
			return zdtm_fail("writer %u: got record #%u, expected #%u (lost or "
					 "duplicated)", h->writer, h->seq, got[h->writer]);
		if (zdtm_crc32(rbuf + off + sizeof(*h), h->len - sizeof(*h)) != h->crc)
			return zdtm_fail("writer %u: record #%u fails its crc", h->writer, h->seq);
		bad = zdtm_verify(rbuf + off + sizeof(*h), h->len - sizeof(*h),
				  MAGIC ^ h->writer, (uint64_t)h->seq << 10);
		if (bad >= 0)
			return zdtm_fail("writer %u: record #%u payload byte %zd differs",
					 h->writer, h->seq, bad);
		got[h->writer]++;
		off += h->len;
	}
	memmove(rbuf, rbuf + off, carry - off);
	carry -= off;
	return n;
}

/* --- the child: the second writer ------------------------------------------------------ */

static int child_fd = -1;

static int child_setup(void *arg)
{
	(void)arg;
	close(rfd);
	close(wfd);
	rfd = wfd = -1;
	child_fd = open(NAME, O_WRONLY | O_NONBLOCK);
	if (child_fd < 0)
		return zdtm_err("child: open %s for writing", NAME);
	return 0;
}

static int child_step(void *arg)
{
	struct timespec ts = { 0, 300000 };
	int r;

	(void)arg;
	r = put(child_fd, 1, sh->child_sent);
	if (r < 0)
		return -1;
	if (r)
		__atomic_add_fetch(&sh->child_sent, 1, __ATOMIC_SEQ_CST);
	nanosleep(&ts, NULL);
	return 0;
}

/* --- the parent: a writer and the reader ------------------------------------------------ */

static int build(void)
{
	static const struct zdtm_task task = { .setup = child_setup, .step = child_step };
	struct stat st;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared page");
	if (mkfifo(NAME, 0600))
		return zdtm_err("mkfifo %s", NAME);
	rfd = open(NAME, O_RDONLY | O_NONBLOCK);
	if (rfd < 0)
		return zdtm_err("open %s for reading", NAME);
	wfd = open(NAME, O_WRONLY | O_NONBLOCK);
	if (wfd < 0)
		return zdtm_err("open %s for writing", NAME);
	if (fstat(rfd, &st))
		return zdtm_err("fstat %s", NAME);
	ino = st.st_ino;
	child = zdtm_child(&task);
	return child < 0 ? -1 : 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 200000 };
	int r = put(wfd, 0, parent_sent);

	if (r < 0)
		return -1;
	parent_sent += r;
	if (drain_some() < 0)
		return -1;
	steps++;
	nanosleep(&pause, NULL);
	return 0;
}

/* Records of both writers were read already. */
static bool both_read(void)
{
	return got[0] && got[1];
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, both_read);
}

static int check_state(void)
{
	struct stat st, pst;
	ssize_t n;

	if (rfd < 0 || wfd < 0 || child <= 0 || !sh)
		return zdtm_fail("setup never ran: no FIFO and writer (fds %d/%d, child %d)", rfd,
				 wfd, child);
	if (steps < MIN_STEPS)
		return zdtm_fail("the FIFO loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (fstat(rfd, &st))
		return zdtm_err("fstat reader fd %d", rfd);
	if (!S_ISFIFO(st.st_mode))
		return zdtm_fail("reader fd %d is not a FIFO (mode %o)", rfd, st.st_mode);
	if (stat(NAME, &pst))
		return zdtm_err("stat %s", NAME);
	if (pst.st_ino != ino || st.st_ino != ino)
		return zdtm_fail("%s has inode %lu, the reader fd %lu, expected %lu", NAME,
				 (unsigned long)pst.st_ino, (unsigned long)st.st_ino,
				 (unsigned long)ino);
	if (zdtm_child_stop(&child))
		return -1;
	/* Nobody writes now: whatever is left is in the FIFO already. */
	while ((n = drain_some()) > 0)
		;
	if (n < 0)
		return -1;
	if (carry)
		return zdtm_fail("%zu bytes of a cut record left in %s", carry, NAME);
	if (got[0] != parent_sent || got[1] != sh->child_sent)
		return zdtm_fail("read %u + %u records, the parent wrote %u and the child %u",
				 got[0], got[1], parent_sent, sh->child_sent);
	if (!got[0] || !got[1])
		return zdtm_fail("a writer wrote nothing (%u + %u records)", got[0], got[1]);
	zdtm_msg("%lu steps: %u records from the parent, %u from the child", steps, got[0],
		 got[1]);
	return 0;
}

static int check(void)
{
	return zdtm_child_guard(check_state, &child);
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
