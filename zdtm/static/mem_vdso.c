/* The vDSO survives C/R in place and working: AT_SYSINFO_EHDR still points at it, the [vdso]
 * and [vvar*] vmas are at the same addresses with the same protections, the vDSO image is
 * byte-identical, and its clock_gettime (MONOTONIC, REALTIME, BOOTTIME), gettimeofday and
 * time, called directly at the recorded addresses, agree with the syscalls (vdso <= syscall
 * <= vdso) and have not gone back from the values recorded in setup. */
#include <elf.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);
typedef time_t (*time_fn)(time_t *);

#define MAXV 8

static unsigned long vdso_base;		/* 0 until setup recorded it */
static struct zdtm_vma want[MAXV];	/* [vdso] and [vvar*] */
static int nwant;
static uint32_t vdso_crc;
static clock_gettime_fn vdso_clock_gettime;
static gettimeofday_fn vdso_gettimeofday;
static time_fn vdso_time;		/* NULL where the vDSO has none */

static const clockid_t clocks[] = { CLOCK_MONOTONIC, CLOCK_REALTIME, CLOCK_BOOTTIME };
static const char *const clock_names[] = { "CLOCK_MONOTONIC", "CLOCK_REALTIME", "CLOCK_BOOTTIME" };
#define NCLOCKS 3
static struct timespec ts0[NCLOCKS];
static struct timeval tv0;

/* The vDSO's [vdso] and [vvar*] vmas, in address order: count, or -1. */
static int vdso_vmas(struct zdtm_vma *out, struct zdtm_vma **vdso)
{
	static struct zdtm_vma all[128];
	int n = zdtm_maps_read(0, 0, ~0UL, all, 128), cnt = 0;

	if (n < 0)
		return -1;
	*vdso = NULL;
	for (int i = 0; i < n; i++) {
		if (strcmp(all[i].path, "[vdso]") && strncmp(all[i].path, "[vvar", 5))
			continue;
		if (cnt == MAXV)
			return zdtm_fail("more than %d [vdso]/[vvar] vmas", MAXV);
		out[cnt] = all[i];
		if (!strcmp(all[i].path, "[vdso]"))
			*vdso = &out[cnt];
		cnt++;
	}
	if (!*vdso)
		return zdtm_fail("no [vdso] vma in /proc/self/maps");
	return cnt;
}

/* The address of a function the vDSO at base exports, or NULL (looked up via DT_HASH). */
static void *vdso_sym(unsigned long base, const char *name)
{
	const ElfW(Ehdr) *eh = (const void *)base;
	const ElfW(Phdr) *ph = (const void *)(base + eh->e_phoff);
	const ElfW(Dyn) *dyn = NULL;
	const ElfW(Sym) *symtab = NULL;
	const char *strtab = NULL;
	const ElfW(Word) *hash = NULL;
	unsigned long load = 0;
	bool have_load = false;

	if (memcmp(eh->e_ident, ELFMAG, SELFMAG))
		return NULL;
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type == PT_LOAD && !have_load) {
			load = base + ph[i].p_offset - ph[i].p_vaddr;
			have_load = true;
		} else if (ph[i].p_type == PT_DYNAMIC) {
			dyn = (const void *)(base + ph[i].p_offset);
		}
	}
	if (!have_load || !dyn)
		return NULL;
	for (; dyn->d_tag != DT_NULL; dyn++) {
		if (dyn->d_tag == DT_SYMTAB)
			symtab = (const void *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_STRTAB)
			strtab = (const void *)(load + dyn->d_un.d_ptr);
		else if (dyn->d_tag == DT_HASH)
			hash = (const void *)(load + dyn->d_un.d_ptr);
	}
	if (!symtab || !strtab || !hash)
		return NULL;
	for (ElfW(Word) i = 0; i < hash[1]; i++) {
		const ElfW(Sym) *s = &symtab[i];

		if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_shndx == SHN_UNDEF)
			continue;
		if (!strcmp(strtab + s->st_name, name))
			return (void *)(load + s->st_value);
	}
	return NULL;
}

static void *vdso_sym2(unsigned long base, const char *a, const char *b)
{
	void *p = vdso_sym(base, a);

	return p ? p : vdso_sym(base, b);
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	return a->tv_nsec < b->tv_nsec ? -1 : a->tv_nsec > b->tv_nsec;
}

static int tv_cmp(const struct timeval *a, const struct timeval *b)
{
	if (a->tv_sec != b->tv_sec)
		return a->tv_sec < b->tv_sec ? -1 : 1;
	return a->tv_usec < b->tv_usec ? -1 : a->tv_usec > b->tv_usec;
}

