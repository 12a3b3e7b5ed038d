/* A file in the cwd mapped shared twice (whole file read-write, and a read-only window at a
 * page offset), with pages dirtied through the mapping and never synced: after C/R both
 * mappings still map that file, the dirty data is in the mappings and in read() of the file,
 * and writes through the mapping and through the fd are seen by each other. */
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE_RW 0x140000000000UL
#define BASE_RO 0x140000100000UL
#define FNAME "mem_file_shared.dat"
#define FILE_PAGES 8UL
#define RO_OFF 2UL	/* the read-only window: file pages 2-5 */
#define RO_PAGES 4UL
#define DIRTY_FIRST 2UL	/* file pages 2-5 written through the read-write mapping */
#define DIRTY_PAGES 4UL
#define SEED_FILE 0xf5a1
#define SEED_DIRTY 0xd5a2
#define SEED_LATE_MAP 0x1a01
#define SEED_LATE_FD 0x1a02

static size_t pg;
static int fd = -1;
static char *rw, *ro;		/* NULL until setup mapped the file */
static struct zdtm_vma want_rw, want_ro;

/* The stream file page k holds after setup. */
static uint64_t seed_of(unsigned long k)
{
	return k >= DIRTY_FIRST && k < DIRTY_FIRST + DIRTY_PAGES ? SEED_DIRTY : SEED_FILE;
}

static int get_vma(unsigned long addr, size_t len, struct zdtm_vma *v)
{
	int n = zdtm_maps_read(0, addr, addr + len, v, 1);

	if (n < 0)
		return -1;
	if (n == 0)
		return zdtm_fail("nothing is mapped at %#lx", addr);
	return 0;
}

static int check_vma(const char *what, unsigned long addr, size_t len,
		     const struct zdtm_vma *want)
{
	char a[512], b[512];
	struct zdtm_vma got;

	if (get_vma(addr, len, &got))
		return -1;
	if (!zdtm_vma_eq(&got, want))
		return zdtm_fail("%s mapping is '%s', expected '%s'", what,
				 zdtm_vma_str(&got, a, sizeof(a)),
				 zdtm_vma_str(want, b, sizeof(b)));
	return 0;
}

static int setup(void)
{
	static char buf[FILE_PAGES * 65536];
	char cwd[PATH_MAX], path[PATH_MAX + 64], s[512];
	struct stat st;

	pg = sysconf(_SC_PAGESIZE);
	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(path, sizeof(path), "%s/%s", cwd, FNAME);
	fd = open(FNAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return zdtm_err("create %s", FNAME);
	zdtm_fill(buf, FILE_PAGES * pg, SEED_FILE, 0);
	if (zdtm_write_all(fd, buf, FILE_PAGES * pg) != (ssize_t)(FILE_PAGES * pg))
		return zdtm_err("write %s", FNAME);
	if (fstat(fd, &st))
		return zdtm_err("fstat %s", FNAME);
	rw = zdtm_map_fixed(BASE_RW, FILE_PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ro = zdtm_map_fixed(BASE_RO, RO_PAGES * pg, PROT_READ, MAP_SHARED, fd, RO_OFF * pg);
	if (!rw || !ro)
		return -1;
	zdtm_fill(rw + DIRTY_FIRST * pg, DIRTY_PAGES * pg, SEED_DIRTY, DIRTY_FIRST * pg);

	if (get_vma(BASE_RW, FILE_PAGES * pg, &want_rw) || get_vma(BASE_RO, RO_PAGES * pg, &want_ro))
		return -1;
	if (want_rw.end != BASE_RW + FILE_PAGES * pg || strcmp(want_rw.perms, "rw-s") ||
	    want_rw.off || want_rw.ino != st.st_ino || strcmp(want_rw.path, path))
		return zdtm_fail("the read-write mapping is '%s'",
				 zdtm_vma_str(&want_rw, s, sizeof(s)));
	if (want_ro.end != BASE_RO + RO_PAGES * pg || strcmp(want_ro.perms, "r--s") ||
	    want_ro.off != RO_OFF * pg || want_ro.ino != st.st_ino || strcmp(want_ro.path, path))
		return zdtm_fail("the read-only mapping is '%s'",
				 zdtm_vma_str(&want_ro, s, sizeof(s)));
	return 0;
}

static int check(void)
{
	static char buf[65536];
	struct stat st;
	ssize_t bad;

	pg = sysconf(_SC_PAGESIZE);
	if (!rw || !ro || fd < 0)
		return zdtm_fail("the file %s was never mapped", FNAME);
	if (check_vma("the read-write", BASE_RW, FILE_PAGES * pg, &want_rw) ||
	    check_vma("the read-only", BASE_RO, RO_PAGES * pg, &want_ro))
		return -1;
	if (fstat(fd, &st))
		return zdtm_err("fstat fd %d", fd);
	if (st.st_ino != want_rw.ino || st.st_size != (off_t)(FILE_PAGES * pg))
		return zdtm_fail("fd %d is inode %lu size %lld, expected inode %lu size %lu", fd,
				 (unsigned long)st.st_ino, (long long)st.st_size, want_rw.ino,
				 FILE_PAGES * pg);

	for (unsigned long k = 0; k < FILE_PAGES; k++) {
		bad = zdtm_verify(rw + k * pg, pg, seed_of(k), k * pg);
		if (bad >= 0)
			return zdtm_fail("read-write mapping page %lu byte %zd differs", k, bad);
		if (pread(fd, buf, pg, k * pg) != (ssize_t)pg)
			return zdtm_err("read page %lu of %s", k, FNAME);
		bad = zdtm_verify(buf, pg, seed_of(k), k * pg);
		if (bad >= 0)
			return zdtm_fail("read() of %s page %lu: byte %zd differs%s", FNAME, k, bad,
					 seed_of(k) == SEED_DIRTY ? " (dirty data lost)" : "");
	}
	for (unsigned long j = 0; j < RO_PAGES; j++) {
		bad = zdtm_verify(ro + j * pg, pg, seed_of(j + RO_OFF), (j + RO_OFF) * pg);
		if (bad >= 0)
			return zdtm_fail("read-only mapping page %lu byte %zd differs", j, bad);
	}

	/* Still one page cache: a store through the mapping is read() back ... */
	zdtm_fill(rw + 7 * pg, pg, SEED_LATE_MAP, 0);
	if (pread(fd, buf, pg, 7 * pg) != (ssize_t)pg)
		return zdtm_err("read page 7 of %s", FNAME);
	bad = zdtm_verify(buf, pg, SEED_LATE_MAP, 0);
	if (bad >= 0)
		return zdtm_fail("a store to the mapping after C/R is not in the file (byte %zd)", bad);
	/* ... and a write() to the file shows in both mappings. */
	zdtm_fill(buf, pg, SEED_LATE_FD, 0);
	if (pwrite(fd, buf, pg, 3 * pg) != (ssize_t)pg)
		return zdtm_err("write page 3 of %s", FNAME);
	bad = zdtm_verify(rw + 3 * pg, pg, SEED_LATE_FD, 0);
	if (bad >= 0)
		return zdtm_fail("a write() after C/R is not in the read-write mapping (byte %zd)",
				 bad);
	bad = zdtm_verify(ro + (3 - RO_OFF) * pg, pg, SEED_LATE_FD, 0);
	if (bad >= 0)
		return zdtm_fail("a write() after C/R is not in the read-only mapping (byte %zd)",
				 bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
