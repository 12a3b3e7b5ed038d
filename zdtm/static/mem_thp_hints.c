/* Transparent huge page hints survive C/R: a 2 MiB-aligned 2 MiB area with MADV_HUGEPAGE
 * (VmFlags "hg"), a small MADV_NOHUGEPAGE area ("nh") and a plain one (neither), all full of
 * data. Whether the hinted area is backed by a huge page is only logged. */
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x1e0000000000UL	/* 2 MiB aligned */
#define SLOT 0x400000UL

enum { A_HUGE, A_NOHUGE, A_PLAIN, NAREAS };
static const struct area {
	const char *name;
	unsigned long len;
	int advice;		/* -1: none */
	bool hg, nh;
} areas[NAREAS] = {
	[A_HUGE] = { "MADV_HUGEPAGE", 2UL << 20, MADV_HUGEPAGE, true, false },
	[A_NOHUGE] = { "MADV_NOHUGEPAGE", 64UL << 10, MADV_NOHUGEPAGE, false, true },
	[A_PLAIN] = { "plain", 64UL << 10, -1, false, false },
};

static bool built;	/* false until setup advised the areas */

static char *addr(int i)
{
	return (char *)(BASE + i * SLOT);
}

static int check_state(const char *when)
{
	struct zdtm_vma want[NAREAS];
	char flags[256];

	for (int i = 0; i < NAREAS; i++)
		want[i] = zdtm_anon_vma((unsigned long)addr(i),
					(unsigned long)addr(i) + areas[i].len, "rw-p");
	if (zdtm_expect_vmas(when, BASE, BASE + NAREAS * SLOT, want, NAREAS))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];

		if (zdtm_vmflags((unsigned long)addr(i), flags, sizeof(flags)))
			return -1;
		if (zdtm_has_vmflag(flags, "hg") != a->hg || zdtm_has_vmflag(flags, "nh") != a->nh)
			return zdtm_fail("%s: area %s has VmFlags '%s', expected %s and %s", when,
					 a->name, flags, a->hg ? "hg" : "no hg", a->nh ? "nh" : "no nh");
		if (i == A_HUGE)
			zdtm_msg("%s: AnonHugePages of the %s area: %ld kB", when, a->name,
				 zdtm_smaps_kb((unsigned long)addr(i), "AnonHugePages"));
	}
	return 0;
}

static int setup(void)
{
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		char *p = zdtm_map_fixed((unsigned long)addr(i), a->len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (!p)
			return -1;
		if (a->advice >= 0 && madvise(p, a->len, a->advice))
			return zdtm_err("madvise(%s)", a->name);
		zdtm_fill(p, a->len, 0x7e90 + i, 0);
	}
	built = true;
	return check_state("after setup");
}

static int check(void)
{
	if (!built)
		return zdtm_fail("the hinted areas at %#lx were never mapped", BASE);
	if (check_state("after C/R"))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		ssize_t bad = zdtm_verify(addr(i), areas[i].len, 0x7e90 + i, 0);

		if (bad >= 0)
			return zdtm_fail("area %s: byte %zd differs", areas[i].name, bad);
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
