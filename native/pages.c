/* A small task's pages stored in one call from Python (engine.pagedump.store without
 * splicing): for a task of a few dozen pages the Python loop over scans, pagemap runs and
 * reads cost ten times the syscalls it makes. Same choices as the Python path:
 *  - which pages: PAGEMAP_SCAN's present or swapped ones, less the shared zero page, and in a
 *    private file area less those still the page cache's (the file has them);
 *  - read how: process_vm_readv for runs this task alone maps (pagemap bit 56), since pinning
 *    a page shared copy-on-write would unshare it; /proc/PID/mem for the rest and for
 *    unreadable areas;
 *  - runs: adjacent pages of one area make one run; the file is created at the first write, or
 *    the pages are appended to a file the caller holds open (many small tasks share one). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "compat.h"

#define CKPT_PAGES_SCAN 1	/* step that failed: the PAGEMAP_SCAN */
#define CKPT_PAGES_PAGEMAP 2	/* reading /proc/PID/pagemap */
#define CKPT_PAGES_MEM 3	/* reading /proc/PID/mem */
#define CKPT_PAGES_FILE 4	/* creating or writing the pages file */
#define CKPT_PAGES_RUNS 5	/* more runs than the caller made room for */
#define CKPT_PAGES_ALLOC 6	/* our own buffers */

#define PAGES_BUF (1 << 20)	/* bytes gathered before a write */
#define PAGES_SCAN 512		/* regions a PAGEMAP_SCAN call returns at most */
#define PAGES_PAGE 4096

struct ckpt_area {
	uint64_t start, end;
	int readable;		/* 'r' in its perms: else only /proc/PID/mem reads it */
	int file_private;	/* a private mapping of a file */
};

struct ckpt_pages {
	int err;		/* errno of the failure, 0 when all went well */
	int step;		/* CKPT_PAGES_*: what failed */
	uint64_t addr;		/* where in the task it failed */
	uint64_t nruns;		/* runs written to the caller's array */
	uint64_t bytes;		/* bytes written to the file */
};

struct pages_job {
	int pid, pagemap, mem, out;
	const char *path;
	char *buf;
	size_t used;
	struct ckpt_pages *res;
};

static int pages_fail(struct pages_job *j, int step, int err, uint64_t addr)
{
	j->res->step = step;
	j->res->err = err;
	j->res->addr = addr;
	return -1;
}

