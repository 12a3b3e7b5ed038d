/* Areas reshaped by mremap keep their new shape and contents: one moved to a fixed address
 * (the old range unmapped), one grown in place, one shrunk, one moved with MREMAP_DONTUNMAP
 * (the old range still mapped and empty), one grown by moving it (the new tail zero). */
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

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

/* --- memory-map helpers (the mem_ tests each carry a copy) --- */

struct vma {
	unsigned long start, end;
	char perms[8];
	unsigned long long off;
	unsigned int maj, min;
	unsigned long ino;
	char path[256];
};

static char maps_buf[1 << 18];

/* The vmas of /proc/<pid>/maps (0: self) overlapping [lo, hi), in address order: their
 * count, or -1 (recorded). */
static int read_vmas_of(pid_t pid, unsigned long lo, unsigned long hi, struct vma *v, int max)
{
	char path[64];
	ssize_t len;
	char *line, *nl;
	int n = 0;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	len = zdtm_read_file(path, maps_buf, sizeof(maps_buf));
	if (len < 0)
		return zdtm_err("read %s", path);
	if ((size_t)len >= sizeof(maps_buf) - 1)
		return zdtm_fail("%s is larger than %zu bytes", path, sizeof(maps_buf));
	for (line = maps_buf; (nl = strchr(line, '\n')); line = nl + 1) {
		struct vma cur = { 0 };
		int pos = 0;

		*nl = '\0';
		if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu %n", &cur.start, &cur.end, cur.perms,
			   &cur.off, &cur.maj, &cur.min, &cur.ino, &pos) < 7 || !pos)
			return zdtm_fail("unparsable maps line '%s'", line);
		snprintf(cur.path, sizeof(cur.path), "%s", line + pos);
		if (cur.end <= lo || cur.start >= hi)
			continue;
		if (n == max)
			return zdtm_fail("more than %d vmas in %lx-%lx", max, lo, hi);
		v[n++] = cur;
	}
	return n;
}

static const char *vma_str(const struct vma *v, char *buf, size_t len)
{
	snprintf(buf, len, "%lx-%lx %.7s %08llx %02x:%02x %lu %.255s", v->start, v->end, v->perms,
		 v->off, v->maj, v->min, v->ino, v->path);
	return buf;
}

static bool vma_eq(const struct vma *a, const struct vma *b)
{
	return a->start == b->start && a->end == b->end && !strcmp(a->perms, b->perms) &&
	       a->off == b->off && a->maj == b->maj && a->min == b->min && a->ino == b->ino &&
	       !strcmp(a->path, b->path);
}

/* The vmas in [lo, hi) must be exactly want[0..n): 0, else a recorded failure. */
static int expect_vmas(const char *what, unsigned long lo, unsigned long hi,
		       const struct vma *want, int n)
{
	struct vma got[32];
	char a[512], b[512];
	int cnt = read_vmas_of(0, lo, hi, got, 32);

	if (cnt < 0)
		return -1;
	for (int i = 0; i < n || i < cnt; i++) {
		if (i >= cnt)
			return zdtm_fail("%s: vma '%s' is missing (%d vmas in %lx-%lx)", what,
					 vma_str(&want[i], a, sizeof(a)), cnt, lo, hi);
		if (i >= n)
			return zdtm_fail("%s: unexpected vma '%s' (expected %d vmas)", what,
					 vma_str(&got[i], a, sizeof(a)), n);
		if (!vma_eq(&got[i], &want[i]))
			return zdtm_fail("%s: vma %d is '%s', expected '%s'", what, i,
					 vma_str(&got[i], a, sizeof(a)), vma_str(&want[i], b, sizeof(b)));
	}
	return 0;
}

/* mmap exactly at addr (never replacing anything): the address, or NULL (recorded). */
static void *map_at(unsigned long addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = mmap((void *)addr, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);

	if (p == MAP_FAILED) {
		zdtm_err("mmap %zu bytes at %#lx", len, addr);
		return NULL;
	}
	if (p != (void *)addr) {
		munmap(p, len);
		zdtm_fail("mmap at %#lx landed at %p", addr, p);
		return NULL;
	}
	return p;
}

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static int expected(struct vma *v)
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

	for (int i = 0; i < n; i++) {
		memset(&v[i], 0, sizeof(v[i]));
		v[i].start = e[i].start;
		v[i].end = e[i].start + e[i].pages * pg;
		strcpy(v[i].perms, e[i].perms);
	}
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
	struct vma want[8];
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	/* moved to a fixed address */
	if (!(p = map_at(MOVED_SRC, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa1, 0);
	if (remap(MOVED_SRC, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, MOVED))
		return -1;
	/* grown in place, then the new tail written */
	if (!(p = map_at(GROWN, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa2, 0);
	if (remap(GROWN, 4 * pg, 8 * pg, 0, 0))
		return -1;
	zdtm_fill(p + 4 * pg, 4 * pg, 0xa2, 4 * pg);
	/* shrunk from 8 to 3 pages */
	if (!(p = map_at(SHRUNK, 8 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 8 * pg, 0xa3, 0);
	if (remap(SHRUNK, 8 * pg, 3 * pg, 0, 0))
		return -1;
	/* moved, leaving the old range mapped and empty */
	if (!(p = map_at(DU_OLD, 4 * pg, rw, anon, -1, 0)))
		return -1;
	zdtm_fill(p, 4 * pg, 0xa4, 0);
	if (remap(DU_OLD, 4 * pg, 4 * pg, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, DU_NEW))
		return -1;
	/* grown from 2 to 6 pages by moving: a read-only page blocks growth in place */
	if (!(p = map_at(MG_SRC, 2 * pg, rw, anon, -1, 0)) ||
	    !map_at(MG_SRC + 2 * pg, pg, PROT_READ, anon, -1, 0))
		return -1;
	zdtm_fill(p, 2 * pg, 0xa5, 0);
	if (remap(MG_SRC, 2 * pg, 6 * pg, MREMAP_MAYMOVE | MREMAP_FIXED, MG_NEW))
		return -1;
	built = true;
	return expect_vmas("after setup", BASE, END, want, expected(want));
}

static int check(void)
{
	struct vma want[8];
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
	if (expect_vmas("remapped areas", BASE, END, want, expected(want)))
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
