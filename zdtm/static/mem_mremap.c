/* Areas reshaped by mremap keep their new shape and contents: one moved to a fixed address
 * (the old range unmapped), one grown in place, one shrunk, one moved with MREMAP_DONTUNMAP
 * (the old range still mapped and empty), one grown by moving it (the new tail zero). */
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x170000000000UL
#define SLOT 0x100000UL		/* each area gets its own 1 MiB slot */
#define MOVED_SRC (BASE + 0 * SLOT)
#define MOVED (BASE + 1 * SLOT)
#define GROWN (BASE + 2 * SLOT)
#define SHRUNK (BASE + 3 * SLOT)
#define DU_OLD (BASE + 4 * SLOT)
#define DU_NEW (BASE + 5 * SLOT)
#define MG_SRC (BASE + 6 * SLOT)	/* + a read-only blocker page two pages in */
#define MG_NEW (BASE + 7 * SLOT)
#define END (BASE + 8 * SLOT)

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static size_t pg;
static bool built;	/* false until setup reshaped the areas */

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static int expected(struct zdtm_vma *v)
{
	const struct { unsigned long start, pages; const char *perms; } e[] = {
		{ MOVED, 4, "rw-p" },
		{ GROWN, 8, "rw-p" },
		{ SHRUNK, 3, "rw-p" },
		{ DU_OLD, 4, "rw-p" },
		{ DU_NEW, 4, "rw-p" },
		{ MG_SRC + 2 * pg, 1, "r--p" },
		{ MG_NEW, 6, "rw-p" },
	};
	int n = sizeof(e) / sizeof(e[0]);

	for (int i = 0; i < n; i++)
		v[i] = zdtm_anon_vma(e[i].start, e[i].start + e[i].pages * pg, e[i].perms);
	return n;
}

static int remap(unsigned long old, size_t olen, size_t nlen, int flags, unsigned long new)
{
	void *p = mremap((void *)old, olen, nlen, flags, (void *)new);
	unsigned long want = flags & MREMAP_FIXED ? new : old;

	if (p == MAP_FAILED)
		return zdtm_err("mremap %#lx (%zu bytes) to %zu bytes at %#lx", old, olen, nlen, want);
	if ((unsigned long)p != want)
		return zdtm_fail("mremap %#lx landed at %p, not %#lx", old, p, want);
	return 0;
}

static int setup(void)
{
	const int anon = MAP_PRIVATE | MAP_ANONYMOUS, rw = PROT_READ | PROT_WRITE;
	struct zdtm_vma want[8];
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	/* moved to a fixed address */
	if (!(p = zdtm_map_fixed(MOVED_SRC, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa1, 0);
	if (remap(MOVED_SRC, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, MOVED))
		return -1;
	/* grown in place, then the new tail written */
	if (!(p = zdtm_map_fixed(GROWN, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa2, 0);
	if (remap(GROWN, 4 * pg, 8 * pg, 0, 0))
		return -1;
	zdtm_fill(p + 4 * pg, 4 * pg, 0xa2, 4 * pg);
	/* shrunk from 8 to 3 pages */
	if (!(p = zdtm_map_fixed(SHRUNK, 8 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 8 * pg, 0xa3, 0);
	if (remap(SHRUNK, 8 * pg, 3 * pg, 0, 0))
		return -1;
	/* moved, leaving the old range mapped and empty */
	if (!(p = zdtm_map_fixed(DU_OLD, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa4, 0);
	if (remap(DU_OLD, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, DU_NEW))
		return -1;
	/* grown from 2 to 6 pages by moving: a read-only page blocks growth in place */
	if (!(p = zdtm_map_fixed(MG_SRC, 2 * pg, rw, anon, -1, 0)) ||
	    !zdtm_map_fixed(MG_SRC + 2 * pg, pg, PROT_READ, anon, -1, 0))
		return -1;
	zdtm_fill(p, 2 * pg, 0xa5, 0);
	if (remap(MG_SRC, 2 * pg, 6 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, MG_NEW))
		return -1;
	built = true;
	return zdtm_expect_vmas("after setup", BASE, END, want, expected(want));
}

static int check(void)
{
	struct zdtm_vma want[8];
	const struct {
		const char *what;
		unsigned long addr, pages;
		uint64_t seed;	/* 0: must read zero */
	} data[] = {
		{ "moved area", MOVED, 4, 0xa1 },
		{ "grown area", GROWN, 8, 0xa2 },
		{ "shrunk area", SHRUNK, 3, 0xa3 },
		{ "MREMAP_DONTUNMAP source", DU_OLD, 4, 0 },
		{ "MREMAP_DONTUNMAP target", DU_NEW, 4, 0xa4 },
		{ "moved and grown area", MG_NEW, 2, 0xa5 },
		{ "moved and grown area's new tail", MG_NEW + 2 * pg, 4, 0 },
	};
	unsigned char vec[8];

	pg = sysconf(_SC_PAGESIZE);
	if (!built)
		return zdtm_fail("the remapped areas at %#lx were never built", BASE);
	if (zdtm_expect_vmas("remapped areas", BASE, END, want, expected(want)))
		return -1;
	for (size_t i = 0; i < sizeof(data) / sizeof(data[0]); i++) {
		const char *p = (const char *)data[i].addr;
		size_t len = data[i].pages * pg;
		ssize_t bad = data[i].seed ? zdtm_verify(p, len, data[i].seed, 0) :
					     first_nonzero(p, len);

		if (bad >= 0)
			return zdtm_fail("%s at %#lx: byte %zd %s", data[i].what, data[i].addr, bad,
					 data[i].seed ? "differs" : "is not zero");
	}
	/* The ranges left behind are really gone (not just hidden from maps). */
	if (mincore((void *)MOVED_SRC, 4 * pg, vec) == 0 || errno != ENOMEM)
		return zdtm_fail("the moved area's old range %#lx is still mapped", MOVED_SRC);
	if (mincore((void *)(SHRUNK + 3 * pg), 5 * pg, vec) == 0 || errno != ENOMEM)
		return zdtm_fail("the shrunk area's cut tail at %#lx is still mapped", SHRUNK + 3 * pg);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
