/* One region carved into data areas, PROT_NONE guard pages and unmapped holes keeps its exact
 * layout: the same vmas with the same protections, holes still unmapped, guard pages still
 * fault (and a guard page keeps the data it held before it was protected). */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x150000000000UL
#define SPAN 19UL
#define SEED 0x401e

/* The layout, in pages from BASE. */
static const struct piece {
	unsigned long first, pages;
	int prot;		/* -1: a hole */
	const char *perms;
	bool data;		/* written in setup (before any mprotect) */
} layout[] = {
	{ 0, 4, PROT_READ | PROT_WRITE, "rw-p", true },
	{ 4, 1, PROT_NONE, "---p", true },	/* a guard page that held data */
	{ 5, 4, PROT_READ | PROT_WRITE, "rw-p", true },
	{ 9, 2, -1, NULL, false },
	{ 11, 2, PROT_READ, "r--p", true },
	{ 13, 1, PROT_NONE, "---p", false },	/* a guard page never touched */
	{ 14, 1, -1, NULL, false },
	{ 15, 4, PROT_READ | PROT_WRITE, "rw-p", true },
};
#define NPIECES (int)(sizeof(layout) / sizeof(layout[0]))

static size_t pg;
static char *base;	/* NULL until setup built the layout */

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

static sigjmp_buf probe_env;

static void probe_fault(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

/* True if reading (or writing) the byte at p faults. */
static bool faults(volatile char *p, bool write)
{
	struct sigaction sa = { .sa_handler = probe_fault }, old;
	bool hit;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (sigsetjmp(probe_env, 1) == 0) {
		if (write)
			*p = 0x5a;
		else
			(void)*p;
		hit = false;
	} else {
		hit = true;
	}
	sigaction(SIGSEGV, &old, NULL);
	return hit;
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
	int n = 0;

	for (int i = 0; i < NPIECES; i++) {
		if (layout[i].prot < 0)
			continue;
		memset(&v[n], 0, sizeof(v[n]));
		v[n].start = BASE + layout[i].first * pg;
		v[n].end = v[n].start + layout[i].pages * pg;
		strcpy(v[n].perms, layout[i].perms);
		n++;
	}
	return n;
}

static int setup(void)
{
	struct vma want[NPIECES];
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	p = map_at(BASE, SPAN * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!p)
		return -1;
	for (int i = 0; i < NPIECES; i++)
		if (layout[i].data)
			zdtm_fill(p + layout[i].first * pg, layout[i].pages * pg, SEED,
				  layout[i].first * pg);
	for (int i = 0; i < NPIECES; i++) {
		char *q = p + layout[i].first * pg;
		size_t len = layout[i].pages * pg;

		if (layout[i].prot < 0 ? munmap(q, len) : mprotect(q, len, layout[i].prot))
			return zdtm_err("%s pages %lu-%lu", layout[i].prot < 0 ? "munmap" : "mprotect",
					layout[i].first, layout[i].first + layout[i].pages - 1);
	}
	base = p;
	return expect_vmas("after setup", BASE, BASE + SPAN * pg, want, expected(want));
}

static int check(void)
{
	struct vma want[NPIECES];
	unsigned char vec[4];
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	if (!base)
		return zdtm_fail("the layout at %#lx was never built", BASE);
	if (expect_vmas("layout", BASE, BASE + SPAN * pg, want, expected(want)))
		return -1;
	for (int i = 0; i < NPIECES; i++) {
		const struct piece *pc = &layout[i];
		char *q = base + pc->first * pg;
		size_t len = pc->pages * pg;

		if (pc->prot < 0) {
			if (mincore(q, len, vec) == 0 || errno != ENOMEM)
				return zdtm_fail("hole at pages %lu-%lu: mincore says it is mapped",
						 pc->first, pc->first + pc->pages - 1);
			if (!faults(q, false))
				return zdtm_fail("hole at page %lu: a read does not fault", pc->first);
			continue;
		}
		if (pc->prot == PROT_NONE) {
			if (!faults(q, false))
				return zdtm_fail("guard page %lu: a read does not fault", pc->first);
			if (mprotect(q, len, PROT_READ))
				return zdtm_err("mprotect guard page %lu readable", pc->first);
			bad = pc->data ? zdtm_verify(q, len, SEED, pc->first * pg) :
					 first_nonzero(q, len);
			if (mprotect(q, len, PROT_NONE))
				return zdtm_err("mprotect guard page %lu back to PROT_NONE", pc->first);
			if (bad >= 0)
				return zdtm_fail("guard page %lu: byte %zd %s", pc->first, bad,
						 pc->data ? "lost its data" : "is not zero");
			continue;
		}
		bad = zdtm_verify(q, len, SEED, pc->first * pg);
		if (bad >= 0)
			return zdtm_fail("%s pages %lu-%lu: byte %zd differs", pc->perms, pc->first,
					 pc->first + pc->pages - 1, bad);
		if (!(pc->prot & PROT_WRITE) && !faults(q, true))
			return zdtm_fail("read-only page %lu takes writes", pc->first);
	}
	/* mprotect may have split and re-merged the guard page: the layout is unchanged. */
	return expect_vmas("layout after the probes", BASE, BASE + SPAN * pg, want, expected(want));
}

ZDTM_TEST(.setup = setup, .check = check);
