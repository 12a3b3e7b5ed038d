/* Linux native AIO for tests: raw syscalls (no libaio) and the ring the kernel maps at a
 * context id, which C/R must restore as it was. */
#ifndef ZDTM_AIO_H
#define ZDTM_AIO_H

#include <linux/aio_abi.h>
#include <time.h>

#include "zdtm.h"

#define AIO_RING_MAGIC 0xa10a10a1	/* fs/aio.c */

/* The ring header (fs/aio.c, not in uapi). */
struct zdtm_aio_ring {
	unsigned id, nr, head, tail;
	unsigned magic, compat_features, incompat_features, header_length;
	struct io_event io_events[];
};

long zdtm_io_setup(unsigned nr, aio_context_t *ctx);
long zdtm_io_submit(aio_context_t ctx, long n, struct iocb **iocbs);
long zdtm_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
		       struct timespec *ts);
long zdtm_io_destroy(aio_context_t ctx);

/* The ring of a context: mapped at the context id. */
static inline struct zdtm_aio_ring *zdtm_aio_ring(aio_context_t ctx)
{
	return (struct zdtm_aio_ring *)ctx;
}
/* Completed events in the ring, not reaped yet. */
unsigned zdtm_aio_pending(const struct zdtm_aio_ring *r);
/* Wait up to 2 s until the ring holds n events (without reaping): the count then. */
unsigned zdtm_aio_wait_pending(const struct zdtm_aio_ring *r, unsigned n);
/* Size of the mapping starting at ctx if it is an AIO ring ("/[aio] (deleted)"), else 0. */
unsigned long zdtm_aio_ring_size(aio_context_t ctx);

#endif
