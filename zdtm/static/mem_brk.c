/* The heap grown with sbrk by an unaligned amount keeps its data and its exact program break:
 * the kernel's brk (raw brk(0), not glibc's cached value) and start_brk are unchanged, the
 * [heap] vma is the same, and the break still moves (grow, touch, shrink back) after C/R. */
#include <limits.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define LEN (70000UL + 123)	/* not a multiple of the page size */
#define SEED 0xb7c0

static char *data;		/* NULL until setup moved the break */
static unsigned long want_brk, want_start_brk;
static struct vma want_heap;

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

static unsigned long kernel_brk(void)
{
	return (unsigned long)syscall(SYS_brk, 0);
}

/* Field 47 (start_brk) of /proc/self/stat: 0, or -1 (recorded). */
static int start_brk(unsigned long *out)
{
	char buf[2048], *p;
	int field = 3;

	if (zdtm_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		return zdtm_err("read /proc/self/stat");
	p = strrchr(buf, ')');
	if (!p)
		return zdtm_fail("unparsable /proc/self/stat");
	for (p += 2; field < 47 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%lu", out) != 1)
		return zdtm_fail("no start_brk in /proc/self/stat");
	return 0;
}

static int heap_vma(struct vma *v)
{
	static struct vma all[128];
	int n = read_vmas_of(0, 0, ~0UL, all, 128);

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(all[i].path, "[heap]")) {
			*v = all[i];
			return 0;
		}
	return zdtm_fail("no [heap] vma in /proc/self/maps");
}

static int setup(void)
{
	char *p;

	/* Keep malloc (dprintf buffers...) off the break: every block is mmapped, nothing trims. */
	if (!mallopt(M_MMAP_THRESHOLD, 0) || !mallopt(M_TRIM_THRESHOLD, INT_MAX))
		return zdtm_fail("mallopt failed");
	p = sbrk(LEN);
	if (p == (void *)-1)
		return zdtm_err("sbrk(%lu)", LEN);
	zdtm_fill(p, LEN, SEED, 0);
	want_brk = kernel_brk();
	if (want_brk != (unsigned long)p + LEN)
		return zdtm_fail("brk is %#lx after sbrk, expected %#lx", want_brk,
				 (unsigned long)p + LEN);
	if (start_brk(&want_start_brk) || heap_vma(&want_heap))
		return -1;
	data = p;
	zdtm_msg("heap %#lx-%#lx, brk %#lx", want_start_brk, want_heap.end, want_brk);
	return 0;
}

static int check(void)
{
	size_t pg = sysconf(_SC_PAGESIZE);
	unsigned long cur, sb;
	char a[512], b[512];
	struct vma heap;
	ssize_t bad;
	char *p;

	if (!data)
		return zdtm_fail("the break was never moved (no heap data)");
	cur = kernel_brk();
	if (cur != want_brk)
		return zdtm_fail("brk is %#lx, expected %#lx (%+ld bytes)", cur, want_brk,
				 (long)(cur - want_brk));
	if (start_brk(&sb))
		return -1;
	if (sb != want_start_brk)
		return zdtm_fail("start_brk is %#lx, expected %#lx", sb, want_start_brk);
	if (heap_vma(&heap))
		return -1;
	if (!vma_eq(&heap, &want_heap))
		return zdtm_fail("[heap] is '%s', expected '%s'", vma_str(&heap, a, sizeof(a)),
				 vma_str(&want_heap, b, sizeof(b)));
	bad = zdtm_verify(data, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("heap data at %p: byte %zd of %lu differs", data, bad, LEN);

	/* The kernel still moves this break: grow by two pages, use them, shrink back. */
	p = sbrk(2 * pg);
	if (p == (void *)-1)
		return zdtm_err("sbrk(+%zu) after C/R", 2 * pg);
	if ((unsigned long)p != want_brk || kernel_brk() != want_brk + 2 * pg)
		return zdtm_fail("sbrk(+%zu) after C/R: old break %p, new %#lx, expected %#lx", 2 * pg,
				 p, kernel_brk(), want_brk + 2 * pg);
	memset(p, 0x5a, 2 * pg);
	if (sbrk(-(intptr_t)(2 * pg)) == (void *)-1 || kernel_brk() != want_brk)
		return zdtm_fail("shrinking the break back gave %#lx, expected %#lx", kernel_brk(),
				 want_brk);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
