/* The main stack grown far below its initial size keeps its size and the data written deep
 * in it: setup grows [stack] by about 1 MiB with alloca, fills the deepest 768 KiB (far below
 * anything later calls touch) and keeps a pointer to it; the check finds the same [stack]
 * vma, still growsdown ("gd"), covering the data, and the data intact. */
#include <alloca.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define GROW (1024UL * 1024)	/* alloca'd below setup's frame */
#define DATA (768UL * 1024)	/* the deepest part of it, filled */
#define SEED 0x57ac

static char *deep;		/* NULL until setup filled the deep stack */
static struct zdtm_vma want;	/* [stack] after the growth */

static __attribute__((noinline)) int grow(void)
{
	size_t pg = sysconf(_SC_PAGESIZE);
	char *volatile p = alloca(GROW);

	/* Touch downwards, a page at a time, the way a growing stack faults. */
	for (long off = GROW - pg; off >= 0; off -= pg)
		p[off] = 1;
	zdtm_fill(p, DATA, SEED, 0);
	deep = p;
	return zdtm_find_vma("[stack]", &want);
}

static int setup(void)
{
	char s[512];
	struct rlimit rl;

	if (getrlimit(RLIMIT_STACK, &rl))
		return zdtm_err("getrlimit(RLIMIT_STACK)");
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4 * GROW)
		return zdtm_fail("RLIMIT_STACK %llu is too small to grow the stack by %lu",
				 (unsigned long long)rl.rlim_cur, GROW);
	if (grow())
		return -1;
	if ((unsigned long)deep < want.start || (unsigned long)deep + DATA > want.end)
		return zdtm_fail("the grown stack %p+%lu is not inside [stack] '%s'", deep, DATA,
				 zdtm_vma_str(&want, s, sizeof(s)));
	zdtm_msg("[stack] grew to %lu KiB, data at %p", (want.end - want.start) >> 10, deep);
	return 0;
}

static int check(void)
{
	char a[512], b[512], flags[256];
	struct zdtm_vma got;
	ssize_t bad;

	if (!deep)
		return zdtm_fail("the stack was never grown (no data pointer)");
	if (zdtm_find_vma("[stack]", &got))
		return -1;
	if (!zdtm_vma_eq(&got, &want))
		return zdtm_fail("[stack] is '%s', expected '%s' (%ld KiB smaller)",
				 zdtm_vma_str(&got, a, sizeof(a)),
				 zdtm_vma_str(&want, b, sizeof(b)),
				 (long)((want.end - want.start) - (got.end - got.start)) / 1024);
	if (zdtm_vmflags(got.start, flags, sizeof(flags)))
		return -1;
	if (!zdtm_has_vmflag(flags, "gd"))
		return zdtm_fail("[stack] is not growsdown: VmFlags '%s'", flags);
	bad = zdtm_verify(deep, DATA, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("stack data at %p: byte %zd of %lu differs (%lu bytes below the top)",
				 deep, bad, DATA, got.end - (unsigned long)deep - bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
