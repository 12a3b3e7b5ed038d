/* One anonymous area split by mprotect into eleven pieces of five protections (two pieces
 * re-merged by a later mprotect) keeps every piece's bounds and protection, enforces them
 * (stores to read-only pieces and loads from PROT_NONE ones fault) and keeps all contents. */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define BASE 0x160000000000UL
#define GROUPS 12
#define GPAGES 2UL	/* pages per group */
#define SEED 0x3e07

#define RW (PROT_READ | PROT_WRITE)
#define R PROT_READ
#define RX (PROT_READ | PROT_EXEC)
#define W PROT_WRITE
#define NONE PROT_NONE

/* The protection of each group after the first pass; group 9 then becomes R and merges
 * with group 8. */
static const int first_prot[GROUPS] = { RW, R, NONE, RW, RX, R, W, RX, R, RW, NONE, RW };
static const int final_prot[GROUPS] = { RW, R, NONE, RW, RX, R, W, RX, R, R, NONE, RW };

static size_t pg;
static char *base;	/* NULL until setup split the area */

static sigjmp_buf probe_env;

static void probe_fault(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

/* True if reading (or writing) the byte at p faults. */
static bool faults(volatile char *p, bool write)
{
	struct sigaction sa = { .sa_handler = probe_fault }, old;
	bool hit;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (sigsetjmp(probe_env, 1) == 0) {
		if (write)
			*p = 0x5a;
		else
			(void)*p;
		hit = false;
	} else {
		hit = true;
	}
	sigaction(SIGSEGV, &old, NULL);
	return hit;
}

static void prot_str(int prot, char *s)
{
	s[0] = prot & PROT_READ ? 'r' : '-';
	s[1] = prot & PROT_WRITE ? 'w' : '-';
	s[2] = prot & PROT_EXEC ? 'x' : '-';
	s[3] = 'p';
	s[4] = '\0';
}

/* The vmas final_prot makes: adjacent groups with one protection are one vma. */
static int expected(struct zdtm_vma *v)
{
	int n = 0;

	for (int g = 0; g < GROUPS; g++) {
		unsigned long start = BASE + g * GPAGES * pg;
		char perms[5];

		if (n && final_prot[g] == final_prot[g - 1]) {
			v[n - 1].end = start + GPAGES * pg;
			continue;
		}
		prot_str(final_prot[g], perms);
		v[n++] = zdtm_anon_vma(start, start + GPAGES * pg, perms);
	}
	return n;
}

static int setup(void)
{
	struct zdtm_vma want[GROUPS];
	size_t glen;
	char *p;

	pg = sysconf(_SC_PAGESIZE);
	glen = GPAGES * pg;
	p = zdtm_map_fixed(BASE, GROUPS * glen, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!p)
		return -1;
	zdtm_fill(p, GROUPS * glen, SEED, 0);
	for (int g = 0; g < GROUPS; g++)
		if (mprotect(p + g * glen, glen, first_prot[g]))
			return zdtm_err("mprotect group %d", g);
	for (int g = 0; g < GROUPS; g++)
		if (final_prot[g] != first_prot[g] && mprotect(p + g * glen, glen, final_prot[g]))
			return zdtm_err("mprotect group %d again", g);
	base = p;
	return zdtm_expect_vmas("after setup", BASE, BASE + GROUPS * glen, want, expected(want));
}

static int check(void)
{
	struct zdtm_vma want[GROUPS];
	int nwant;
	size_t glen;

	pg = sysconf(_SC_PAGESIZE);
	glen = GPAGES * pg;
	if (!base)
		return zdtm_fail("the area at %#lx was never split", BASE);
	nwant = expected(want);
	if (zdtm_expect_vmas("pieces", BASE, BASE + GROUPS * glen, want, nwant))
		return -1;
	for (int g = 0; g < GROUPS; g++) {
		char *q = base + g * glen, perms[5];
		int prot = final_prot[g];
		ssize_t bad;

		prot_str(prot, perms);
		if (!(prot & PROT_READ) && prot != W && !faults(q, false))
			return zdtm_fail("group %d (%s): a load does not fault", g, perms);
		if (!(prot & PROT_WRITE) && !faults(q + 1, true))
			return zdtm_fail("group %d (%s): a store does not fault", g, perms);
		if (!(prot & PROT_READ) && mprotect(q, glen, R))
			return zdtm_err("mprotect group %d readable", g);
		bad = zdtm_verify(q, glen, SEED, g * glen);
		if (!(prot & PROT_READ) && mprotect(q, glen, prot))
			return zdtm_err("mprotect group %d back to %s", g, perms);
		if (bad >= 0)
			return zdtm_fail("group %d (%s): byte %zd differs", g, perms, bad);
	}
	return zdtm_expect_vmas("pieces after the probes", BASE, BASE + GROUPS * glen, want,
				nwant);
}

ZDTM_TEST(.setup = setup, .check = check);
