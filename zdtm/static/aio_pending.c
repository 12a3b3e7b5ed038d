/* Completed AIO events that were never reaped survive C/R: reads, a vectored read and
 * writes on a file, submitted in two batches, completed before C/R and left in the ring.
 * After C/R the ring holds exactly them, and io_getevents returns each, in completion
 * order, with its iocb, tag and result; the read buffers hold the file's data and the
 * writes are in the file. */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"

#define PATH "aio-pending-data"
#define SEED 0xa1d
#define WSEED 0xa1e
#define FILE_LEN 65536
#define NR_EVENTS 32
#define N 9

static const struct {
	int op;			/* IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PREADV */
	off_t off;
	size_t len;
} reqs[N] = {
	{ IOCB_CMD_PREAD, 0, 4096 },
	{ IOCB_CMD_PREAD, 100, 1000 },
	{ IOCB_CMD_PWRITE, FILE_LEN, 3000 },
	{ IOCB_CMD_PREAD, 60000, 5536 },
	{ IOCB_CMD_PREADV, 8192, 12288 },	/* two iovecs: 4096 + 8192 */
	/* second batch */
	{ IOCB_CMD_PWRITE, FILE_LEN + 10000, 1 },
	{ IOCB_CMD_PREAD, 12345, 7 },
	{ IOCB_CMD_PREAD, FILE_LEN - 10, 10 },
	{ IOCB_CMD_PWRITE, 20000, 2048 },	/* overwrites part of the original data */
};
#define BATCH1 5

static aio_context_t ctx;
static int fd = -1;
static struct iocb cbs[N];
static char bufs[N][12288];
static struct iovec iov[2];

static int setup(void)
{
	static char data[FILE_LEN];
	struct iocb *list[N];
	unsigned done;
	long n;

	fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return zdtm_err("create %s", PATH);
	zdtm_fill(data, FILE_LEN, SEED, 0);
	if (zdtm_write_all(fd, data, FILE_LEN) != FILE_LEN)
		return zdtm_err("write %s", PATH);
	if (zdtm_io_setup(NR_EVENTS, &ctx))
		return zdtm_err("io_setup");

	for (int i = 0; i < N; i++) {
		struct iocb *cb = &cbs[i];

		cb->aio_data = 0xa10000 + i;
		cb->aio_lio_opcode = reqs[i].op;
		cb->aio_fildes = fd;
		cb->aio_offset = reqs[i].off;
		cb->aio_buf = (uintptr_t)bufs[i];
		cb->aio_nbytes = reqs[i].len;
		if (reqs[i].op == IOCB_CMD_PWRITE)
			zdtm_fill(bufs[i], reqs[i].len, WSEED, reqs[i].off);
		if (reqs[i].op == IOCB_CMD_PREADV) {
			iov[0] = (struct iovec){ bufs[i], 4096 };
			iov[1] = (struct iovec){ bufs[i] + 4096, reqs[i].len - 4096 };
			cb->aio_buf = (uintptr_t)iov;
			cb->aio_nbytes = 2;
		}
		list[i] = cb;
	}
	n = zdtm_io_submit(ctx, BATCH1, list);
	if (n != BATCH1)
		return zdtm_err("io_submit of the first batch returned %ld", n);
	n = zdtm_io_submit(ctx, N - BATCH1, list + BATCH1);
	if (n != N - BATCH1)
		return zdtm_err("io_submit of the second batch returned %ld", n);

	done = zdtm_aio_wait_pending(zdtm_aio_ring(ctx), N);
	if (done != N)
		return zdtm_fail("%u of %d events completed", done, N);
	return 0;
}

static int check(void)
{
	struct io_event ev[N + 4];
	struct timespec wait = { 0, 500 * 1000 * 1000 }, zero = { 0, 0 };
	struct zdtm_aio_ring *ring;
	char back[4096];
	long n;

	if (!ctx)
		return zdtm_fail("no AIO context was ever set up");
	ring = zdtm_aio_ring(ctx);
	if (ring->magic != AIO_RING_MAGIC)
		return zdtm_fail("no AIO ring at context 0x%lx (magic 0x%x)", (unsigned long)ctx,
				 ring->magic);
	if (zdtm_aio_pending(ring) != N)
		return zdtm_fail("the ring holds %u events (head %u tail %u nr %u), expected %d",
				 zdtm_aio_pending(ring), ring->head, ring->tail, ring->nr, N);
	n = zdtm_io_getevents(ctx, N, N + 4, ev, &wait);
	if (n != N)
		return zdtm_fail("io_getevents returned %ld events, expected %d", n, N);
	for (int i = 0; i < N; i++) {
		size_t want = reqs[i].len;

		if (ev[i].obj != (uintptr_t)&cbs[i] || ev[i].data != cbs[i].aio_data)
			return zdtm_fail("event %d: iocb 0x%" PRIx64 " data 0x%" PRIx64 ", expected "
					 "iocb %p data 0x%" PRIx64, i, (uint64_t)ev[i].obj,
					 (uint64_t)ev[i].data, (void *)&cbs[i],
					 (uint64_t)cbs[i].aio_data);
		if (ev[i].res != (int64_t)want || ev[i].res2 != 0)
			return zdtm_fail("event %d (op %d, %zu bytes at %lld): res %" PRId64 " res2 %"
					 PRId64, i, reqs[i].op, want, (long long)reqs[i].off,
					 (int64_t)ev[i].res, (int64_t)ev[i].res2);
		if (reqs[i].op != IOCB_CMD_PWRITE &&
		    zdtm_verify(bufs[i], want, SEED, reqs[i].off) >= 0)
			return zdtm_fail("read %d (%zu bytes at %lld): wrong data in its buffer", i,
					 want, (long long)reqs[i].off);
		if (reqs[i].op == IOCB_CMD_PWRITE) {
			size_t len = want < sizeof(back) ? want : sizeof(back);

			if (pread(fd, back, len, reqs[i].off) != (ssize_t)len ||
			    zdtm_verify(back, len, WSEED, reqs[i].off) >= 0)
				return zdtm_fail("write %d (%zu bytes at %lld) is not in %s", i, want,
						 (long long)reqs[i].off, PATH);
		}
	}
	if (zdtm_aio_pending(ring) != 0)
		return zdtm_fail("the ring still holds %u events after reaping",
				 zdtm_aio_pending(ring));
	n = zdtm_io_getevents(ctx, 0, 4, ev, &zero);
	if (n != 0)
		return zdtm_fail("io_getevents returned %ld more events", n);
	if (zdtm_io_destroy(ctx))
		return zdtm_err("io_destroy");
	ctx = 0;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
