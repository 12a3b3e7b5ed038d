/* A private anonymous area after fork: the parent rewrote pages 0-3, the child rewrote pages
 * 8-15, pages 4-7 are untouched by both. After C/R each task sees its own copy (the other's
 * writes invisible), the untouched pages are still shared copy-on-write pages (pagemap: present,
 * not exclusively mapped), and a store by one task after C/R is invisible to the other. */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x1c0000000000UL
#define PAGES 16UL
#define SEED_ORIG 0xc0e1
#define SEED_PARENT 0xc0e2	/* pages 0-3, in the parent */
#define SEED_CHILD 0xc0e3	/* pages 8-15, in the child */
#define SEED_LATE 0xc0e4
#define PM_PRESENT (1ULL << 63)
#define PM_EXCLUSIVE (1ULL << 56)

static size_t pg;
static char *area;	/* NULL until setup mapped it */
static pid_t child;

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

/* Pages [first, first + n) hold stream seed (position = offset in the area). */
static int verify(const char *who, unsigned long first, unsigned long n, uint64_t seed,
		  const char *why)
{
	ssize_t bad = zdtm_verify(area + first * pg, n * pg, seed, first * pg);

	if (bad >= 0)
		return zdtm_fail("%s: page %lu byte %zu differs (%s)", who, first + bad / pg,
				 bad % pg, why);
	return 0;
}

/* Pages [first, first + n) are present and mapped by more than this task. */
static int expect_shared(const char *who, unsigned long first, unsigned long n)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return zdtm_err("%s: open /proc/self/pagemap", who);
	for (unsigned long k = first; k < first + n; k++) {
		uint64_t e;

		if (pread(fd, &e, sizeof(e), (BASE / pg + k) * sizeof(e)) != sizeof(e)) {
			close(fd);
			return zdtm_err("%s: read pagemap of page %lu", who, k);
		}
		if (!(e & PM_PRESENT) || (e & PM_EXCLUSIVE)) {
			close(fd);
			return zdtm_fail("%s: page %lu is %s, not a page shared copy-on-write (pagemap %#llx)",
					 who, k, e & PM_PRESENT ? "exclusively mapped" : "not present",
					 (unsigned long long)e);
		}
	}
	close(fd);
	return 0;
}

static int check_vma(const char *who)
{
	struct vma want = { .start = BASE, .end = BASE + PAGES * pg, .perms = "rw-p" };

	return expect_vmas(who, BASE, BASE + PAGES * pg, &want, 1);
}

static int child_setup(void *arg)
{
	(void)arg;
	zdtm_fill(area + 8 * pg, 8 * pg, SEED_CHILD, 8 * pg);
	return 0;
}

static int child_check(void *arg)
{
	(void)arg;
	if (check_vma("child") ||
	    verify("child", 0, 4, SEED_ORIG, "the parent's writes must stay invisible") ||
	    verify("child", 4, 3, SEED_ORIG, "never written") ||
	    verify("child", 7, 1, SEED_ORIG, "the parent's store after C/R must stay invisible") ||
	    verify("child", 8, 8, SEED_CHILD, "written by the child") ||
	    expect_shared("child", 4, 3))
		return -1;
	zdtm_fill(area + 4 * pg, pg, SEED_LATE, 0);
	return 0;
}

static const struct zdtm_task child_task = { .setup = child_setup, .check = child_check };

/* The parent's check failed before the child's: do not leave the child behind. */
static int drop_child(void)
{
	int status;

	if (child > 0 && !kill(child, SIGKILL))
		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	child = 0;
	return -1;
}

static int setup(void)
{
	pg = sysconf(_SC_PAGESIZE);
	area = map_at(BASE, PAGES * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!area)
		return -1;
	zdtm_fill(area, PAGES * pg, SEED_ORIG, 0);
	child = zdtm_child(&child_task);
	if (child < 0)
		return -1;
	zdtm_fill(area, 4 * pg, SEED_PARENT, 0);
	return check_vma("parent after setup") || expect_shared("parent after setup", 4, 4);
}

static int check(void)
{
	pg = sysconf(_SC_PAGESIZE);
	if (!area)
		return zdtm_fail("the area at %#lx was never mapped", BASE);
	if (child <= 0)
		return zdtm_fail("the child sharing the area was never forked");
	if (check_vma("parent") ||
	    verify("parent", 0, 4, SEED_PARENT, "written by the parent") ||
	    verify("parent", 4, 12, SEED_ORIG, "the child's writes must stay invisible") ||
	    expect_shared("parent", 4, 4))
		return drop_child();
	zdtm_fill(area + 7 * pg, pg, SEED_LATE, 0);
	if (zdtm_child_check(child))
		return -1;
	return verify("parent", 4, 1, SEED_ORIG, "the child's store after C/R must stay invisible");
}

ZDTM_TEST(.setup = setup, .check = check);
