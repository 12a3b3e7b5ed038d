/* A large sparse area (default 1 GiB, PROT_READ|PROT_WRITE, MAP_NORESERVE, MADV_NOHUGEPAGE)
 * with 24 pages written at scattered offsets stays sparse: same vma and VmFlags (nr, nh), the
 * written pages keep their data, no other page became resident (mincore), and untouched pages
 * read zero. Only the virtual size is large. */
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x1a0000000000UL
#define NTOUCH 24
#define SEED 0x5a75e

static size_t pg;
static unsigned long npages;		/* the area's size in pages; 0 until setup mapped it */
static unsigned long touched[NTOUCH];	/* page indexes written in setup */
static bool nohuge;			/* MADV_NOHUGEPAGE applied (kernels with THP) */

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static bool is_touched(unsigned long idx)
{
	for (int i = 0; i < NTOUCH; i++)
		if (touched[i] == idx)
			return true;
	return false;
}

/* Distinct scattered page indexes, the first and the last page among them. */
static void pick(unsigned long n)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	touched[0] = 0;
	touched[1] = n - 1;
	for (int i = 2; i < NTOUCH; i++) {
		unsigned long idx;

		do {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			idx = x % n;
		} while (is_touched(idx));
		touched[i] = idx;
	}
}

static int check_vma(unsigned long n)
{
	struct zdtm_vma want = zdtm_anon_vma(BASE, BASE + n * pg, "rw-p");
	char flags[256];

	if (zdtm_expect_vmas("sparse area", BASE, BASE + n * pg, &want, 1) ||
	    zdtm_vmflags(BASE, flags, sizeof(flags)))
		return -1;
	if (!zdtm_has_vmflag(flags, "nr") || (nohuge && !zdtm_has_vmflag(flags, "nh")))
		return zdtm_fail("the sparse area lost %s: VmFlags '%s'",
				 zdtm_has_vmflag(flags, "nr") ? "MADV_NOHUGEPAGE (nh)" :
								"MAP_NORESERVE (nr)",
				 flags);
	return 0;
}

static int setup(void)
{
	long mib = zdtm_opt_long("size", 1024);
	unsigned long n;
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	if (mib < 1 || mib > 65536)
		return zdtm_fail("--size=%ld MiB is out of range", mib);
	n = (unsigned long)mib * 1024 * 1024 / pg;
	p = zdtm_map_fixed(BASE, n * pg, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!p)
		return -1;
	/* Small pages only: a huge page would make untouched neighbours resident. */
	if (madvise(p, n * pg, MADV_NOHUGEPAGE) == 0)
		nohuge = true;
	else if (errno != EINVAL)
		return zdtm_err("madvise(MADV_NOHUGEPAGE)");
	pick(n);
	for (int i = 0; i < NTOUCH; i++)
		zdtm_fill(p + touched[i] * pg, pg, SEED, touched[i] * pg);
	npages = n;
	return check_vma(n);
}

static int check(void)
{
	unsigned long resident = 0, stray = 0, first_stray = 0, absent = 0;
	const char *base = (const char *)BASE;
	unsigned char *vec;
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	if (!npages)
		return zdtm_fail("the sparse area at %#lx was never mapped", BASE);
	if (check_vma(npages))
		return -1;

	/* Residency first: the reads below map the zero page. */
	vec = mmap(NULL, npages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vec == MAP_FAILED)
		return zdtm_err("mmap a %lu-byte mincore vector", npages);
	if (mincore((void *)base, npages * pg, vec)) {
		zdtm_err("mincore over the sparse area");
		munmap(vec, npages);
		return -1;
	}
	for (unsigned long k = 0; k < npages; k++) {
		if (!(vec[k] & 1)) {
			absent += is_touched(k);
			continue;
		}
		resident++;
		if (!is_touched(k) && !stray++)
			first_stray = k;
	}
	munmap(vec, npages);
	if (stray)
		return zdtm_fail("%lu never-touched pages are resident (first: page %lu), %lu resident in all, %d touched",
				 stray, first_stray, resident, NTOUCH);
	if (absent)
		zdtm_msg("%lu touched pages are not resident (swapped out?)", absent);

	for (int i = 0; i < NTOUCH; i++) {
		bad = zdtm_verify(base + touched[i] * pg, pg, SEED, touched[i] * pg);
		if (bad >= 0)
			return zdtm_fail("touched page %lu: byte %zd differs", touched[i], bad);
	}
	/* Untouched pages read zero: the neighbours of touched pages and 64 spread ones. */
	for (int i = 0; i < NTOUCH + 64; i++) {
		unsigned long idx[2];
		int cnt = 0;

		if (i < NTOUCH) {
			if (touched[i] > 0)
				idx[cnt++] = touched[i] - 1;
			if (touched[i] + 1 < npages)
				idx[cnt++] = touched[i] + 1;
		} else {
			idx[cnt++] = (npages / 64) * (i - NTOUCH) + npages / 128;
		}
		for (int j = 0; j < cnt; j++) {
			if (is_touched(idx[j]))
				continue;
			bad = first_nonzero(base + idx[j] * pg, pg);
			if (bad >= 0)
				return zdtm_fail("untouched page %lu: byte %zd is %#x, not zero", idx[j],
						 bad, (unsigned char)base[idx[j] * pg + bad]);
		}
	}
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
