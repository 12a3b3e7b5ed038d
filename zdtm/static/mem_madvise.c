/* madvise state survives C/R: MADV_DONTNEED pages still read zero, and the VM_DONTFORK,
 * VM_WIPEONFORK and VM_DONTDUMP marks (VmFlags dc, wf, dd) are kept and act: a child forked
 * after C/R has no DONTFORK area, sees the WIPEONFORK area zeroed while the parent keeps its
 * data, and sees the other areas' data. */
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
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

static int expected(struct zdtm_vma *v)
{
	for (int i = 0; i < NAREAS; i++)
		v[i] = zdtm_anon_vma((unsigned long)addr(i),
				     (unsigned long)addr(i) + areas[i].pages * pg, "rw-p");
	return NAREAS;
}

static int check_marks(void)
{
	char flags[256];

	for (int i = 0; i < NAREAS; i++) {
		if (zdtm_vmflags((unsigned long)addr(i), flags, sizeof(flags)))
			return -1;
		for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
			bool want = areas[i].flag && !strcmp(areas[i].flag, marks[m]);

			if (zdtm_has_vmflag(flags, marks[m]) != want)
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
	struct zdtm_vma want[NAREAS];

	pg = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NAREAS; i++) {
		char *p = zdtm_map_fixed((unsigned long)addr(i), areas[i].pages * pg,
					 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
					 -1, 0);

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
	if (zdtm_expect_vmas("after setup", BASE, BASE + NAREAS * SLOT, want, expected(want)) ||
	    check_marks())
		return -1;
	return check_data("after setup", A_DONTNEED, false);
}

static int check(void)
{
	struct zdtm_vma want[NAREAS];
	int status;
	pid_t pid;

	pg = sysconf(_SC_PAGESIZE);
	if (!built)
		return zdtm_fail("the advised areas at %#lx were never mapped", BASE);
	if (zdtm_expect_vmas("areas", BASE, BASE + NAREAS * SLOT, want, expected(want)) ||
	    check_marks())
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
