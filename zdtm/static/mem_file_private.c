/* A private mapping of a file in the cwd (at a page offset) keeps clean pages that still
 * follow the file and copy-on-write pages that never reached it: the mapping still maps the
 * same file (path, offset, device, inode), a write to the file after C/R shows through the
 * clean pages but not through the dirty ones. */
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x130000000000UL
#define FNAME "mem_file_private.dat"
#define FILE_PAGES 8UL
#define MAP_OFF 1UL	/* the mapping starts at file page 1 */
#define MAP_PAGES 6UL
/* mapping pages 0-2: read (clean), 3-4: written (private dirty), 5: untouched */
#define DIRTY_FIRST 3UL
#define DIRTY_PAGES 2UL
#define SEED_FILE 0xf11e
#define SEED_DIRTY 0xd17
#define SEED_LATE 0x1a7e

static size_t pg;
static char *area;		/* NULL until setup mapped the file */
static struct zdtm_vma want;	/* the mapping's maps line after setup */

static bool is_dirty(unsigned long k)
{
	return k >= DIRTY_FIRST && k < DIRTY_FIRST + DIRTY_PAGES;
}

static int setup(void)
{
	static char buf[FILE_PAGES * 65536];
	char cwd[PATH_MAX], s[512];
	volatile char sink = 0;
	struct stat st;
	int fd, n;

	pg = sysconf(_SC_PAGESIZE);
	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	fd = open(FNAME, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return zdtm_err("create %s", FNAME);
	zdtm_fill(buf, FILE_PAGES * pg, SEED_FILE, 0);
	if (zdtm_write_all(fd, buf, FILE_PAGES * pg) != (ssize_t)(FILE_PAGES * pg))
		return zdtm_err("write %s", FNAME);
	area = zdtm_map_fixed(BASE, MAP_PAGES * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
			      MAP_OFF * pg);
	if (!area)
		return -1;
	if (fstat(fd, &st))
		return zdtm_err("fstat %s", FNAME);
	close(fd);
	for (unsigned long k = 0; k < MAP_PAGES; k++)
		if (k < DIRTY_FIRST)
			sink += area[k * pg + 17];
	zdtm_fill(area + DIRTY_FIRST * pg, DIRTY_PAGES * pg, SEED_DIRTY, DIRTY_FIRST * pg);
	(void)sink;

	n = zdtm_maps_read(0, BASE, BASE + MAP_PAGES * pg, &want, 1);
	if (n != 1)
		return n < 0 ? -1 : zdtm_fail("the mapping at %#lx is not in maps", BASE);
	if (want.start != BASE || want.end != BASE + MAP_PAGES * pg || strcmp(want.perms, "rw-p") ||
	    want.off != MAP_OFF * pg || strncmp(want.path, cwd, strlen(cwd)) ||
	    strcmp(want.path + strlen(cwd), "/" FNAME) || want.ino != st.st_ino)
		return zdtm_fail("the new mapping is '%s' (file %s/%s inode %lu)",
				 zdtm_vma_str(&want, s, sizeof(s)), cwd, FNAME,
				 (unsigned long)st.st_ino);
	if (want.maj != major(st.st_dev) || want.min != minor(st.st_dev))
		zdtm_msg("note: maps shows device %02x:%02x, stat %02x:%02x", want.maj, want.min,
			 major(st.st_dev), minor(st.st_dev));
	return 0;
}

static int check(void)
{
	static char buf[65536];
	struct zdtm_vma got;
	char a[512], b[512];
	ssize_t bad;
	int fd, n;

	pg = sysconf(_SC_PAGESIZE);
	if (!area)
		return zdtm_fail("the file %s was never mapped at %#lx", FNAME, BASE);
	n = zdtm_maps_read(0, BASE, BASE + MAP_PAGES * pg, &got, 1);
	if (n < 0)
		return -1;
	if (n == 0)
		return zdtm_fail("nothing is mapped at %#lx, expected '%s'", BASE,
				 zdtm_vma_str(&want, a, sizeof(a)));
	if (!zdtm_vma_eq(&got, &want))
		return zdtm_fail("the mapping is '%s', expected '%s'",
				 zdtm_vma_str(&got, a, sizeof(a)),
				 zdtm_vma_str(&want, b, sizeof(b)));

	for (unsigned long k = 0; k < MAP_PAGES; k++) {
		if (is_dirty(k))
			bad = zdtm_verify(area + k * pg, pg, SEED_DIRTY, k * pg);
		else
			bad = zdtm_verify(area + k * pg, pg, SEED_FILE, (k + MAP_OFF) * pg);
		if (bad >= 0)
			return zdtm_fail("%s page %lu of the mapping: byte %zd differs",
					 is_dirty(k) ? "private dirty" : "clean", k, bad);
	}

	fd = open(FNAME, O_RDWR);
	if (fd < 0)
		return zdtm_err("open %s", FNAME);
	for (unsigned long k = 0; k < FILE_PAGES; k++) {
		if (pread(fd, buf, pg, k * pg) != (ssize_t)pg)
			return zdtm_err("read page %lu of %s", k, FNAME);
		bad = zdtm_verify(buf, pg, SEED_FILE, k * pg);
		if (bad >= 0)
			return zdtm_fail("%s page %lu byte %zd changed%s", FNAME, k, bad,
					 is_dirty(k - MAP_OFF) ? ": private dirty data reached the file" : "");
	}

	/* Page 1 of the mapping is a clean file page: a write to the file shows through.
	 * Page 3 is a private copy: the same write to the file must not. */
	zdtm_fill(buf, pg, SEED_LATE, 0);
	if (pwrite(fd, buf, pg, (1 + MAP_OFF) * pg) != (ssize_t)pg ||
	    pwrite(fd, buf, pg, (DIRTY_FIRST + MAP_OFF) * pg) != (ssize_t)pg)
		return zdtm_err("write %s after C/R", FNAME);
	close(fd);
	bad = zdtm_verify(area + pg, pg, SEED_LATE, 0);
	if (bad >= 0)
		return zdtm_fail("clean page 1 no longer follows %s (byte %zd): an anonymous copy?",
				 FNAME, bad);
	bad = zdtm_verify(area + DIRTY_FIRST * pg, pg, SEED_DIRTY, DIRTY_FIRST * pg);
	if (bad >= 0)
		return zdtm_fail("private dirty page %lu changed with the file (byte %zd)",
				 DIRTY_FIRST, bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
