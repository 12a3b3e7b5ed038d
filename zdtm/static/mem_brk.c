/* The heap grown with sbrk by an unaligned amount keeps its data and its exact program break:
 * the kernel's brk (raw brk(0), not glibc's cached value) and start_brk are unchanged, the
 * [heap] vma is the same, and the break still moves (grow, touch, shrink back) after C/R. */
#include <limits.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define LEN (70000UL + 123)	/* not a multiple of the page size */
#define SEED 0xb7c0

static char *data;		/* NULL until setup moved the break */
static unsigned long want_brk, want_start_brk;
static struct zdtm_vma want_heap;

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
	if (start_brk(&want_start_brk) || zdtm_find_vma("[heap]", &want_heap))
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
	struct zdtm_vma heap;
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
	if (zdtm_find_vma("[heap]", &heap))
		return -1;
	if (!zdtm_vma_eq(&heap, &want_heap))
		return zdtm_fail("[heap] is '%s', expected '%s'", zdtm_vma_str(&heap, a, sizeof(a)),
				 zdtm_vma_str(&want_heap, b, sizeof(b)));
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
