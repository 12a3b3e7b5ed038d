/* An io_uring instance with completions not yet reaped survives C/R: the rings stay mapped
 * with the same sizes, masks, heads and tails (as the mapped memory and the ring fd's
 * fdinfo tell), the CQ holds the four completions (a NOP, a read, a write and a read of a
 * bad fd) with their user_data and results, the read buffer holds the file's data, and the
 * instance takes a new submission after C/R. Raw syscalls, no liburing. */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif

#define PATH "uring-data"
#define SEED 0x1ce
#define WSEED 0x1cf
#define FILE_LEN 16384
#define ENTRIES 8
#define NREQ 4

static int ring_fd = -1;
static struct io_uring_params params;
static void *ring_map, *sqe_map;
static size_t ring_len, sqe_len;
static int data_fd = -1;
static char rbuf[4096], wbuf[4096];

/* Pointers into the rings, from params.sq_off / params.cq_off. */
static unsigned *sq_head, *sq_tail, *sq_mask, *sq_entries, *sq_array;
static unsigned *cq_head, *cq_tail, *cq_mask, *cq_entries;
static struct io_uring_cqe *cqes;
static struct io_uring_sqe *sqes;

static const struct {
	__u8 op;
	__u64 user_data;
	int res;		/* expected result */
} reqs[NREQ] = {
	{ IORING_OP_NOP, 0xc0ffee01, 0 },
	{ IORING_OP_READ, 0xc0ffee02, sizeof(rbuf) },
	{ IORING_OP_WRITE, 0xc0ffee03, sizeof(wbuf) },
	{ IORING_OP_READ, 0xc0ffee04, -EBADF },	/* on fd -1 */
};

static int uring_enter(unsigned submit, unsigned wait)
{
	return (int)syscall(__NR_io_uring_enter, ring_fd, submit, wait,
			    wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
}

static void map_pointers(void)
{
	char *r = ring_map;

	sq_head = (unsigned *)(r + params.sq_off.head);
	sq_tail = (unsigned *)(r + params.sq_off.tail);
	sq_mask = (unsigned *)(r + params.sq_off.ring_mask);
	sq_entries = (unsigned *)(r + params.sq_off.ring_entries);
	sq_array = (unsigned *)(r + params.sq_off.array);
	cq_head = (unsigned *)(r + params.cq_off.head);
	cq_tail = (unsigned *)(r + params.cq_off.tail);
	cq_mask = (unsigned *)(r + params.cq_off.ring_mask);
	cq_entries = (unsigned *)(r + params.cq_off.ring_entries);
	cqes = (struct io_uring_cqe *)(r + params.cq_off.cqes);
	sqes = sqe_map;
}

static void queue(__u8 op, __u64 user_data, int fd, void *buf, unsigned len, __u64 off)
{
	unsigned tail = __atomic_load_n(sq_tail, __ATOMIC_RELAXED);
	unsigned idx = tail & *sq_mask;
	struct io_uring_sqe *sqe = &sqes[idx];

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = op;
	sqe->fd = fd;
	sqe->addr = (uintptr_t)buf;
	sqe->len = len;
	sqe->off = off;
	sqe->user_data = user_data;
	sq_array[idx] = idx;
	__atomic_store_n(sq_tail, tail + 1, __ATOMIC_RELEASE);
}

static int setup(void)
{
	static char data[FILE_LEN];
	size_t sq_len, cq_len;
	int n;

	data_fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (data_fd < 0)
		return zdtm_err("create %s", PATH);
	zdtm_fill(data, FILE_LEN, SEED, 0);
	if (zdtm_write_all(data_fd, data, FILE_LEN) != FILE_LEN)
		return zdtm_err("write %s", PATH);

	ring_fd = (int)syscall(__NR_io_uring_setup, ENTRIES, &params);
	if (ring_fd < 0)
		return zdtm_err("io_uring_setup(%d)", ENTRIES);
	if (!(params.features & IORING_FEAT_SINGLE_MMAP))
		return zdtm_fail("io_uring without IORING_FEAT_SINGLE_MMAP (features 0x%x)",
				 params.features);
	sq_len = params.sq_off.array + params.sq_entries * sizeof(unsigned);
	cq_len = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
	ring_len = sq_len > cq_len ? sq_len : cq_len;
	ring_map = mmap(NULL, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			ring_fd, IORING_OFF_SQ_RING);
	sqe_len = params.sq_entries * sizeof(struct io_uring_sqe);
	sqe_map = mmap(NULL, sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring_fd,
		       IORING_OFF_SQES);
	if (ring_map == MAP_FAILED || sqe_map == MAP_FAILED)
		return zdtm_err("mmap the rings");
	map_pointers();

	zdtm_fill(wbuf, sizeof(wbuf), WSEED, 0);
	queue(reqs[0].op, reqs[0].user_data, -1, NULL, 0, 0);
	queue(reqs[1].op, reqs[1].user_data, data_fd, rbuf, sizeof(rbuf), 4096);
	queue(reqs[2].op, reqs[2].user_data, data_fd, wbuf, sizeof(wbuf), FILE_LEN);
	queue(reqs[3].op, reqs[3].user_data, -1, rbuf, sizeof(rbuf), 0);
	n = uring_enter(NREQ, NREQ);
	if (n != NREQ)
		return zdtm_err("io_uring_enter submitted %d of %d", n, NREQ);
	if (*cq_tail - *cq_head != NREQ)
		return zdtm_fail("%u completions after waiting for %d", *cq_tail - *cq_head, NREQ);
	zdtm_msg("ring fd %d: sq %u entries, cq %u entries, %d completions left unreaped",
		 ring_fd, params.sq_entries, params.cq_entries, NREQ);
	return 0;
}

/* A numeric field of the ring fd's fdinfo, or -1. */
static long fdinfo_field(const char *buf, const char *name)
{
	char key[32];
	const char *p;

	snprintf(key, sizeof(key), "\n%s:", name);
	p = strstr(buf, key);
	return p ? strtol(p + strlen(key), NULL, 0) : -1;
}

static int check_fdinfo(unsigned cqh, unsigned cqt)
{
	char path[64], buf[8192];
	const struct {
		const char *name;
		long want;
	} f[] = {
		{ "SqMask", params.sq_entries - 1 }, { "SqHead", NREQ }, { "SqTail", NREQ },
		{ "CachedSqHead", NREQ }, { "CqMask", params.cq_entries - 1 },
		{ "CqHead", cqh }, { "CqTail", cqt },
	};

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ring_fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		long v = fdinfo_field(buf, f[i].name);

		/* CachedSqHead is a newer field: older kernels do not show it. */
		if (v == -1 && !strcmp(f[i].name, "CachedSqHead"))
			continue;
		if (v != f[i].want)
			return zdtm_fail("ring fd %d fdinfo %s: %ld, expected %ld", ring_fd, f[i].name,
					 v, f[i].want);
	}
	return 0;
}

