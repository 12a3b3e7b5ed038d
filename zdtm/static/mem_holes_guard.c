/* One region carved into data areas, PROT_NONE guard pages and unmapped holes keeps its exact
 * layout: the same vmas with the same protections, holes still unmapped, guard pages still
 * fault (and a guard page keeps the data it held before it was protected). */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
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

static int expected(struct zdtm_vma *v)
{
	int n = 0;

	for (int i = 0; i < NPIECES; i++)
		if (layout[i].prot >= 0)
			v[n++] = zdtm_anon_vma(BASE + layout[i].first * pg,
					       BASE + (layout[i].first + layout[i].pages) * pg,
					       layout[i].perms);
	return n;
}

static int setup(void)
{
	struct zdtm_vma want[NPIECES];
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	p = zdtm_map_fixed(BASE, SPAN * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			   -1, 0);
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
	return zdtm_expect_vmas("after setup", BASE, BASE + SPAN * pg, want, expected(want));
}

static int check(void)
{
	struct zdtm_vma want[NPIECES];
	unsigned char vec[4];
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	if (!base)
		return zdtm_fail("the layout at %#lx was never built", BASE);
	if (zdtm_expect_vmas("layout", BASE, BASE + SPAN * pg, want, expected(want)))
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
	return zdtm_expect_vmas("layout after the probes", BASE, BASE + SPAN * pg, want,
				expected(want));
}

ZDTM_TEST(.setup = setup, .check = check);
