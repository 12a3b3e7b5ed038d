/* Areas mapped and unmapped during C/R: 16 slots of anonymous memory, private or shared,
 * 1..48 pages, some resized with mremap (private ones grown, maybe moved; shared ones
 * shrunk), each split by mprotect into a read-write head and a tail that is read-only,
 * PROT_NONE or read-write. Each step checks the contents of the slot it replaces and of
 * one other slot, unmaps the old area (in two parts sometimes) and maps a new one filled
 * from its own seed. The check finds every live slot in /proc/self/maps with its
 * protections and verifies all the contents. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "maps.h"
#include "transition.h"

#define NSLOTS 16
#define MAX_PAGES 48
#define GROW_PAGES 5
#define SEED 0x3a9c
#define MIN_STEPS 3
#define MAX_VMAS (MAX_PAGES + GROW_PAGES)	/* in one slot: at most one a page */

struct slot {
	uint8_t *addr;		/* NULL: empty */
	size_t len;
	size_t head;		/* bytes [0, head) are read-write, [head, len) have tail_prot */
	int tail_prot;
	bool shared;
	uint64_t gen;		/* the contents are zdtm_fill(SEED ^ gen, 0) */
};

static struct slot slots[NSLOTS];
static unsigned long steps;
static uint64_t gen, mapped, unmapped, remapped;
static size_t page;		/* 0 until setup */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static const char *prot_name(int prot)
{
	switch (prot) {
	case PROT_NONE: return "---";
	case PROT_READ: return "r--";
	case PROT_READ | PROT_WRITE: return "rw-";
	}
	return "?";
}

/* Verify slot i's contents; the PROT_NONE tail is opened for reading first. */
static int verify_slot(int i, const char *when)
{
	struct slot *s = &slots[i];
	ssize_t bad;

	if (s->tail_prot == PROT_NONE && s->head < s->len &&
	    mprotect(s->addr + s->head, s->len - s->head, PROT_READ))
		return zdtm_err("%s: mprotect slot %d tail %p+%zu readable", when, i,
				s->addr + s->head, s->len - s->head);
	bad = zdtm_verify(s->addr, s->len, SEED ^ s->gen, 0);
	if (bad >= 0)
		return zdtm_fail("%s: slot %d (%s, %zu pages at %p, gen %" PRIu64 ") byte %zd "
				 "differs", when, i, s->shared ? "shared" : "private",
				 s->len / page, s->addr, s->gen, bad);
	if (s->tail_prot == PROT_NONE && s->head < s->len &&
	    mprotect(s->addr + s->head, s->len - s->head, PROT_NONE))
		return zdtm_err("%s: mprotect slot %d tail back to PROT_NONE", when, i);
	return 0;
}

static int unmap_slot(int i)
{
	struct slot *s = &slots[i];
	size_t cut = (s->gen % 2 && s->len > page) ? s->len / page / 2 * page : s->len;

	/* Sometimes in two parts, the split not on the protection boundary. */
	if (munmap(s->addr, cut) || (cut < s->len && munmap(s->addr + cut, s->len - cut)))
		return zdtm_err("munmap slot %d (%p+%zu)", i, s->addr, s->len);
	s->addr = NULL;
	unmapped++;
	return 0;
}

