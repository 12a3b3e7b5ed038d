/* The main stack grown far below its initial size keeps its size and the data written deep
 * in it: setup grows [stack] by about 1 MiB with alloca, fills the deepest 768 KiB (far below
 * anything later calls touch) and keeps a pointer to it; the check finds the same [stack]
 * vma, still growsdown ("gd"), covering the data, and the data intact. */
#include <alloca.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define GROW (1024UL * 1024)	/* alloca'd below setup's frame */
#define DATA (768UL * 1024)	/* the deepest part of it, filled */
#define SEED 0x57ac

static char *deep;		/* NULL until setup filled the deep stack */
static struct vma want;		/* [stack] after the growth */

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

/* The [stack] vma: 0, or -1 (recorded). */
static int stack_vma(struct vma *v)
{
	static struct vma all[128];
	int n = read_vmas_of(0, 0, ~0UL, all, 128);

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (!strcmp(all[i].path, "[stack]")) {
			*v = all[i];
			return 0;
		}
	return zdtm_fail("no [stack] vma in /proc/self/maps");
}

static __attribute__((noinline)) int grow(void)
{
	size_t pg = sysconf(_SC_PAGESIZE);
	char *volatile p = alloca(GROW);

	/* Touch downwards, a page at a time, the way a growing stack faults. */
	for (long off = GROW - pg; off >= 0; off -= pg)
		p[off] = 1;
	zdtm_fill(p, DATA, SEED, 0);
	deep = p;
	return stack_vma(&want);
}

static int setup(void)
{
	char s[512];
	struct rlimit rl;

	if (getrlimit(RLIMIT_STACK, &rl))
		return zdtm_err("getrlimit(RLIMIT_STACK)");
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4 * GROW)
		return zdtm_fail("RLIMIT_STACK %llu is too small to grow the stack by %lu",
				 (unsigned long long)rl.rlim_cur, GROW);
	if (grow())
		return -1;
	if ((unsigned long)deep < want.start || (unsigned long)deep + DATA > want.end)
		return zdtm_fail("the grown stack %p+%lu is not inside [stack] '%s'", deep, DATA,
				 vma_str(&want, s, sizeof(s)));
	zdtm_msg("[stack] grew to %lu KiB, data at %p", (want.end - want.start) >> 10, deep);
	return 0;
}

static int check(void)
{
	char a[512], b[512], flags[256];
	struct vma got;
	ssize_t bad;

	if (!deep)
		return zdtm_fail("the stack was never grown (no data pointer)");
	if (stack_vma(&got))
		return -1;
	if (!vma_eq(&got, &want))
		return zdtm_fail("[stack] is '%s', expected '%s' (%ld KiB smaller)",
				 vma_str(&got, a, sizeof(a)), vma_str(&want, b, sizeof(b)),
				 (long)((want.end - want.start) - (got.end - got.start)) / 1024);
	if (vma_vmflags(got.start, flags, sizeof(flags)))
		return -1;
	if (!has_vmflag(flags, "gd"))
		return zdtm_fail("[stack] is not growsdown: VmFlags '%s'", flags);
	bad = zdtm_verify(deep, DATA, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("stack data at %p: byte %zd of %lu differs (%lu bytes below the top)",
				 deep, bad, DATA, got.end - (unsigned long)deep - bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
