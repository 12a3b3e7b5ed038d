/* A private anonymous area after fork: the parent rewrote pages 0-3, the child rewrote pages
 * 8-15, pages 4-7 are untouched by both. After C/R each task sees its own copy (the other's
 * writes invisible), the untouched pages are still shared copy-on-write pages (pagemap: present,
 * not exclusively mapped), and a store by one task after C/R is invisible to the other. */
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
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
	struct zdtm_vma want = zdtm_anon_vma(BASE, BASE + PAGES * pg, "rw-p");

	return zdtm_expect_vmas(who, BASE, BASE + PAGES * pg, &want, 1);
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
	area = zdtm_map_fixed(BASE, PAGES * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			      -1, 0);
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
