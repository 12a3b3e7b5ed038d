/* One anonymous area split by mprotect into eleven pieces of five protections (two pieces
 * re-merged by a later mprotect) keeps every piece's bounds and protection, enforces them
 * (stores to read-only pieces and loads from PROT_NONE ones fault) and keeps all contents. */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x160000000000UL
#define GROUPS 12
#define GPAGES 2UL	/* pages per group */
#define SEED 0x3e07

#define RW (PROT_READ | PROT_WRITE)
#define R PROT_READ
#define RX (PROT_READ | PROT_EXEC)
#define W PROT_WRITE
#define NONE PROT_NONE

/* The protection of each group after the first pass; group 9 then becomes R and merges
 * with group 8. */
static const int first_prot[GROUPS] = { RW, R, NONE, RW, RX, R, W, RX, R, RW, NONE, RW };
static const int final_prot[GROUPS] = { RW, R, NONE, RW, RX, R, W, RX, R, R, NONE, RW };

static size_t pg;
static char *base;	/* NULL until setup split the area */

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

static void prot_str(int prot, char *s)
{
	s[0] = prot & PROT_READ ? 'r' : '-';
	s[1] = prot & PROT_WRITE ? 'w' : '-';
	s[2] = prot & PROT_EXEC ? 'x' : '-';
	s[3] = 'p';
	s[4] = '\0';
}

/* The vmas final_prot makes: adjacent groups with one protection are one vma. */
static int expected(struct vma *v)
{
	int n = 0;

	for (int g = 0; g < GROUPS; g++) {
		unsigned long start = BASE + g * GPAGES * pg;

		if (n && final_prot[g] == final_prot[g - 1]) {
			v[n - 1].end = start + GPAGES * pg;
			continue;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].start = start;
		v[n].end = start + GPAGES * pg;
		prot_str(final_prot[g], v[n].perms);
		n++;
	}
	return n;
}

static int setup(void)
{
	struct vma want[GROUPS];
	size_t glen;
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	glen = GPAGES * pg;
	p = map_at(BASE, GROUPS * glen, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!p)
		return -1;
	zdtm_fill(p, GROUPS * glen, SEED, 0);
	for (int g = 0; g < GROUPS; g++)
		if (mprotect(p + g * glen, glen, first_prot[g]))
			return zdtm_err("mprotect group %d", g);
	for (int g = 0; g < GROUPS; g++)
		if (final_prot[g] != first_prot[g] && mprotect(p + g * glen, glen, final_prot[g]))
			return zdtm_err("mprotect group %d again", g);
	base = p;
	return expect_vmas("after setup", BASE, BASE + GROUPS * glen, want, expected(want));
}

static int check(void)
{
	struct vma want[GROUPS];
	int nwant;
	size_t glen;

	pg = sysconf(_SC_PAGESIZE);
	glen = GPAGES * pg;
	if (!base)
		return zdtm_fail("the area at %#lx was never split", BASE);
	nwant = expected(want);
	if (expect_vmas("pieces", BASE, BASE + GROUPS * glen, want, nwant))
		return -1;
	for (int g = 0; g < GROUPS; g++) {
		char *q = base + g * glen, perms[5];
		int prot = final_prot[g];
		ssize_t bad;

		prot_str(prot, perms);
		if (!(prot & PROT_READ) && prot != W && !faults(q, false))
			return zdtm_fail("group %d (%s): a load does not fault", g, perms);
		if (!(prot & PROT_WRITE) && !faults(q + 1, true))
			return zdtm_fail("group %d (%s): a store does not fault", g, perms);
		if (!(prot & PROT_READ) && mprotect(q, glen, R))
			return zdtm_err("mprotect group %d readable", g);
		bad = zdtm_verify(q, glen, SEED, g * glen);
		if (!(prot & PROT_READ) && mprotect(q, glen, prot))
			return zdtm_err("mprotect group %d back to %s", g, perms);
		if (bad >= 0)
			return zdtm_fail("group %d (%s): byte %zd differs", g, perms, bad);
	}
	return expect_vmas("pieces after the probes", BASE, BASE + GROUPS * glen, want, nwant);
}

ZDTM_TEST(.setup = setup, .check = check);
