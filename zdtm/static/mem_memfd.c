/* memfd-backed mappings survive C/R: a memfd kept open and mapped both shared (with pages
 * written through the mapping) and private at a page offset (one page copied on write), and
 * a second memfd mapped shared after its fd was closed. The mappings keep their memfd names,
 * offsets and protections; the open fd and both of its mappings are still one inode (a
 * write() shows in the shared and in the clean private pages, not in the copied one); the
 * fd-less mapping is still shared with a child forked after C/R. */
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x1b0000000000UL
#define SLOT 0x100000UL
#define SH_ADDR (BASE)			/* memfd 1, shared, whole file (8 pages) */
#define PR_ADDR (BASE + SLOT)		/* memfd 1, private, file pages 4-7 */
#define LONE_ADDR (BASE + 2 * SLOT)	/* memfd 2, shared, 4 pages, fd closed */
#define PAGES 8UL
#define PR_OFF 4UL
#define PR_PAGES 4UL
#define LONE_PAGES 4UL
#define SEED_FILE 0x3fd1
#define SEED_SHARED 0x3fd2	/* pages 0-1 written through the shared mapping */
#define SEED_COW 0x3fd3		/* private page 0 (file page 4) written */
#define SEED_LONE 0x3fd4
#define SEED_LATE 0x3fd5
#define SEED_CHILD 0x3fd6

static size_t pg;
static int fd = -1;		/* memfd 1; -1 until setup made it */
static char *sh, *pr, *lone;
static char name1[64], name2[64];

static uint64_t file_seed(unsigned long k)
{
	return k < 2 ? SEED_SHARED : SEED_FILE;
}

/* The vma at addr must be [addr, addr + pages) with these perms, offset and memfd name. */
static int check_vma(const char *what, unsigned long addr, unsigned long pages, const char *perms,
		     unsigned long off, const char *name, struct zdtm_vma *got)
{
	char path[128], s[512];
	int n = zdtm_maps_read(0, addr, addr + pages * pg, got, 1);

	if (n < 0)
		return -1;
	if (n == 0)
		return zdtm_fail("%s: nothing is mapped at %#lx", what, addr);
	snprintf(path, sizeof(path), "/memfd:%s (deleted)", name);
	if (got->start != addr || got->end != addr + pages * pg || strcmp(got->perms, perms) ||
	    got->off != off || strcmp(got->path, path))
		return zdtm_fail("%s is '%s', expected %lx-%lx %s %08lx .. %s", what,
				 zdtm_vma_str(got, s, sizeof(s)), addr, addr + pages * pg, perms,
				 off, path);
	return 0;
}

static int check_vmas(void)
{
	struct zdtm_vma a, b, c;
	struct stat st;

	if (check_vma("shared mapping", SH_ADDR, PAGES, "rw-s", 0, name1, &a) ||
	    check_vma("private mapping", PR_ADDR, PR_PAGES, "rw-p", PR_OFF * pg, name1, &b) ||
	    check_vma("fd-less mapping", LONE_ADDR, LONE_PAGES, "rw-s", 0, name2, &c))
		return -1;
	if (fstat(fd, &st))
		return zdtm_err("fstat memfd %d", fd);
	if (a.ino != st.st_ino || b.ino != st.st_ino)
		return zdtm_fail("memfd %d is inode %lu but its mappings map inodes %lu and %lu", fd,
				 (unsigned long)st.st_ino, a.ino, b.ino);
	if (c.ino == st.st_ino)
		return zdtm_fail("the second memfd's mapping maps the first memfd (inode %lu)", c.ino);
	if (st.st_size != (off_t)(PAGES * pg))
		return zdtm_fail("memfd %d is %lld bytes, expected %lu", fd, (long long)st.st_size,
				 PAGES * pg);
	return 0;
}

