/* A file appended to during C/R: each step appends one sequence-numbered, checksummed
 * record of varying length through an O_APPEND descriptor, and a second, read-only
 * descriptor follows a few records behind, checking each record it reads. When the file
 * passes 1 MiB the reader catches up and the file is truncated to start over. The check
 * compares the file's size, inode and both descriptors' offsets and flags with what the
 * loop did, re-reads the whole file from offset 0, and lets the reader finish. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define NAME "tr_file_append.dat"
#define SEED 0xa99e
#define MAGIC 0x52454344u
#define MAX_PAYLOAD 1040
#define ROTATE (1 << 20)
#define MIN_STEPS 3

struct rec {
	uint32_t magic;
	uint32_t seq;
	uint32_t len;	/* payload bytes */
	uint32_t crc;	/* of the payload */
	uint8_t payload[MAX_PAYLOAD];
};
#define HDR offsetof(struct rec, payload)

static int wfd = -1, rfd = -1;
static ino_t ino;
static unsigned long steps, rotations;
static uint32_t seq;		/* next record to append */
static uint32_t first_seq;	/* first record in the file since the last truncation */
static uint64_t size;		/* the file's size */
static uint64_t woff;		/* the writer's offset: the size after its last append */
static uint32_t rseq;		/* next record the reader reads */
static uint64_t rpos;		/* the reader's offset */

static uint32_t payload_len(uint32_t s)
{
	return 16 + (s * 37u) % (MAX_PAYLOAD - 16);
}

static void make(struct rec *r, uint32_t s)
{
	r->magic = MAGIC;
	r->seq = s;
	r->len = payload_len(s);
	zdtm_fill(r->payload, r->len, SEED, (uint64_t)s * 4096);
	r->crc = zdtm_crc32(r->payload, r->len);
}

/* Check record r, read at offset off, is record number s. */
static int verify(const struct rec *r, uint32_t s, uint64_t off, const char *how)
{
	ssize_t bad;

	if (r->magic != MAGIC || r->seq != s || r->len != payload_len(s))
		return zdtm_fail("%s: at offset %llu found record magic %08x #%u len %u, "
				 "expected #%u len %u", how, (unsigned long long)off, r->magic,
				 r->seq, r->len, s, payload_len(s));
	if (zdtm_crc32(r->payload, r->len) != r->crc)
		return zdtm_fail("%s: record #%u at offset %llu fails its crc", how, s,
				 (unsigned long long)off);
	bad = zdtm_verify(r->payload, r->len, SEED, (uint64_t)s * 4096);
	if (bad >= 0)
		return zdtm_fail("%s: record #%u at offset %llu: payload byte %zd differs", how, s,
				 (unsigned long long)off, bad);
	return 0;
}

/* The reader reads the next record through rfd, at its own offset. */
static int read_next(void)
{
	struct rec r;
	ssize_t n;

	n = zdtm_read_all(rfd, &r, HDR);
	if (n != (ssize_t)HDR)
		return zdtm_err("reader: header of record #%u at offset %llu: got %zd of %zu bytes",
				rseq, (unsigned long long)rpos, n, HDR);
	if (r.len > MAX_PAYLOAD)
		return zdtm_fail("reader: record at offset %llu claims %u payload bytes",
				 (unsigned long long)rpos, r.len);
	n = zdtm_read_all(rfd, r.payload, r.len);
	if (n != (ssize_t)r.len)
		return zdtm_err("reader: payload of record #%u at offset %llu: got %zd of %u bytes",
				rseq, (unsigned long long)rpos, n, r.len);
	if (verify(&r, rseq, rpos, "reader"))
		return -1;
	rseq++;
	rpos += HDR + r.len;
	return 0;
}

