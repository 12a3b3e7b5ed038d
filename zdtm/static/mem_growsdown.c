/* A MAP_GROWSDOWN area that grew by two pages (faults just below its start) keeps its grown
 * bounds, its "gd" VmFlag and its data, and still grows down on a fault after C/R. */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

/* Nothing is mapped in the 1 MiB below (the stack guard gap), so the area can grow. */
#define BASE 0x180000100000UL
#define PAGES 4UL
#define GROWN 2UL
#define SEED 0x6d0e

static size_t pg;
static char *start;	/* the grown area's start; NULL until setup grew it */

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

static struct vma expected(unsigned long from)
{
	struct vma v = { .start = from, .end = BASE + PAGES * pg, .perms = "rw-p" };

	return v;
}

static int check_gd(unsigned long at)
{
	char flags[256];

	if (vma_vmflags(at, flags, sizeof(flags)))
		return -1;
	if (!has_vmflag(flags, "gd"))
		return zdtm_fail("the area at %#lx is not growsdown: VmFlags '%s'", at, flags);
	return 0;
}

static int setup(void)
{
	struct vma want;
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	p = map_at(BASE, PAGES * pg, PROT_READ | PROT_WRITE,
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
	if (expect_vmas("after setup", BASE - 2 * GROWN * pg, BASE + PAGES * pg, &want, 1))
		return -1;
	return check_gd((unsigned long)p);
}

static int check(void)
{
	struct vma want;
	unsigned long lo;
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	lo = BASE - 2 * GROWN * pg;
	if (!start)
		return zdtm_fail("the growsdown area at %#lx was never mapped", BASE);
	want = expected((unsigned long)start);
	if (expect_vmas("growsdown area", lo, BASE + PAGES * pg, &want, 1) ||
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
	return expect_vmas("growsdown area after growing once more", lo, BASE + PAGES * pg, &want, 1);
}

ZDTM_TEST(.setup = setup, .check = check);
