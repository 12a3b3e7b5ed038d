/* An anonymous shared area, written by a parent and its child, stays shared after C/R:
 * each sees the other's data from before, and a write made by one after the restore is
 * seen by the other. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x120000000000UL
#define PAGES 8UL
/* pages 0-2: written by the parent in setup, 3-5: by the child in setup,
 * 6: by the parent after C/R, 7: by the child after C/R */
#define SEED_PARENT 0x5a01
#define SEED_CHILD 0x5a02
#define SEED_PARENT_LATE 0x5a03
#define SEED_CHILD_LATE 0x5a04
#define SHM_PATH "/dev/zero (deleted)"

static size_t pg;
static char *area;	/* NULL until setup mapped it */
static pid_t child;

static ssize_t first_nonzero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return (ssize_t)i;
	return -1;
}

/* Pages [first, first + n) hold the stream seed (position = offset in the area). */
static int verify_pages(const char *who, unsigned long first, unsigned long n, uint64_t seed)
{
	ssize_t bad = zdtm_verify(area + first * pg, n * pg, seed, first * pg);

	if (bad >= 0)
		return zdtm_fail("%s: page %lu byte %zu differs (seed %#llx)", who,
				 first + bad / pg, bad % pg, (unsigned long long)seed);
	return 0;
}

static int verify_zero(const char *who, unsigned long pgno)
{
	ssize_t bad = first_nonzero(area + pgno * pg, pg);

	if (bad >= 0)
		return zdtm_fail("%s: page %lu should still be zero, byte %zd is %#x", who, pgno,
				 bad, (unsigned char)area[pgno * pg + bad]);
	return 0;
}

/* The vma of pid (0: self) at BASE is the whole shared anonymous area. */
static int check_vma(const char *who, pid_t pid, struct zdtm_vma *got)
{
	char buf[512];
	int n = zdtm_maps_read(pid, BASE, BASE + PAGES * pg, got, 1);

	if (n < 0)
		return -1;
	if (n == 0)
		return zdtm_fail("%s: nothing mapped at %#lx", who, BASE);
	if (got->start != BASE || got->end != BASE + PAGES * pg || strcmp(got->perms, "rw-s") ||
	    got->off || strcmp(got->path, SHM_PATH))
		return zdtm_fail("%s: vma is '%s', expected %lx-%lx rw-s 00000000 .. %s", who,
				 zdtm_vma_str(got, buf, sizeof(buf)), BASE, BASE + PAGES * pg,
				 SHM_PATH);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	if (verify_pages("child before C/R", 0, 3, SEED_PARENT))
		return -1;
	zdtm_fill(area + 3 * pg, 3 * pg, SEED_CHILD, 3 * pg);
	return 0;
}

static int child_check(void *arg)
{
	struct zdtm_vma v;

	(void)arg;
	if (check_vma("child", 0, &v) ||
	    verify_pages("child: parent's data", 0, 3, SEED_PARENT) ||
	    verify_pages("child: own data", 3, 3, SEED_CHILD) ||
	    verify_pages("child: parent's write after C/R", 6, 1, SEED_PARENT_LATE) ||
	    verify_zero("child", 7))
		return -1;
	zdtm_fill(area + 7 * pg, pg, SEED_CHILD_LATE, 7 * pg);
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
	struct zdtm_vma v;

	pg = sysconf(_SC_PAGESIZE);
	area = zdtm_map_fixed(BASE, PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			      -1, 0);
	if (!area)
		return -1;
	zdtm_fill(area, 3 * pg, SEED_PARENT, 0);
	child = zdtm_child(&child_task);
	if (child < 0)
		return -1;
	if (verify_pages("parent before C/R: child's data", 3, 3, SEED_CHILD))
		return -1;
	return check_vma("parent after setup", 0, &v);
}

static int check(void)
{
	struct zdtm_vma mine, theirs;
	char a[512], b[512];

	pg = sysconf(_SC_PAGESIZE);
	if (!area)
		return zdtm_fail("the shared area at %#lx was never mapped", BASE);
	if (child <= 0)
		return zdtm_fail("the child sharing the area was never started");
	if (check_vma("parent", 0, &mine) || check_vma("child seen by parent", child, &theirs))
		return drop_child();
	if (mine.maj != theirs.maj || mine.min != theirs.min || mine.ino != theirs.ino) {
		zdtm_fail("parent and child map different objects: '%s' vs '%s'",
			  zdtm_vma_str(&mine, a, sizeof(a)), zdtm_vma_str(&theirs, b, sizeof(b)));
		return drop_child();
	}
	if (verify_pages("parent: own data", 0, 3, SEED_PARENT) ||
	    verify_pages("parent: child's data", 3, 3, SEED_CHILD) ||
	    verify_zero("parent", 6) || verify_zero("parent", 7))
		return drop_child();
	zdtm_fill(area + 6 * pg, pg, SEED_PARENT_LATE, 6 * pg);
	if (zdtm_child_check(child))
		return -1;
	if (verify_pages("parent: child's write after C/R", 7, 1, SEED_CHILD_LATE))
		return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
