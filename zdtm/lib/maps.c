/* zdtm test library: /proc/<pid>/maps and smaps, fixed-address mmap (see maps.h). */
#include "maps.h"

#include <stdio.h>
#include <sys/mman.h>

/* Failures are recorded at the caller's file and line (the _at functions' arguments). */
#define fail(...) zdtm_fail_at(file, line, 0, __VA_ARGS__)
#define fail_errno(...) zdtm_fail_at(file, line, errno, __VA_ARGS__)

static char maps_buf[1 << 18];
static char smaps_buf[1 << 20];

struct zdtm_vma zdtm_anon_vma(unsigned long start, unsigned long end, const char *perms)
{
	struct zdtm_vma v = { .start = start, .end = end };

	snprintf(v.perms, sizeof(v.perms), "%s", perms);
	return v;
}

const char *zdtm_vma_str(const struct zdtm_vma *v, char *buf, size_t len)
{
	snprintf(buf, len, "%lx-%lx %.7s %08llx %02x:%02x %lu %.255s", v->start, v->end, v->perms,
		 v->off, v->maj, v->min, v->ino, v->path);
	return buf;
}

bool zdtm_vma_eq(const struct zdtm_vma *a, const struct zdtm_vma *b)
{
	return a->start == b->start && a->end == b->end && !strcmp(a->perms, b->perms) &&
	       a->off == b->off && a->maj == b->maj && a->min == b->min && a->ino == b->ino &&
	       !strcmp(a->path, b->path);
}

/* Read a maps file whole into maps_buf: 0, or -1 (recorded). */
static int load_maps(const char *file, int line, const char *path)
{
	ssize_t len = zdtm_read_file(path, maps_buf, sizeof(maps_buf));

	if (len < 0)
		return fail_errno("read %s", path);
	/* A full buffer may have cut the file: refuse rather than miss vmas. */
	if ((size_t)len >= sizeof(maps_buf) - 1)
		return fail("%s is larger than %zu bytes", path, sizeof(maps_buf));
	return 0;
}

/* The vma of the maps line at *pos (in maps_buf), moving *pos to the next line: 1, 0 at
 * the end, or -1 (recorded). */
static int next_vma(const char *file, int line, char **pos, struct zdtm_vma *v)
{
	char *text = *pos, *nl = strchr(text, '\n');
	int at = 0;

	if (!nl)
		return 0;
	*nl = '\0';
	*pos = nl + 1;
	memset(v, 0, sizeof(*v));
	if (sscanf(text, "%lx-%lx %7s %llx %x:%x %lu %n", &v->start, &v->end, v->perms, &v->off,
		   &v->maj, &v->min, &v->ino, &at) < 7 || !at)
		return fail("unparsable maps line '%s'", text);
	snprintf(v->path, sizeof(v->path), "%s", text + at);
	return 1;
}

int zdtm_maps_read_at(const char *file, int line, pid_t pid, unsigned long lo, unsigned long hi,
		      struct zdtm_vma *v, int max)
{
	char path[64], *pos = maps_buf;
	struct zdtm_vma cur;
	int n = 0, rc;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	if (load_maps(file, line, path))
		return -1;
	while ((rc = next_vma(file, line, &pos, &cur)) > 0) {
		if (cur.end <= lo || cur.start >= hi)
			continue;
		if (n == max)
			return fail("more than %d vmas in %lx-%lx", max, lo, hi);
		v[n++] = cur;
	}
	return rc < 0 ? -1 : n;
}

int zdtm_find_vma_at(const char *file, int line, const char *path, struct zdtm_vma *v)
{
	char *pos = maps_buf;
	struct zdtm_vma cur;
	int rc;

	if (load_maps(file, line, "/proc/self/maps"))
		return -1;
	while ((rc = next_vma(file, line, &pos, &cur)) > 0)
		if (!strcmp(cur.path, path)) {
			*v = cur;
			return 0;
		}
	return rc < 0 ? -1 : fail("no %s vma in /proc/self/maps", path);
}

