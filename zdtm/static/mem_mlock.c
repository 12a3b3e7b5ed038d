/* mlocked areas stay locked: an area locked with mlock (all pages resident, VmFlags "lo"),
 * one locked with mlock2(MLOCK_ONFAULT) with two of four pages touched ("lo" and "lf"; the
 * untouched pages still not resident) and an unlocked one; VmLck and each vma's Locked: in
 * smaps are what they were, and all contents are kept. */
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

#define BASE 0x1d0000000000UL
#define SLOT 0x100000UL

enum { A_LOCKED, A_ONFAULT, A_PLAIN, NAREAS };
static const struct area {
	const char *name;
	unsigned long pages;
	unsigned long touched;	/* bitmask of the pages written */
	bool lo, lf;		/* the VmFlags it must carry */
} areas[NAREAS] = {
	[A_LOCKED] = { "mlock", 8, 0xff, true, false },
	[A_ONFAULT] = { "mlock2(MLOCK_ONFAULT)", 4, 0x5, true, true },
	[A_PLAIN] = { "unlocked", 4, 0xf, false, false },
};

static size_t pg;
static bool built;	/* false until setup locked the areas */

static char *addr(int i)
{
	return (char *)(BASE + i * SLOT);
}

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static int popcount(unsigned long x)
{
	return __builtin_popcountl(x);
}

static int check_state(const char *when)
{
	struct zdtm_vma want[NAREAS];
	unsigned char vec[8];
	long want_lck = 0, lck;
	char flags[256], buf[64];

	for (int i = 0; i < NAREAS; i++)
		want[i] = zdtm_anon_vma((unsigned long)addr(i),
					(unsigned long)addr(i) + areas[i].pages * pg, "rw-p");
	if (zdtm_expect_vmas(when, BASE, BASE + NAREAS * SLOT, want, NAREAS))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		long want_kb = a->lo ? popcount(a->touched) * (long)pg / 1024 : 0, kb;

		if (a->lo)
			want_lck += a->pages * pg / 1024;
		if (zdtm_vmflags((unsigned long)addr(i), flags, sizeof(flags)))
			return -1;
		if (zdtm_has_vmflag(flags, "lo") != a->lo || zdtm_has_vmflag(flags, "lf") != a->lf)
			return zdtm_fail("%s: area %s has VmFlags '%s', expected %s%s", when, a->name,
					 flags, a->lo ? "lo" : "no lo", a->lf ? " lf" : " no lf");
		kb = zdtm_smaps_kb((unsigned long)addr(i), "Locked");
		if (kb < 0)
			return -1;
		if (kb != want_kb)
			return zdtm_fail("%s: area %s has Locked: %ld kB, expected %ld kB", when,
					 a->name, kb, want_kb);
		if (mincore(addr(i), a->pages * pg, vec))
			return zdtm_err("mincore area %s", a->name);
		for (unsigned long k = 0; k < a->pages; k++) {
			bool touched = a->touched >> k & 1;

			if (a->lo && touched != (vec[k] & 1))
				return zdtm_fail("%s: area %s page %lu is %sresident", when, a->name, k,
						 vec[k] & 1 ? "" : "not ");
		}
	}
	if (zdtm_proc_status(0, "VmLck", buf, sizeof(buf)) || sscanf(buf, "%ld", &lck) != 1)
		return zdtm_fail("no VmLck in /proc/self/status");
	if (lck != want_lck)
		return zdtm_fail("%s: VmLck is %ld kB, expected %ld kB", when, lck, want_lck);
	return 0;
}

static int setup(void)
{
	pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		char *p = zdtm_map_fixed((unsigned long)addr(i), a->pages * pg,
					 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
					 -1, 0);

		if (!p)
			return -1;
		/* Small pages only, so a fault makes just that page resident (no mTHP folio). */
		if (i == A_ONFAULT && madvise(p, a->pages * pg, MADV_NOHUGEPAGE) && errno != EINVAL)
			return zdtm_err("madvise(MADV_NOHUGEPAGE)");
		if (i == A_ONFAULT && mlock2(p, a->pages * pg, MLOCK_ONFAULT))
			return zdtm_err("mlock2(MLOCK_ONFAULT) %lu pages", a->pages);
		for (unsigned long k = 0; k < a->pages; k++)
			if (a->touched >> k & 1)
				zdtm_fill(p + k * pg, pg, 0x10c0 + i, k * pg);
		if (i == A_LOCKED && mlock(p, a->pages * pg))
			return zdtm_err("mlock %lu pages", a->pages);
	}
	built = true;
	return check_state("after setup");
}

static int check(void)
{
	pg = sysconf(_SC_PAGESIZE);
	if (!built)
		return zdtm_fail("the locked areas at %#lx were never mapped", BASE);
	if (check_state("after C/R"))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];

		for (unsigned long k = 0; k < a->pages; k++) {
			char *p = addr(i) + k * pg;
			bool touched = a->touched >> k & 1;
			ssize_t bad = touched ? zdtm_verify(p, pg, 0x10c0 + i, k * pg) :
						first_nonzero(p, pg);

			if (bad >= 0)
				return zdtm_fail("area %s page %lu: byte %zd %s", a->name, k, bad,
						 touched ? "differs" : "is not zero");
		}
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