static int map_slot(int i)
{
	static const int tails[] = { PROT_READ, PROT_NONE, PROT_READ | PROT_WRITE, PROT_READ };
	struct slot *s = &slots[i];
	uint64_t r = mix(++gen);
	size_t pages = 1 + r % MAX_PAGES;
	uint8_t *a;

	s->gen = gen;
	s->shared = (r >> 8) % 3 == 0;
	s->len = pages * page;
	a = mmap(NULL, s->len, PROT_READ | PROT_WRITE,
		 (s->shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return zdtm_err("mmap slot %d: %zu pages", i, pages);
	zdtm_fill(a, s->len, SEED ^ gen, 0);
	if ((r >> 16) % 4 == 0 && (!s->shared || pages > 1)) {
		/* Private areas grow (and may move); shared ones shrink: their shmem
		 * object has a fixed size, a grown tail would raise SIGBUS. */
		size_t nlen = s->shared ? s->len - page : s->len + GROW_PAGES * page;
		uint8_t *b = mremap(a, s->len, nlen, MREMAP_MAYMOVE);
		ssize_t bad;

		if (b == MAP_FAILED) {
			munmap(a, s->len);
			return zdtm_err("mremap slot %d from %zu to %zu bytes", i, s->len, nlen);
		}
		bad = zdtm_verify(b, nlen < s->len ? nlen : s->len, SEED ^ gen, 0);
		if (bad >= 0)
			return zdtm_fail("slot %d: byte %zd differs after mremap %p -> %p", i, bad,
					 a, b);
		if (nlen > s->len)
			zdtm_fill(b + s->len, nlen - s->len, SEED ^ gen, s->len);
		a = b;
		s->len = nlen;
		remapped++;
	}
	s->addr = a;
	s->head = ((r >> 24) % (s->len / page + 1)) * page;
	s->tail_prot = tails[(r >> 32) % 4];
	if (s->head < s->len && mprotect(a + s->head, s->len - s->head, s->tail_prot))
		return zdtm_err("mprotect slot %d tail %p+%zu to %s", i, a + s->head,
				s->len - s->head, prot_name(s->tail_prot));
	mapped++;
	return 0;
}

static int build(void)
{
	page = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < NSLOTS; i++)
		if (map_slot(i))
			return -1;
	return 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 200000 };
	int i = steps % NSLOTS, j = mix(steps) % NSLOTS;

	if (verify_slot(i, "step") || unmap_slot(i) || map_slot(i))
		return -1;
	if (j != i && verify_slot(j, "step"))
		return -1;
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

/* [a, a+len) is covered by consecutive vmas all with these permissions? */
static int check_range(int i, unsigned long a, size_t len, int prot, bool shared)
{
	static struct zdtm_vma maps[MAX_VMAS];
	unsigned long end = a + len;
	char want[5];
	int n = zdtm_maps_read(0, a, end, maps, MAX_VMAS);

	if (n < 0)
		return -1;
	snprintf(want, sizeof(want), "%s%c", prot_name(prot), shared ? 's' : 'p');
	for (int k = 0; k < n && maps[k].start <= a && a < end; k++) {
		if (strcmp(maps[k].perms, want))
			return zdtm_fail("slot %d: %#lx-%#lx is %s in /proc/self/maps, expected %s",
					 i, maps[k].start, maps[k].end, maps[k].perms, want);
		a = maps[k].end;
	}
	if (a < end)
		return zdtm_fail("slot %d: %#lx-%#lx is not mapped (expected %s%s)", i, a, end,
				 prot_name(prot), shared ? "s" : "p");
	return 0;
}

static int check(void)
{
	int live = 0;

	if (!page)
		return zdtm_fail("setup never ran: no slots mapped");
	if (steps < MIN_STEPS)
		return zdtm_fail("the mmap loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (mapped != unmapped + NSLOTS)
		return zdtm_fail("%" PRIu64 " areas mapped, %" PRIu64 " unmapped: expected %d live",
				 mapped, unmapped, NSLOTS);
	for (int i = 0; i < NSLOTS; i++) {
		struct slot *s = &slots[i];

		if (!s->addr)
			return zdtm_fail("slot %d is empty", i);
		if (check_range(i, (unsigned long)s->addr, s->head, PROT_READ | PROT_WRITE,
				s->shared) ||
		    check_range(i, (unsigned long)s->addr + s->head, s->len - s->head,
				s->tail_prot, s->shared))
			return -1;
		live += s->len / page;
	}
	for (int i = 0; i < NSLOTS; i++)
		if (verify_slot(i, "check"))
			return -1;
	zdtm_msg("%lu steps: %" PRIu64 " areas mapped (%" PRIu64 " resized by mremap); "
		 "%d pages in %d live areas verified", steps, mapped, remapped, live, NSLOTS);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
