/* Anonymous private areas with different protections keep their exact layout and contents:
 * a fully written RW area, a read-only one, a half-touched one whose untouched pages still
 * read zero, and an r-x one. */
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
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

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static void expected(struct zdtm_vma *v)
{
	for (int i = 0; i < NAREAS; i++)
		v[i] = zdtm_anon_vma(BASE + areas[i].off * pg,
				     BASE + (areas[i].off + areas[i].pages) * pg, areas[i].perms);
}

static int setup(void)
{
	struct zdtm_vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		char *p = zdtm_map_fixed(BASE + a->off * pg, a->pages * pg, PROT_READ | PROT_WRITE,
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
	return zdtm_expect_vmas("after setup", BASE, BASE + SPAN * pg, want, NAREAS);
}

static int check(void)
{
	struct zdtm_vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	if (!base)
		return zdtm_fail("the areas at %#lx were never mapped", BASE);
	expected(want);
	if (zdtm_expect_vmas("areas", BASE, BASE + SPAN * pg, want, NAREAS))
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
