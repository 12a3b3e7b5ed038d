/* Linux native AIO for tests (see aio.h). */
#include "aio.h"

#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

long zdtm_io_setup(unsigned nr, aio_context_t *ctx)
{
	return syscall(__NR_io_setup, nr, ctx);
}

long zdtm_io_submit(aio_context_t ctx, long n, struct iocb **iocbs)
{
	return syscall(__NR_io_submit, ctx, n, iocbs);
}

long zdtm_io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev,
		       struct timespec *ts)
{
	return syscall(__NR_io_getevents, ctx, min, max, ev, ts);
}

long zdtm_io_destroy(aio_context_t ctx)
{
	return syscall(__NR_io_destroy, ctx);
}

unsigned zdtm_aio_pending(const struct zdtm_aio_ring *r)
{
	return (r->tail + r->nr - r->head) % r->nr;
}

unsigned zdtm_aio_wait_pending(const struct zdtm_aio_ring *r, unsigned n)
{
	/* Buffered file I/O completes within io_submit: this is only a safety net. */
	for (int t = 0; t < 2000 && zdtm_aio_pending(r) < n; t++)
		usleep(1000);
	return zdtm_aio_pending(r);
}

unsigned long zdtm_aio_ring_size(aio_context_t ctx)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long size = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;

		if (sscanf(line, "%lx-%lx", &start, &end) != 2 || start != ctx)
			continue;
		if (strstr(line, "[aio]"))
			size = end - start;
		break;
	}
	fclose(f);
	return size;
}
