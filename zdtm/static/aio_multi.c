/* Several AIO contexts of different sizes, each with its own completed but unreaped
 * events, survive C/R apart: every ring keeps its size and nr, holds exactly its own
 * events (tags name the context), and each context still takes new requests. */
#include <fcntl.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"

#define PATH "aio-multi-data"
#define SEED 0xa1f
#define FILE_LEN 65536
#define NCTX 4
#define MAXEV 40
#define CHUNK 512

static const unsigned nr_events[NCTX] = { 1, 64, 700, 2000 };
static const int npending[NCTX] = { 1, 10, 40, 0 };

static aio_context_t ctx[NCTX];
static unsigned ring_nr[NCTX];
static unsigned long ring_size[NCTX];
static int fd = -1;
static struct iocb cbs[NCTX][MAXEV];
static char bufs[NCTX][MAXEV][CHUNK];

/* Request j of context c: a read of CHUNK bytes at an offset unique to (c, j). */
static off_t req_off(int c, int j)
{
	return ((off_t)c * MAXEV + j) * 37 % (FILE_LEN - CHUNK);
}

static void prep(struct iocb *cb, int c, int j)
{
	memset(cb, 0, sizeof(*cb));
	cb->aio_data = ((uint64_t)c << 32) | (uint64_t)j;
	cb->aio_lio_opcode = IOCB_CMD_PREAD;
	cb->aio_fildes = fd;
	cb->aio_buf = (uintptr_t)bufs[c][j];
	cb->aio_nbytes = CHUNK;
	cb->aio_offset = req_off(c, j);
}

static int setup(void)
{
	static char data[FILE_LEN];

	fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return zdtm_err("create %s", PATH);
	zdtm_fill(data, FILE_LEN, SEED, 0);
	if (zdtm_write_all(fd, data, FILE_LEN) != FILE_LEN)
		return zdtm_err("write %s", PATH);
	for (int c = 0; c < NCTX; c++) {
		struct iocb *list[MAXEV];
		struct zdtm_aio_ring *ring;
		unsigned done;
		long n;

		if (zdtm_io_setup(nr_events[c], &ctx[c]))
			return zdtm_err("io_setup(%u)", nr_events[c]);
		ring = zdtm_aio_ring(ctx[c]);
		ring_nr[c] = ring->nr;
		ring_size[c] = zdtm_aio_ring_size(ctx[c]);
		if (!ring_size[c])
			return zdtm_fail("no [aio] mapping at context %d", c);
		for (int j = 0; j < npending[c]; j++) {
			prep(&cbs[c][j], c, j);
			list[j] = &cbs[c][j];
		}
		n = zdtm_io_submit(ctx[c], npending[c], list);
		if (n != npending[c])
			return zdtm_err("context %d: io_submit returned %ld", c, n);
		done = zdtm_aio_wait_pending(ring, npending[c]);
		if (done != (unsigned)npending[c])
			return zdtm_fail("context %d: %u of %d events completed", c, done,
					 npending[c]);
		zdtm_msg("context %d (0x%lx): io_setup(%u) gave %u slots in %lu bytes, %d pending",
			 c, (unsigned long)ctx[c], nr_events[c], ring_nr[c], ring_size[c],
			 npending[c]);
	}
	return 0;
}

static int check_events(int c, const struct io_event *ev, long n, int first)
{
	for (long i = 0; i < n; i++) {
		int j = first + i;
		uint64_t want = ((uint64_t)c << 32) | (uint64_t)j;

		if (ev[i].data != want || ev[i].obj != (uintptr_t)&cbs[c][j])
			return zdtm_fail("context %d event %ld: data 0x%" PRIx64 " iocb 0x%" PRIx64
					 ", expected data 0x%" PRIx64 " iocb %p", c, i,
					 (uint64_t)ev[i].data, (uint64_t)ev[i].obj, want,
					 (void *)&cbs[c][j]);
		if (ev[i].res != CHUNK)
			return zdtm_fail("context %d event %ld: res %" PRId64 ", expected %d", c, i,
					 (int64_t)ev[i].res, CHUNK);
		if (zdtm_verify(bufs[c][j], CHUNK, SEED, req_off(c, j)) >= 0)
			return zdtm_fail("context %d read %d: wrong data", c, j);
	}
	return 0;
}

static int check(void)
{
	struct timespec wait = { 0, 500 * 1000 * 1000 }, zero = { 0, 0 };
	struct io_event ev[MAXEV + 4];

	if (!ctx[0])
		return zdtm_fail("no AIO context was ever set up");
	/* First look at every ring before touching any: events must not have moved. */
	for (int c = 0; c < NCTX; c++) {
		struct zdtm_aio_ring *ring = zdtm_aio_ring(ctx[c]);
		unsigned long size = zdtm_aio_ring_size(ctx[c]);

		if (size != ring_size[c])
			return zdtm_fail("context %d (0x%lx): [aio] mapping of %lu bytes, expected %lu",
					 c, (unsigned long)ctx[c], size, ring_size[c]);
		if (ring->magic != AIO_RING_MAGIC || ring->nr != ring_nr[c])
			return zdtm_fail("context %d: ring magic 0x%x nr %u, expected nr %u", c,
					 ring->magic, ring->nr, ring_nr[c]);
		if (zdtm_aio_pending(ring) != (unsigned)npending[c])
			return zdtm_fail("context %d: ring holds %u events, expected %d", c,
					 zdtm_aio_pending(ring), npending[c]);
	}
	for (int c = 0; c < NCTX; c++) {
		struct iocb *one = &cbs[c][npending[c]];
		long n = zdtm_io_getevents(ctx[c], npending[c], MAXEV + 4, ev, &wait);

		if (n != npending[c])
			return zdtm_fail("context %d: io_getevents returned %ld, expected %d", c, n,
					 npending[c]);
		if (check_events(c, ev, n, 0))
			return -1;
		/* One more request on this context after C/R. */
		prep(one, c, npending[c]);
		if (zdtm_io_submit(ctx[c], 1, &one) != 1)
			return zdtm_err("context %d: io_submit after C/R", c);
		n = zdtm_io_getevents(ctx[c], 1, 4, ev, &wait);
		if (n != 1)
			return zdtm_fail("context %d: %ld events for the new request", c, n);
		if (check_events(c, ev, 1, npending[c]))
			return -1;
		if (zdtm_io_getevents(ctx[c], 0, 4, ev, &zero) != 0)
			return zdtm_fail("context %d: extra events after reaping", c);
	}
	for (int c = 0; c < NCTX; c++)
		if (zdtm_io_destroy(ctx[c]))
			return zdtm_err("io_destroy context %d", c);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