static int build(void)
{
	struct stat st;

	wfd = open(NAME, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (wfd < 0)
		return zdtm_err("create %s", NAME);
	rfd = open(NAME, O_RDONLY);
	if (rfd < 0)
		return zdtm_err("open %s for reading", NAME);
	if (fstat(wfd, &st))
		return zdtm_err("fstat %s", NAME);
	ino = st.st_ino;
	return 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 200000 };
	unsigned lag = steps % 4;	/* records the reader leaves unread */
	struct rec r;
	ssize_t n;

	make(&r, seq);
	n = write(wfd, &r, HDR + r.len);
	if (n != (ssize_t)(HDR + r.len))
		return zdtm_err("append of record #%u (%zd of %zu bytes)", seq, n, HDR + r.len);
	seq++;
	size += n;
	woff = size;

	if (size >= ROTATE)
		lag = 0;
	while (seq - rseq > lag)
		if (read_next())
			return -1;
	if (size >= ROTATE) {
		if (ftruncate(wfd, 0))
			return zdtm_err("truncate %s", NAME);
		if (lseek(rfd, 0, SEEK_SET))
			return zdtm_err("rewind the reader");
		size = rpos = 0;
		first_seq = seq;
		rotations++;
	}
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	struct stat st, pst;
	uint64_t off;
	int fl;
	char c;

	if (wfd < 0 || rfd < 0)
		return zdtm_fail("setup never ran: no open file (fds %d/%d)", wfd, rfd);
	if (steps < MIN_STEPS)
		return zdtm_fail("the append loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (fstat(wfd, &st))
		return zdtm_err("fstat writer fd %d", wfd);
	if (stat(NAME, &pst))
		return zdtm_err("stat %s", NAME);
	if (st.st_ino != ino || pst.st_ino != ino)
		return zdtm_fail("inode of %s is %lu (path) / %lu (fd), expected %lu", NAME,
				 (unsigned long)pst.st_ino, (unsigned long)st.st_ino,
				 (unsigned long)ino);
	if ((uint64_t)st.st_size != size)
		return zdtm_fail("%s is %lld bytes, expected %llu (records #%u..#%u)", NAME,
				 (long long)st.st_size, (unsigned long long)size, first_seq,
				 seq - 1);
	fl = fcntl(wfd, F_GETFL);
	if (fl < 0 || !(fl & O_APPEND) || (fl & O_ACCMODE) != O_WRONLY)
		return zdtm_fail("writer fd %d has flags %#x, expected O_WRONLY|O_APPEND", wfd, fl);
	fl = fcntl(rfd, F_GETFL);
	if (fl < 0 || (fl & O_APPEND) || (fl & O_ACCMODE) != O_RDONLY)
		return zdtm_fail("reader fd %d has flags %#x, expected O_RDONLY", rfd, fl);
	off = lseek(wfd, 0, SEEK_CUR);
	if (off != woff)
		return zdtm_fail("writer fd %d is at offset %lld, expected %llu", wfd,
				 (long long)off, (unsigned long long)woff);
	off = lseek(rfd, 0, SEEK_CUR);
	if (off != rpos)
		return zdtm_fail("reader fd %d is at offset %lld, expected %llu", rfd,
				 (long long)off, (unsigned long long)rpos);

	/* The whole file, read afresh. */
	off = 0;
	for (uint32_t s = first_seq; s < seq; s++) {
		struct rec r;

		if (pread(rfd, &r, HDR, off) != (ssize_t)HDR || r.len > MAX_PAYLOAD ||
		    pread(rfd, r.payload, r.len, off + HDR) != (ssize_t)r.len)
			return zdtm_fail("record #%u at offset %llu is cut short (file %llu bytes)",
					 s, (unsigned long long)off, (unsigned long long)size);
		if (verify(&r, s, off, "re-read"))
			return -1;
		off += HDR + r.len;
	}
	if (off != size)
		return zdtm_fail("records #%u..#%u end at %llu, the file has %llu bytes",
				 first_seq, seq - 1, (unsigned long long)off,
				 (unsigned long long)size);

	/* The reader finishes where the writer stopped. */
	while (rseq < seq)
		if (read_next())
			return -1;
	if (read(rfd, &c, 1) != 0)
		return zdtm_fail("reader fd %d: data past record #%u at offset %llu", rfd, seq - 1,
				 (unsigned long long)rpos);
	zdtm_msg("%lu steps, %u records appended, %lu truncations", steps, seq, rotations);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