static int setup(void)
{
	struct zdtm_vma *vdso;

	vdso_base = getauxval(AT_SYSINFO_EHDR);
	if (!vdso_base)
		return zdtm_fail("no AT_SYSINFO_EHDR: this process has no vDSO");
	nwant = vdso_vmas(want, &vdso);
	if (nwant < 0)
		return -1;
	if (vdso->start != vdso_base)
		return zdtm_fail("[vdso] starts at %#lx, AT_SYSINFO_EHDR is %#lx", vdso->start,
				 vdso_base);
	vdso_crc = zdtm_crc32((void *)vdso->start, vdso->end - vdso->start);
	vdso_clock_gettime = vdso_sym2(vdso_base, "__vdso_clock_gettime", "__kernel_clock_gettime");
	vdso_gettimeofday = vdso_sym2(vdso_base, "__vdso_gettimeofday", "__kernel_gettimeofday");
	vdso_time = vdso_sym2(vdso_base, "__vdso_time", "__kernel_time");
	if (!vdso_clock_gettime || !vdso_gettimeofday)
		return zdtm_fail("the vDSO at %#lx exports no clock_gettime/gettimeofday", vdso_base);
	for (int i = 0; i < NCLOCKS; i++)
		if (vdso_clock_gettime(clocks[i], &ts0[i]))
			return zdtm_fail("vDSO clock_gettime(%s) failed", clock_names[i]);
	if (vdso_gettimeofday(&tv0, NULL))
		return zdtm_fail("vDSO gettimeofday failed");
	zdtm_msg("vdso at %#lx, %d vmas, crc %08x, time() %s", vdso_base, nwant, vdso_crc,
		 vdso_time ? "exported" : "not exported");
	return 0;
}

static int check(void)
{
	struct zdtm_vma got[MAXV], *vdso;
	char a[512], b[512];
	int n;

	if (!vdso_base)
		return zdtm_fail("the vDSO was never recorded");
	if (getauxval(AT_SYSINFO_EHDR) != vdso_base)
		return zdtm_fail("AT_SYSINFO_EHDR is %#lx, was %#lx", getauxval(AT_SYSINFO_EHDR),
				 vdso_base);
	n = vdso_vmas(got, &vdso);
	if (n < 0)
		return -1;
	for (int i = 0; i < n || i < nwant; i++) {
		if (i >= n)
			return zdtm_fail("vDSO vma '%s' is missing",
					 zdtm_vma_str(&want[i], a, sizeof(a)));
		if (i >= nwant)
			return zdtm_fail("extra vDSO vma '%s'",
					 zdtm_vma_str(&got[i], a, sizeof(a)));
		if (!zdtm_vma_eq(&got[i], &want[i]))
			return zdtm_fail("vDSO vma is '%s', was '%s'",
					 zdtm_vma_str(&got[i], a, sizeof(a)),
					 zdtm_vma_str(&want[i], b, sizeof(b)));
	}
	if (zdtm_crc32((void *)vdso->start, vdso->end - vdso->start) != vdso_crc)
		return zdtm_fail("the vDSO image at %#lx changed (crc %08x, was %08x)", vdso->start,
				 zdtm_crc32((void *)vdso->start, vdso->end - vdso->start), vdso_crc);
	if (vdso_sym2(vdso_base, "__vdso_clock_gettime", "__kernel_clock_gettime") !=
	    (void *)vdso_clock_gettime)
		return zdtm_fail("the vDSO's clock_gettime moved from %p", (void *)vdso_clock_gettime);

	for (int i = 0; i < NCLOCKS; i++) {
		struct timespec v1, s, v2;

		if (vdso_clock_gettime(clocks[i], &v1) ||
		    syscall(SYS_clock_gettime, clocks[i], &s) ||
		    vdso_clock_gettime(clocks[i], &v2))
			return zdtm_fail("clock_gettime(%s) failed after C/R", clock_names[i]);
		if (ts_cmp(&v1, &s) > 0 || ts_cmp(&s, &v2) > 0)
			return zdtm_fail("%s: vDSO %ld.%09ld, syscall %ld.%09ld, vDSO %ld.%09ld are out of order",
					 clock_names[i], (long)v1.tv_sec, v1.tv_nsec, (long)s.tv_sec,
					 s.tv_nsec, (long)v2.tv_sec, v2.tv_nsec);
		if (ts_cmp(&v1, &ts0[i]) < 0)
			return zdtm_fail("%s went back: %ld.%09ld after C/R, %ld.%09ld in setup",
					 clock_names[i], (long)v1.tv_sec, v1.tv_nsec,
					 (long)ts0[i].tv_sec, ts0[i].tv_nsec);
	}
	{
		struct timeval v1, s, v2;

		if (vdso_gettimeofday(&v1, NULL) || syscall(SYS_gettimeofday, &s, NULL) ||
		    vdso_gettimeofday(&v2, NULL))
			return zdtm_fail("gettimeofday failed after C/R");
		if (tv_cmp(&v1, &s) > 0 || tv_cmp(&s, &v2) > 0)
			return zdtm_fail("gettimeofday: vDSO %ld.%06ld, syscall %ld.%06ld, vDSO %ld.%06ld are out of order",
					 (long)v1.tv_sec, (long)v1.tv_usec, (long)s.tv_sec,
					 (long)s.tv_usec, (long)v2.tv_sec, (long)v2.tv_usec);
		if (tv_cmp(&v1, &tv0) < 0)
			return zdtm_fail("gettimeofday went back: %ld.%06ld after C/R, %ld.%06ld in setup",
					 (long)v1.tv_sec, (long)v1.tv_usec, (long)tv0.tv_sec,
					 (long)tv0.tv_usec);
	}
#ifdef SYS_time
	if (vdso_time) {
		time_t v1 = vdso_time(NULL), s = syscall(SYS_time, NULL), v2 = vdso_time(NULL);

		if (v1 > s || s > v2 || v1 < tv0.tv_sec)
			return zdtm_fail("time: vDSO %ld, syscall %ld, vDSO %ld (setup %ld)", (long)v1,
					 (long)s, (long)v2, (long)tv0.tv_sec);
	}
#endif
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
