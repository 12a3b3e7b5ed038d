/* An AIO context with no events survives C/R: its ring is mapped at the context id with
 * the same size and header (magic, nr, head == tail), io_getevents finds nothing, and
 * the context still works: a read and a write submitted after C/R complete with the right
 * results and data. */
#include <fcntl.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "aio.h"

#define NR_EVENTS 128
#define PATH "aio-ring-data"
#define SEED 0xa10
#define LEN 8192

static aio_context_t ctx;
static unsigned ring_nr;
static unsigned long ring_size;
static int fd = -1;

static int setup(void)
{
	static char buf[LEN];
	struct zdtm_aio_ring *ring;

	fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return zdtm_err("create %s", PATH);
	zdtm_fill(buf, LEN, SEED, 0);
	if (zdtm_write_all(fd, buf, LEN) != LEN)
		return zdtm_err("write %s", PATH);
	if (zdtm_io_setup(NR_EVENTS, &ctx))
		return zdtm_err("io_setup(%d)", NR_EVENTS);
	ring = zdtm_aio_ring(ctx);
	ring_nr = ring->nr;
	ring_size = zdtm_aio_ring_size(ctx);
	if (!ring_size)
		return zdtm_fail("no [aio] mapping at context 0x%lx", (unsigned long)ctx);
	if (ring->magic != AIO_RING_MAGIC || ring->head != ring->tail)
		return zdtm_fail("fresh ring: magic 0x%x head %u tail %u", ring->magic, ring->head,
				 ring->tail);
	zdtm_msg("context 0x%lx: ring of %u events, %lu bytes", (unsigned long)ctx, ring_nr,
		 ring_size);
	return 0;
}

static int check(void)
{
	static char rbuf[LEN], wbuf[LEN / 2], back[LEN / 2];
	struct io_event ev[4];
	struct timespec zero = { 0, 0 }, wait = { 1, 0 };
	struct iocb rd = { 0 }, wr = { 0 }, *list[2] = { &rd, &wr };
	struct zdtm_aio_ring *ring;
	unsigned long size;
	long n;

	if (!ctx)
		return zdtm_fail("no AIO context was ever set up");
	size = zdtm_aio_ring_size(ctx);
	if (size != ring_size)
		return zdtm_fail("the [aio] mapping at context 0x%lx is %lu bytes, expected %lu",
				 (unsigned long)ctx, size, ring_size);
	ring = zdtm_aio_ring(ctx);
	if (ring->magic != AIO_RING_MAGIC || ring->nr != ring_nr || ring->head != ring->tail ||
	    ring->incompat_features != 0 || ring->header_length != sizeof(*ring))
		return zdtm_fail("ring header: magic 0x%x nr %u head %u tail %u incompat %u hdr %u; "
				 "expected magic 0x%x nr %u head == tail incompat 0 hdr %zu",
				 ring->magic, ring->nr, ring->head, ring->tail,
				 ring->incompat_features, ring->header_length, AIO_RING_MAGIC,
				 ring_nr, sizeof(*ring));
	n = zdtm_io_getevents(ctx, 0, 4, ev, &zero);
	if (n != 0)
		return zdtm_fail("io_getevents on the idle context returned %ld, expected 0", n);

	/* The context still works. */
	rd.aio_data = 0x11;
	rd.aio_lio_opcode = IOCB_CMD_PREAD;
	rd.aio_fildes = fd;
	rd.aio_buf = (uintptr_t)rbuf;
	rd.aio_nbytes = LEN;
	rd.aio_offset = 0;
	zdtm_fill(wbuf, sizeof(wbuf), SEED + 1, 0);
	wr.aio_data = 0x22;
	wr.aio_lio_opcode = IOCB_CMD_PWRITE;
	wr.aio_fildes = fd;
	wr.aio_buf = (uintptr_t)wbuf;
	wr.aio_nbytes = sizeof(wbuf);
	wr.aio_offset = LEN;
	n = zdtm_io_submit(ctx, 2, list);
	if (n != 2)
		return zdtm_err("io_submit after C/R returned %ld", n);
	n = zdtm_io_getevents(ctx, 2, 4, ev, &wait);
	if (n != 2)
		return zdtm_fail("io_getevents got %ld events for 2 requests", n);
	for (int i = 0; i < 2; i++) {
		struct iocb *cb = ev[i].obj == (uintptr_t)&rd ? &rd : &wr;

		if (ev[i].obj != (uintptr_t)&rd && ev[i].obj != (uintptr_t)&wr)
			return zdtm_fail("event %d for unknown iocb 0x%" PRIx64, i, (uint64_t)ev[i].obj);
		if (ev[i].data != cb->aio_data || ev[i].res != (int64_t)cb->aio_nbytes)
			return zdtm_fail("event %d: data 0x%" PRIx64 " res %" PRId64 ", expected 0x%"
					 PRIx64 " res %" PRIu64, i, (uint64_t)ev[i].data,
					 (int64_t)ev[i].res, (uint64_t)cb->aio_data,
					 (uint64_t)cb->aio_nbytes);
	}
	if (zdtm_verify(rbuf, LEN, SEED, 0) >= 0)
		return zdtm_fail("the AIO read returned wrong data");
	if (pread(fd, back, sizeof(back), LEN) != (ssize_t)sizeof(back) ||
	    zdtm_verify(back, sizeof(back), SEED + 1, 0) >= 0)
		return zdtm_fail("the AIO write did not land in %s", PATH);
	if (ring->head != ring->tail)
		return zdtm_fail("ring head %u tail %u after reaping everything", ring->head,
				 ring->tail);
	if (zdtm_io_destroy(ctx))
		return zdtm_err("io_destroy");
	if (zdtm_aio_ring_size(ctx))
		return zdtm_fail("the ring is still mapped after io_destroy");
	ctx = 0;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
