/* mlocked areas stay locked: an area locked with mlock (all pages resident, VmFlags "lo"),
 * one locked with mlock2(MLOCK_ONFAULT) with two of four pages touched ("lo" and "lf"; the
 * untouched pages still not resident) and an unlocked one; VmLck and each vma's Locked: in
 * smaps are what they were, and all contents are kept. */
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

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

/* "Locked:" of the vma starting at start, in kB (smaps_buf holds a fresh smaps). */
static long smaps_locked(unsigned long start)
{
	char key[32], *p;
	long kb;

	snprintf(key, sizeof(key), "\n%lx-", start);
	p = strncmp(smaps_buf, key + 1, strlen(key + 1)) ? strstr(smaps_buf, key) : smaps_buf;
	if (!p || !(p = strstr(p, "\nLocked:")) || sscanf(p + 8, "%ld", &kb) != 1)
		return zdtm_fail("no Locked: for the vma at %#lx in smaps", start);
	return kb;
}

static int check_state(const char *when)
{
	struct vma want[NAREAS];
	unsigned char vec[8];
	long want_lck = 0, lck;
	char flags[256], buf[64];

	for (int i = 0; i < NAREAS; i++) {
		memset(&want[i], 0, sizeof(want[i]));
		want[i].start = (unsigned long)addr(i);
		want[i].end = want[i].start + areas[i].pages * pg;
		strcpy(want[i].perms, "rw-p");
	}
	if (expect_vmas(when, BASE, BASE + NAREAS * SLOT, want, NAREAS))
		return -1;
	for (int i = 0; i < NAREAS; i++) {
		const struct area *a = &areas[i];
		long want_kb = a->lo ? popcount(a->touched) * (long)pg / 1024 : 0, kb;

		if (a->lo)
			want_lck += a->pages * pg / 1024;
		/* vma_vmflags leaves smaps in smaps_buf for smaps_locked */
		if (vma_vmflags((unsigned long)addr(i), flags, sizeof(flags)))
			return -1;
		if (has_vmflag(flags, "lo") != a->lo || has_vmflag(flags, "lf") != a->lf)
			return zdtm_fail("%s: area %s has VmFlags '%s', expected %s%s", when, a->name,
					 flags, a->lo ? "lo" : "no lo", a->lf ? " lf" : " no lf");
		kb = smaps_locked((unsigned long)addr(i));
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
		char *p = map_at((unsigned long)addr(i), a->pages * pg, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

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
