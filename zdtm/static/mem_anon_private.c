/* Anonymous private areas with different protections keep their exact layout and contents:
 * a fully written RW area, a read-only one, a half-touched one whose untouched pages still
 * read zero, and an r-x one. */
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x110000000000UL

struct area {
	const char *name;
	unsigned long off;	/* pages from BASE */
	unsigned long pages;
	int prot;		/* final protection */
	const char *perms;
	unsigned long step;	/* every step-th page is written (1: all) */
	uint64_t seed;
};

static const struct area areas[] = {
	{ "rw", 0, 16, PROT_READ | PROT_WRITE, "rw-p", 1, 0xa11 },
	{ "ro", 17, 4, PROT_READ, "r--p", 1, 0xa12 },
	{ "half", 22, 8, PROT_READ | PROT_WRITE, "rw-p", 2, 0xa13 },
	{ "rx", 31, 2, PROT_READ | PROT_EXEC, "r-xp", 1, 0xa14 },
};
#define NAREAS (int)(sizeof(areas) / sizeof(areas[0]))
#define SPAN 33UL

static size_t pg;
static char *base;	/* NULL until setup mapped the areas */

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

static void expected(struct vma *v)
{
	for (int i = 0; i < NAREAS; i++) {
		memset(&v[i], 0, sizeof(v[i]));
		v[i].start = BASE + areas[i].off * pg;
		v[i].end = v[i].start + areas[i].pages * pg;
		strcpy(v[i].perms, areas[i].perms);
	}
}

static int setup(void)
{
	struct vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		char *p = map_at(BASE + a->off * pg, a->pages * pg, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (!p)
			return -1;
		for (unsigned long k = 0; k < a->pages; k += a->step)
			zdtm_fill(p + k * pg, pg, a->seed, k * pg);
		if (mprotect(p, a->pages * pg, a->prot))
			return zdtm_err("mprotect area %s", a->name);
	}
	base = (char *)BASE;
	expected(want);
	return expect_vmas("after setup", BASE, BASE + SPAN * pg, want, NAREAS);
}

static int check(void)
{
	struct vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	if (!base)
		return zdtm_fail("the areas at %#lx were never mapped", BASE);
	expected(want);
	if (expect_vmas("areas", BASE, BASE + SPAN * pg, want, NAREAS))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		char *p = base + a->off * pg;

		for (unsigned long k = 0; k < a->pages; k++) {
			ssize_t bad;

			if (k % a->step == 0) {
				bad = zdtm_verify(p + k * pg, pg, a->seed, k * pg);
				if (bad >= 0)
					return zdtm_fail("area %s page %lu: byte %zd differs", a->name,
							 k, bad);
			} else {
				bad = first_nonzero(p + k * pg, pg);
				if (bad >= 0)
					return zdtm_fail("area %s page %lu was never written but byte %zd is %#x",
							 a->name, k, bad, (unsigned char)p[k * pg + bad]);
			}
		}
	}
	/* The writable areas still take writes (private, no longer shared with anything). */
	for (int i = 0; i < NAREAS; i++) {
		char *p = base + areas[i].off * pg;

		if (!(areas[i].prot & PROT_WRITE))
			continue;
		zdtm_fill(p + pg, pg, 0xbeef, 0);
		if (zdtm_verify(p + pg, pg, 0xbeef, 0) >= 0)
			return zdtm_fail("area %s: a write after restore did not stick", areas[i].name);
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