static int check(void)
{
	char back[sizeof(wbuf)];
	unsigned head, tail, seen = 0;
	int n;

	if (ring_fd < 0 || !ring_map)
		return zdtm_fail("no io_uring instance was ever set up (fd %d)", ring_fd);
	if (fcntl(ring_fd, F_GETFD) < 0)
		return zdtm_err("ring fd %d is not open", ring_fd);
	if (*sq_entries != params.sq_entries || *cq_entries != params.cq_entries ||
	    *sq_mask != params.sq_entries - 1 || *cq_mask != params.cq_entries - 1)
		return zdtm_fail("ring sizes sq %u/%#x cq %u/%#x, expected sq %u cq %u",
				 *sq_entries, *sq_mask, *cq_entries, *cq_mask, params.sq_entries,
				 params.cq_entries);
	head = __atomic_load_n(cq_head, __ATOMIC_ACQUIRE);
	tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
	if (*sq_head != NREQ || *sq_tail != NREQ || head != 0 || tail != NREQ)
		return zdtm_fail("sq head %u tail %u, cq head %u tail %u; expected %d %d 0 %d",
				 *sq_head, *sq_tail, head, tail, NREQ, NREQ, NREQ);
	if (check_fdinfo(0, NREQ))
		return -1;
	/* Completion order is not submission order (the write may go through io-wq):
	 * match each CQE to its request by user_data, each exactly once. */
	for (int i = 0; i < NREQ; i++) {
		struct io_uring_cqe *c = &cqes[(head + i) & *cq_mask];
		int k;

		for (k = 0; k < NREQ; k++)
			if (c->user_data == reqs[k].user_data && !(seen & (1u << k)))
				break;
		if (k == NREQ)
			return zdtm_fail("cqe %d: user_data 0x%" PRIx64 " res %d is no pending request",
					 i, (uint64_t)c->user_data, c->res);
		seen |= 1u << k;
		if (c->res != reqs[k].res || c->flags)
			return zdtm_fail("cqe for 0x%" PRIx64 ": res %d flags 0x%x, expected res %d "
					 "flags 0", (uint64_t)c->user_data, c->res, c->flags,
					 reqs[k].res);
	}
	if (zdtm_verify(rbuf, sizeof(rbuf), SEED, 4096) >= 0)
		return zdtm_fail("the io_uring read left wrong data in its buffer");
	if (pread(data_fd, back, sizeof(back), FILE_LEN) != (ssize_t)sizeof(back) ||
	    zdtm_verify(back, sizeof(back), WSEED, 0) >= 0)
		return zdtm_fail("the io_uring write is not in %s", PATH);

	/* Reap, then one more submission after C/R. */
	__atomic_store_n(cq_head, tail, __ATOMIC_RELEASE);
	queue(IORING_OP_NOP, 0xc0ffee05, -1, NULL, 0, 0);
	n = uring_enter(1, 1);
	if (n != 1)
		return zdtm_err("io_uring_enter after C/R returned %d", n);
	tail = __atomic_load_n(cq_tail, __ATOMIC_ACQUIRE);
	if (tail != NREQ + 1 || cqes[NREQ & *cq_mask].user_data != 0xc0ffee05 ||
	    cqes[NREQ & *cq_mask].res != 0)
		return zdtm_fail("after a new NOP: cq tail %u, cqe user_data 0x%" PRIx64 " res %d",
				 tail, (uint64_t)cqes[NREQ & *cq_mask].user_data,
				 cqes[NREQ & *cq_mask].res);
	__atomic_store_n(cq_head, tail, __ATOMIC_RELEASE);
	munmap(sqe_map, sqe_len);
	munmap(ring_map, ring_len);
	close(ring_fd);
	ring_fd = -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
