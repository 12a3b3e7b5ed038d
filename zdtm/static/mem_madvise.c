/* madvise state survives C/R: MADV_DONTNEED pages still read zero, and the VM_DONTFORK,
 * VM_WIPEONFORK and VM_DONTDUMP marks (VmFlags dc, wf, dd) are kept and act: a child forked
 * after C/R has no DONTFORK area, sees the WIPEONFORK area zeroed while the parent keeps its
 * data, and sees the other areas' data. */
#include <sys/mman.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 0x190000000000UL
#define SLOT 0x100000UL

enum { A_DONTNEED, A_DONTFORK, A_WIPEONFORK, A_DONTDUMP, A_PLAIN, NAREAS };

static const struct area {
	const char *name;
	unsigned long pages;
	int advice;		/* -1: none */
	const char *flag;	/* the VmFlags mark it must carry, NULL: none */
} areas[NAREAS] = {
	[A_DONTNEED] = { "dontneed", 8, MADV_DONTNEED, NULL },
	[A_DONTFORK] = { "dontfork", 4, MADV_DONTFORK, "dc" },
	[A_WIPEONFORK] = { "wipeonfork", 4, MADV_WIPEONFORK, "wf" },
	[A_DONTDUMP] = { "dontdump", 4, MADV_DONTDUMP, "dd" },
	[A_PLAIN] = { "plain", 4, -1, NULL },
};
static const char *const marks[] = { "dc", "wf", "dd" };
/* MADV_DONTNEED drops pages 2-5 of its area */
#define DN_FIRST 2UL
#define DN_PAGES 4UL

static size_t pg;
static bool built;	/* false until setup advised the areas */

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

static uint64_t seed(int i)
{
	return 0xad00 + i;
}

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

static int expected(struct vma *v)
{
	for (int i = 0; i < NAREAS; i++) {
		memset(&v[i], 0, sizeof(v[i]));
		v[i].start = (unsigned long)addr(i);
		v[i].end = v[i].start + areas[i].pages * pg;
		strcpy(v[i].perms, "rw-p");
	}
	return NAREAS;
}

static int check_marks(void)
{
	char flags[256];

	for (int i = 0; i < NAREAS; i++) {
		if (vma_vmflags((unsigned long)addr(i), flags, sizeof(flags)))
			return -1;
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
			bool want = areas[i].flag && !strcmp(areas[i].flag, marks[m]);

			if (has_vmflag(flags, marks[m]) != want)
				return zdtm_fail("area %s: VmFlags '%s' %s '%s'", areas[i].name, flags,
						 want ? "lack" : "carry a stray", marks[m]);
		}
	}
	return 0;
}

/* Area i holds its data, except the pages MADV_DONTNEED dropped (and, in a child, the
 * WIPEONFORK area) which read zero. */
static int check_data(const char *who, int i, bool wiped)
{
	for (unsigned long k = 0; k < areas[i].pages; k++) {
		char *p = addr(i) + k * pg;
		bool zero = wiped || (i == A_DONTNEED && k >= DN_FIRST && k < DN_FIRST + DN_PAGES);
		ssize_t bad = zero ? first_nonzero(p, pg) : zdtm_verify(p, pg, seed(i), k * pg);

		if (bad >= 0)
			return zdtm_fail("%s: area %s page %lu byte %zd %s", who, areas[i].name, k,
					 bad, zero ? "is not zero" : "differs");
	}
	return 0;
}

static void child(void)
{
	unsigned char vec[8];

	if (mincore(addr(A_DONTFORK), areas[A_DONTFORK].pages * pg, vec) == 0 || errno != ENOMEM) {
		zdtm_fail("child forked after C/R: the MADV_DONTFORK area at %p is mapped",
			  addr(A_DONTFORK));
		_exit(1);
	}
	if (check_data("child forked after C/R", A_DONTNEED, false) ||
	    check_data("child forked after C/R", A_WIPEONFORK, true) ||
	    check_data("child forked after C/R", A_DONTDUMP, false) ||
	    check_data("child forked after C/R", A_PLAIN, false))
		_exit(1);
	_exit(0);
}

static int setup(void)
{
	struct vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NAREAS; i++) {
		char *p = map_at((unsigned long)addr(i), areas[i].pages * pg, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (!p)
			return -1;
		zdtm_fill(p, areas[i].pages * pg, seed(i), 0);
		if (i == A_DONTNEED) {
			if (madvise(p + DN_FIRST * pg, DN_PAGES * pg, MADV_DONTNEED))
				return zdtm_err("madvise(MADV_DONTNEED)");
		} else if (areas[i].advice >= 0 &&
			   madvise(p, areas[i].pages * pg, areas[i].advice)) {
			return zdtm_err("madvise area %s", areas[i].name);
		}
	}
	built = true;
	if (expect_vmas("after setup", BASE, BASE + NAREAS * SLOT, want, expected(want)) ||
	    check_marks())
		return -1;
	return check_data("after setup", A_DONTNEED, false);
}

static int check(void)
{
	struct vma want[NAREAS];
	int status;
	pid_t pid;

	pg = sysconf(_SC_PAGESIZE);
	if (!built)
		return zdtm_fail("the advised areas at %#lx were never mapped", BASE);
	if (expect_vmas("areas", BASE, BASE + NAREAS * SLOT, want, expected(want)) || check_marks())
		return -1;
	for (int i = 0; i < NAREAS; i++)
		if (check_data("parent", i, false))
			return -1;
	pid = fork();
	if (pid < 0)
		return zdtm_err("fork");
	if (pid == 0)
		child();
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return zdtm_err("waitpid(%d)", pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return zdtm_fail("the child forked after C/R failed (status %#x)", status);
	/* WIPEONFORK wiped the child's copy only. */
	return check_data("parent after the fork", A_WIPEONFORK, false);
}

ZDTM_TEST(.setup = setup, .check = check);
