/* A large sparse area (default 1 GiB, PROT_READ|PROT_WRITE, MAP_NORESERVE, MADV_NOHUGEPAGE)
 * with 24 pages written at scattered offsets stays sparse: same vma and VmFlags (nr, nh), the
 * written pages keep their data, no other page became resident (mincore), and untouched pages
 * read zero. Only the virtual size is large. */
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x1a0000000000UL
#define NTOUCH 24
#define SEED 0x5a75e

static size_t pg;
static unsigned long npages;		/* the area's size in pages; 0 until setup mapped it */
static unsigned long touched[NTOUCH];	/* page indexes written in setup */
static bool nohuge;			/* MADV_NOHUGEPAGE applied (kernels with THP) */

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

static char smaps_buf[1 << 19];

/* The VmFlags of the vma starting at start ("rd wr mr mw me ac"): 0, or -1 (recorded). */
static int vma_vmflags(unsigned long start, char *out, size_t len)
{
	ssize_t n = zdtm_read_file("/proc/self/smaps", smaps_buf, sizeof(smaps_buf));
	char key[32], *p, *e;

	if (n < 0)
		return zdtm_err("read /proc/self/smaps");
	if ((size_t)n >= sizeof(smaps_buf) - 1)
		return zdtm_fail("/proc/self/smaps is larger than %zu bytes", sizeof(smaps_buf));
	snprintf(key, sizeof(key), "\n%lx-", start);
	p = strncmp(smaps_buf, key + 1, strlen(key + 1)) ? strstr(smaps_buf, key) : smaps_buf;
	if (!p)
		return zdtm_fail("no vma starts at %#lx in smaps", start);
	p = strstr(p, "\nVmFlags:");
	if (!p)
		return zdtm_fail("no VmFlags for the vma at %#lx", start);
	p += strlen("\nVmFlags:");
	while (*p == ' ')
		p++;
	e = strchr(p, '\n');
	snprintf(out, len, "%.*s", e ? (int)(e - p) : (int)strlen(p), p);
	while (*out && out[strlen(out) - 1] == ' ')
		out[strlen(out) - 1] = '\0';
	return 0;
}

/* True if the VmFlags list flags (two-letter names, one space apart) holds f. */
static bool has_vmflag(const char *flags, const char *f)
{
	size_t n = strlen(flags);

	for (size_t i = 0; i + 2 <= n; i += 3)
		if (flags[i] == f[0] && flags[i + 1] == f[1])
			return true;
	return false;
}

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
	struct vma want = { .start = BASE, .end = BASE + n * pg, .perms = "rw-p" };
	char flags[256];

	if (expect_vmas("sparse area", BASE, BASE + n * pg, &want, 1) ||
	    vma_vmflags(BASE, flags, sizeof(flags)))
		return -1;
	if (!has_vmflag(flags, "nr") || (nohuge && !has_vmflag(flags, "nh")))
		return zdtm_fail("the sparse area lost %s: VmFlags '%s'",
				 has_vmflag(flags, "nr") ? "MADV_NOHUGEPAGE (nh)" : "MAP_NORESERVE (nr)",
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
	p = map_at(BASE, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
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
