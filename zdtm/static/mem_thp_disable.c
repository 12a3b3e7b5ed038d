/* The per-process THP switch survives C/R: after prctl(PR_SET_THP_DISABLE, 1) the process
 * still reads 1 from PR_GET_THP_DISABLE and /proc/self/status shows THP_enabled: 0, and an
 * anonymous area with data written while THP was off keeps its data and has no huge pages. */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x1f0000000000UL	/* 2 MiB aligned */
#define LEN (2UL << 20)
#define SEED 0x7d15

static char *area;	/* NULL until setup disabled THP and filled the area */

static int check_switch(const char *when)
{
	char buf[64];
	int r = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);

	if (r < 0)
		return zdtm_err("%s: prctl(PR_GET_THP_DISABLE)", when);
	if (r != 1)
		return zdtm_fail("%s: PR_GET_THP_DISABLE is %d, expected 1", when, r);
	if (zdtm_proc_status(0, "THP_enabled", buf, sizeof(buf)))
		return zdtm_fail("%s: no THP_enabled in /proc/self/status", when);
	if (strcmp(buf, "0"))
		return zdtm_fail("%s: /proc/self/status shows THP_enabled: %s, expected 0", when, buf);
	return 0;
}

/* AnonHugePages of the whole process (smaps_rollup), in kB, or -1. */
static long anon_huge_kb(void)
{
	static char buf[8192];
	char *p;
	long kb;

	if (zdtm_read_file("/proc/self/smaps_rollup", buf, sizeof(buf)) < 0)
		return -1;
	p = strstr(buf, "\nAnonHugePages:");
	if (!p || sscanf(p + 15, "%ld", &kb) != 1)
		return -1;
	return kb;
}

static int setup(void)
{
	char *p;

	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		return zdtm_err("prctl(PR_SET_THP_DISABLE, 1)");
	p = zdtm_map_fixed(BASE, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!p)
		return -1;
	/* Even asked for, no huge page may back it while THP is disabled. */
	if (madvise(p, LEN, MADV_HUGEPAGE) && errno != EINVAL)
		return zdtm_err("madvise(MADV_HUGEPAGE)");
	zdtm_fill(p, LEN, SEED, 0);
	area = p;
	return check_switch("after setup");
}

static int check(void)
{
	ssize_t bad;
	long kb;

	if (!area)
		return zdtm_fail("THP was never disabled (setup did not run)");
	if (check_switch("after C/R"))
		return -1;
	bad = zdtm_verify(area, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("area %p: byte %zd differs", area, bad);
	kb = anon_huge_kb();
	if (kb > 0)
		return zdtm_fail("THP is disabled but %ld kB of anonymous huge pages back the process",
				 kb);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