int zdtm_expect_vmas_at(const char *file, int line, const char *what, unsigned long lo,
			unsigned long hi, const struct zdtm_vma *want, int n)
{
	struct zdtm_vma got[32];
	char a[512], b[512];
	int cnt = zdtm_maps_read_at(file, line, 0, lo, hi, got, 32);

	if (cnt < 0)
		return -1;
	for (int i = 0; i < n || i < cnt; i++) {
		if (i >= cnt)
			return fail("%s: vma '%s' is missing (%d vmas in %lx-%lx)", what,
				    zdtm_vma_str(&want[i], a, sizeof(a)), cnt, lo, hi);
		if (i >= n)
			return fail("%s: unexpected vma '%s' (expected %d vmas)", what,
				    zdtm_vma_str(&got[i], a, sizeof(a)), n);
		if (!zdtm_vma_eq(&got[i], &want[i]))
			return fail("%s: vma %d is '%s', expected '%s'", what, i,
				    zdtm_vma_str(&got[i], a, sizeof(a)),
				    zdtm_vma_str(&want[i], b, sizeof(b)));
	}
	return 0;
}

void *zdtm_map_fixed_at(const char *file, int line, unsigned long addr, size_t len, int prot,
			int flags, int fd, off_t off)
{
	void *p = mmap((void *)addr, len, prot, flags | MAP_FIXED_NOREPLACE, fd, off);

	if (p == MAP_FAILED) {
		fail_errno("mmap %zu bytes at %#lx", len, addr);
		return NULL;
	}
	/* Kernels before 4.17 take MAP_FIXED_NOREPLACE as a hint and may map elsewhere. */
	if (p != (void *)addr) {
		munmap(p, len);
		fail("mmap at %#lx landed at %p", addr, p);
		return NULL;
	}
	return p;
}

/* True if c starts a maps line (lowercase hex), not an smaps field (a capital). */
static bool starts_vma(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* The entry of the vma starting at start in a fresh read of /proc/self/smaps (its maps line
 * and its "Name: value" lines), valid until the next read: the text, or NULL (recorded). */
static const char *smaps_entry(const char *file, int line, unsigned long start)
{
	ssize_t n = zdtm_read_file("/proc/self/smaps", smaps_buf, sizeof(smaps_buf));
	char key[32], *p, *e;

	if (n < 0) {
		fail_errno("read /proc/self/smaps");
		return NULL;
	}
	if ((size_t)n >= sizeof(smaps_buf) - 1) {
		fail("/proc/self/smaps is larger than %zu bytes", sizeof(smaps_buf));
		return NULL;
	}
	snprintf(key, sizeof(key), "\n%lx-", start);
	if (!strncmp(smaps_buf, key + 1, strlen(key + 1)))
		p = smaps_buf;
	else if ((p = strstr(smaps_buf, key)))
		p++;
	if (!p) {
		fail("no vma starts at %#lx in smaps", start);
		return NULL;
	}
	for (e = strchr(p, '\n'); e; e = strchr(e + 1, '\n'))
		if (starts_vma(e[1])) {
			e[1] = '\0';
			break;
		}
	return p;
}

long zdtm_smaps_kb_at(const char *file, int line, unsigned long start, const char *name)
{
	const char *p = smaps_entry(file, line, start);
	size_t len = strlen(name);
	long kb;

	if (!p)
		return -1;
	while ((p = strchr(p, '\n'))) {
		p++;
		if (!strncmp(p, name, len) && p[len] == ':' && sscanf(p + len + 1, "%ld", &kb) == 1)
			return kb;
	}
	return fail("no %s: for the vma at %#lx in smaps", name, start);
}

int zdtm_vmflags_at(const char *file, int line, unsigned long start, char *out, size_t len)
{
	const char *p = smaps_entry(file, line, start), *e;

	if (!p)
		return -1;
	p = strstr(p, "\nVmFlags:");
	if (!p)
		return fail("no VmFlags for the vma at %#lx", start);
	p += strlen("\nVmFlags:");
	while (*p == ' ')
		p++;
	e = strchrnul(p, '\n');
	snprintf(out, len, "%.*s", (int)(e - p), p);
	while (*out && out[strlen(out) - 1] == ' ')
		out[strlen(out) - 1] = '\0';
	return 0;
}

bool zdtm_has_vmflag(const char *flags, const char *flag)
{
	size_t n = strlen(flags);

	for (size_t i = 0; i + 2 <= n; i += 3)
		if (flags[i] == flag[0] && flags[i + 1] == flag[1])
			return true;
	return false;
}
