/* zdtm test library: memory maps as /proc shows them (maps, smaps), and fixed-address mmap.
 *
 *	struct zdtm_vma want = zdtm_anon_vma(BASE, BASE + 4 * pg, "r--p");
 *	if (!zdtm_map_fixed(BASE, 4 * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
 *		return -1;
 *	return zdtm_expect_vmas("after setup", BASE, BASE + 4 * pg, &want, 1);
 *
 * A "recorded" failure is recorded with zdtm_fail, at the caller's file and line.
 */
#ifndef ZDTM_MAPS_H
#define ZDTM_MAPS_H

#include "zdtm.h"

/* One line of /proc/<pid>/maps. */
struct zdtm_vma {
	unsigned long start, end;
	char perms[8];
	unsigned long long off;
	unsigned int maj, min;
	unsigned long ino;
	char path[256];		/* "" for anonymous memory */
};

/* An anonymous vma as maps shows it: no file, offset 0. */
struct zdtm_vma zdtm_anon_vma(unsigned long start, unsigned long end, const char *perms);
/* "start-end perms off maj:min ino path", as in maps. */
const char *zdtm_vma_str(const struct zdtm_vma *v, char *buf, size_t len);
bool zdtm_vma_eq(const struct zdtm_vma *a, const struct zdtm_vma *b);

/* The vmas of /proc/<pid>/maps (0: self) overlapping [lo, hi), in address order: their
 * count, or -1 (recorded; also when there are more than max). */
#define zdtm_maps_read(...) zdtm_maps_read_at(__FILE__, __LINE__, __VA_ARGS__)
int zdtm_maps_read_at(const char *file, int line, pid_t pid, unsigned long lo, unsigned long hi,
		      struct zdtm_vma *v, int max);
/* The first vma of /proc/self/maps with this path ("[heap]"): 0, or -1 (recorded). */
#define zdtm_find_vma(...) zdtm_find_vma_at(__FILE__, __LINE__, __VA_ARGS__)
int zdtm_find_vma_at(const char *file, int line, const char *path, struct zdtm_vma *v);
/* The vmas of this process in [lo, hi) (32 at most) are exactly want[0..n): 0, or -1
 * (recorded, the message starting with what). */
#define zdtm_expect_vmas(...) zdtm_expect_vmas_at(__FILE__, __LINE__, __VA_ARGS__)
int zdtm_expect_vmas_at(const char *file, int line, const char *what, unsigned long lo,
			unsigned long hi, const struct zdtm_vma *want, int n);

/* mmap exactly at addr, never replacing a mapping (MAP_FIXED_NOREPLACE is added to flags):
 * the address, or NULL (recorded). */
#define zdtm_map_fixed(...) zdtm_map_fixed_at(__FILE__, __LINE__, __VA_ARGS__)
void *zdtm_map_fixed_at(const char *file, int line, unsigned long addr, size_t len, int prot,
			int flags, int fd, off_t off);

/* Field "name:" of the vma starting at start in /proc/self/smaps ("Locked"), in kB: the
 * value, or -1 (recorded). */
#define zdtm_smaps_kb(...) zdtm_smaps_kb_at(__FILE__, __LINE__, __VA_ARGS__)
long zdtm_smaps_kb_at(const char *file, int line, unsigned long start, const char *name);
/* The VmFlags of the vma starting at start ("rd wr mr mw me ac"): 0, or -1 (recorded). */
#define zdtm_vmflags(...) zdtm_vmflags_at(__FILE__, __LINE__, __VA_ARGS__)
int zdtm_vmflags_at(const char *file, int line, unsigned long start, char *out, size_t len);
/* True if a VmFlags list (two-letter names, one space apart) holds flag. */
bool zdtm_has_vmflag(const char *flags, const char *flag);

#endif