static int pages_flush(struct pages_job *j)
{
	size_t done = 0;
	ssize_t k;

	if (!j->used)
		return 0;
	if (j->out < 0) {
		j->out = open(j->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (j->out < 0)
			return pages_fail(j, CKPT_PAGES_FILE, errno, 0);
	}
	while (done < j->used) {
		k = write(j->out, j->buf + done, j->used - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return pages_fail(j, CKPT_PAGES_FILE, k < 0 ? errno : EIO, 0);
		done += (size_t)k;
	}
	j->res->bytes += j->used;
	j->used = 0;
	return 0;
}

/* Exactly n bytes at addr through /proc/PID/mem (or the pagemap, with fd and step). */
static int pages_pread(struct pages_job *j, int fd, int step, char *dst, size_t n, uint64_t addr)
{
	size_t done = 0;
	ssize_t k;

	while (done < n) {
		k = pread(fd, dst + done, n - done, (off_t)(addr + done));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return pages_fail(j, step, k < 0 ? errno : EIO, addr + done);
		done += (size_t)k;
	}
	return 0;
}

/* Read [addr, addr + n) (n <= PAGES_BUF) into dst, run by run of pages mapped by this task
 * alone (process_vm_readv) or not (/proc/PID/mem). */
static int pages_read(struct pages_job *j, const struct ckpt_area *a, char *dst, uint64_t addr, size_t n)
{
	uint64_t entries[PAGES_BUF / PAGES_PAGE];	/* 2 KiB */
	size_t pages = n / PAGES_PAGE, i = 0, k;
	struct iovec local, remote;
	int alone;

	if (!a->readable)
		return pages_pread(j, j->mem, CKPT_PAGES_MEM, dst, n, addr);
	if (pages_pread(j, j->pagemap, CKPT_PAGES_PAGEMAP, (char *)entries, pages * 8, addr / PAGES_PAGE * 8))
		return -1;
	while (i < pages) {
		alone = (int)(entries[i] >> 56 & 1);
		for (k = i + 1; k < pages && (int)(entries[k] >> 56 & 1) == alone; k++)
			;
		local.iov_base = dst + i * PAGES_PAGE;
		remote.iov_base = (void *)(uintptr_t)(addr + i * PAGES_PAGE);
		local.iov_len = remote.iov_len = (k - i) * PAGES_PAGE;
		if (!alone || process_vm_readv(j->pid, &local, 1, &remote, 1, 0) != (ssize_t)local.iov_len)
			if (pages_pread(j, j->mem, CKPT_PAGES_MEM, local.iov_base, local.iov_len, addr + i * PAGES_PAGE))
				return -1;
		i = k;
	}
	return 0;
}

/* One kept region of an area: gathered in the buffer, its run added (or joined to the last
 * run of the same area). */
static int pages_region(struct pages_job *j, const struct ckpt_area *a, uint64_t start, uint64_t end,
			uint64_t *runs, uint64_t max_runs, uint64_t first_of_area)
{
	uint64_t off, n, *last;

	for (off = start; off < end; off += n) {
		n = end - off < PAGES_BUF ? end - off : PAGES_BUF;
		if (j->used + n > PAGES_BUF && pages_flush(j))
			return -1;
		if (pages_read(j, a, j->buf + j->used, off, (size_t)n))
			return -1;
		j->used += n;
	}
	last = j->res->nruns > first_of_area ? &runs[2 * (j->res->nruns - 1)] : NULL;
	if (last && last[0] + last[1] * PAGES_PAGE == start) {
		last[1] += (end - start) / PAGES_PAGE;
		return 0;
	}
	if (j->res->nruns == max_runs)
		return pages_fail(j, CKPT_PAGES_RUNS, ENOSPC, start);
	runs[2 * j->res->nruns] = start;
	runs[2 * j->res->nruns + 1] = (end - start) / PAGES_PAGE;
	j->res->nruns++;
	return 0;
}

static int pages_area(struct pages_job *j, const struct ckpt_area *a, struct page_region *vec,
		      uint64_t *runs, uint64_t max_runs)
{
	struct pm_scan_arg arg;
	uint64_t start = a->start, first = j->res->nruns;
	long n, i;

	while (start < a->end) {
		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.start = start;
		arg.end = a->end;
		arg.vec = (uint64_t)(uintptr_t)vec;
		arg.vec_len = PAGES_SCAN;
		arg.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		arg.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO;
		n = ioctl(j->pagemap, PAGEMAP_SCAN, &arg);
		if (n < 0)
			return pages_fail(j, CKPT_PAGES_SCAN, errno, start);
		for (i = 0; i < n; i++) {
			if (vec[i].categories & PAGE_IS_PFNZERO)
				continue;
			if (a->file_private && (vec[i].categories & PAGE_IS_FILE))
				continue;
			if (pages_region(j, a, vec[i].start, vec[i].end, runs, max_runs, first))
				return -1;
		}
		if (arg.walk_end <= start)	/* cannot be: do not spin */
			return pages_fail(j, CKPT_PAGES_SCAN, EIO, start);
		start = arg.walk_end;
	}
	return 0;
}

/* Store the pages of these areas of task pid (its pagemap and mem open) into a new file at
 * path, or, when out >= 0, at the position of that open file (left open); runs[2 i],
 * runs[2 i + 1]: vaddr and pages of run i. 0, or -1 with res saying what failed
 * (CKPT_PAGES_RUNS: the caller's array was too small; res->bytes were written by then). */
static int ckpt_store_pages(int pid, int pagemap, int mem, const struct ckpt_area *areas, int nareas,
			    const char *path, int out, uint64_t *runs, uint64_t max_runs, struct ckpt_pages *res)
{
	struct page_region *vec = malloc(PAGES_SCAN * sizeof(*vec));
	struct pages_job j = { pid, pagemap, mem, out, path, malloc(PAGES_BUF), 0, res };
	int i, rc = 0;

	memset(res, 0, sizeof(*res));
	if (!vec || !j.buf)
		rc = pages_fail(&j, CKPT_PAGES_ALLOC, ENOMEM, 0);
	for (i = 0; !rc && i < nareas; i++)
		rc = pages_area(&j, &areas[i], vec, runs, max_runs);
	if (!rc)
		rc = pages_flush(&j);
	if (out < 0 && j.out >= 0 && close(j.out) && !rc)
		rc = pages_fail(&j, CKPT_PAGES_FILE, errno, 0);
	free(vec);
	free(j.buf);
	return rc;
}
