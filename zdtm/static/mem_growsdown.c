/* A MAP_GROWSDOWN area that grew by two pages (faults just below its start) keeps its grown
 * bounds, its "gd" VmFlag and its data, and still grows down on a fault after C/R. */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

/* Nothing is mapped in the 1 MiB below (the stack guard gap), so the area can grow. */
#define BASE 0x180000100000UL
#define PAGES 4UL
#define GROWN 2UL
#define SEED 0x6d0e

static size_t pg;
static char *start;	/* the grown area's start; NULL until setup grew it */

static sigjmp_buf probe_env;

static void probe_fault(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

/* True if loading the byte at p faults. */
static bool load_faults(volatile char *p)
{
	struct sigaction sa = { .sa_handler = probe_fault }, old;
	bool hit;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (sigsetjmp(probe_env, 1) == 0) {
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

static struct zdtm_vma expected(unsigned long from)
{
	return zdtm_anon_vma(from, BASE + PAGES * pg, "rw-p");
}

static int check_gd(unsigned long at)
{
	char flags[256];

	if (zdtm_vmflags(at, flags, sizeof(flags)))
		return -1;
	if (!zdtm_has_vmflag(flags, "gd"))
		return zdtm_fail("the area at %#lx is not growsdown: VmFlags '%s'", at, flags);
	return 0;
}

static int setup(void)
{
	struct zdtm_vma want;
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	p = zdtm_map_fixed(BASE, PAGES * pg, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
	if (!p)
		return -1;
	/* Grow it page by page from below its start, as a stack grows. */
	for (unsigned long k = 1; k <= GROWN; k++)
		((volatile char *)p)[-(long)(k * pg)] = 1;
	p -= GROWN * pg;
	zdtm_fill(p, (GROWN + PAGES) * pg, SEED, 0);
	start = p;
	want = expected((unsigned long)p);
	if (zdtm_expect_vmas("after setup", BASE - 2 * GROWN * pg, BASE + PAGES * pg, &want, 1))
		return -1;
	return check_gd((unsigned long)p);
}

static int check(void)
{
	struct zdtm_vma want;
	unsigned long lo;
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	lo = BASE - 2 * GROWN * pg;
	if (!start)
		return zdtm_fail("the growsdown area at %#lx was never mapped", BASE);
	want = expected((unsigned long)start);
	if (zdtm_expect_vmas("growsdown area", lo, BASE + PAGES * pg, &want, 1) ||
	    check_gd((unsigned long)start))
		return -1;
	bad = zdtm_verify(start, (GROWN + PAGES) * pg, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("growsdown area %p: byte %zd differs (page %zd, %lu grown in setup)",
				 start, bad, bad / (ssize_t)pg, GROWN);

	/* It still grows: a load one page below its start extends it by that page. */
	if (load_faults(start - pg))
		return zdtm_fail("a load one page below the area (%p) faults: it no longer grows",
				 start - pg);
	bad = first_nonzero(start - pg, pg);
	if (bad >= 0)
		return zdtm_fail("the page grown after C/R is not zero (byte %zd)", bad);
	want = expected((unsigned long)start - pg);
	return zdtm_expect_vmas("growsdown area after growing once more", lo, BASE + PAGES * pg,
				&want, 1);
}

ZDTM_TEST(.setup = setup, .check = check);