static int setup(void)
{
	static char buf[PAGES * 65536];
	volatile char sink = 0;
	int fd2;

	pg = sysconf(_SC_PAGESIZE);
	snprintf(name1, sizeof(name1), "mem_memfd_%d", getpid());
	snprintf(name2, sizeof(name2), "mem_memfd2_%d", getpid());
	fd = memfd_create(name1, 0);
	if (fd < 0)
		return zdtm_err("memfd_create(%s)", name1);
	zdtm_fill(buf, PAGES * pg, SEED_FILE, 0);
	if (zdtm_write_all(fd, buf, PAGES * pg) != (ssize_t)(PAGES * pg))
		return zdtm_err("write memfd %d", fd);
	sh = zdtm_map_fixed(SH_ADDR, PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pr = zdtm_map_fixed(PR_ADDR, PR_PAGES * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd,
			    PR_OFF * pg);
	if (!sh || !pr)
		return -1;
	zdtm_fill(sh, 2 * pg, SEED_SHARED, 0);
	for (unsigned long j = 1; j < PR_PAGES; j++)
		sink += pr[j * pg];
	(void)sink;
	zdtm_fill(pr, pg, SEED_COW, 0);

	fd2 = memfd_create(name2, MFD_CLOEXEC);
	if (fd2 < 0)
		return zdtm_err("memfd_create(%s)", name2);
	if (ftruncate(fd2, LONE_PAGES * pg))
		return zdtm_err("ftruncate memfd %d", fd2);
	lone = zdtm_map_fixed(LONE_ADDR, LONE_PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED,
			      fd2, 0);
	if (!lone)
		return -1;
	close(fd2);
	zdtm_fill(lone, LONE_PAGES * pg, SEED_LONE, 0);
	return check_vmas();
}

static int check(void)
{
	static char buf[65536];
	char link[64], target[128], want[128];
	int status;
	ssize_t bad, n;
	pid_t pid;

	pg = sysconf(_SC_PAGESIZE);
	if (fd < 0 || !sh || !pr || !lone)
		return zdtm_fail("the memfds were never created and mapped");
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name1);
	if (strcmp(target, want))
		return zdtm_fail("fd %d is '%s', expected '%s'", fd, target, want);
	if (check_vmas())
		return -1;

	for (unsigned long k = 0; k < PAGES; k++) {
		if (pread(fd, buf, pg, k * pg) != (ssize_t)pg)
			return zdtm_err("read page %lu of memfd %d", k, fd);
		bad = zdtm_verify(buf, pg, file_seed(k), k * pg);
		if (bad >= 0)
			return zdtm_fail("memfd %d page %lu (read()): byte %zd differs", fd, k, bad);
		bad = zdtm_verify(sh + k * pg, pg, file_seed(k), k * pg);
		if (bad >= 0)
			return zdtm_fail("shared mapping page %lu: byte %zd differs", k, bad);
	}
	bad = zdtm_verify(pr, pg, SEED_COW, 0);
	if (bad >= 0)
		return zdtm_fail("private mapping page 0 (copied on write): byte %zd differs", bad);
	for (unsigned long j = 1; j < PR_PAGES; j++) {
		bad = zdtm_verify(pr + j * pg, pg, SEED_FILE, (PR_OFF + j) * pg);
		if (bad >= 0)
			return zdtm_fail("private mapping page %lu (clean): byte %zd differs", j, bad);
	}
	bad = zdtm_verify(lone, LONE_PAGES * pg, SEED_LONE, 0);
	if (bad >= 0)
		return zdtm_fail("fd-less mapping: byte %zd differs", bad);

	/* A write() to file pages 4 and 5: seen in the shared mapping and in the clean private
	 * page 1 (file page 5), not in the copied private page 0 (file page 4). */
	zdtm_fill(buf, 2 * pg, SEED_LATE, 0);
	if (pwrite(fd, buf, 2 * pg, PR_OFF * pg) != (ssize_t)(2 * pg))
		return zdtm_err("write memfd %d after C/R", fd);
	bad = zdtm_verify(sh + PR_OFF * pg, 2 * pg, SEED_LATE, 0);
	if (bad >= 0)
		return zdtm_fail("a write() after C/R is not in the shared mapping (byte %zd)", bad);
	bad = zdtm_verify(pr + pg, pg, SEED_LATE, pg);
	if (bad >= 0)
		return zdtm_fail("a write() after C/R is not in the clean private page (byte %zd)",
				 bad);
	bad = zdtm_verify(pr, pg, SEED_COW, 0);
	if (bad >= 0)
		return zdtm_fail("a write() after C/R changed the copied private page (byte %zd)",
				 bad);

	/* The fd-less mapping is still MAP_SHARED: a child's store shows here. */
	pid = fork();
	if (pid < 0)
		return zdtm_err("fork");
	if (pid == 0) {
		zdtm_fill(lone + pg, pg, SEED_CHILD, 0);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return zdtm_err("waitpid(%d)", pid);
	bad = zdtm_verify(lone + pg, pg, SEED_CHILD, 0);
	if (bad >= 0)
		return zdtm_fail("a child's store to the fd-less memfd mapping is not seen (byte %zd)",
				 bad);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
