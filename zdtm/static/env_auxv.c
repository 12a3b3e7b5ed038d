/* The auxiliary vector survives C/R: /proc/self/auxv is byte-for-byte what it was, it agrees
 * with getauxval(), and the memory it points at is still there: the vDSO ELF image at
 * AT_SYSINFO_EHDR (also the [vdso] line of /proc/self/maps), the program headers at
 * AT_PHDR, the 16 AT_RANDOM bytes and the AT_EXECFN and AT_PLATFORM strings. */
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define AUXV_MAX 4096

static unsigned long auxv[AUXV_MAX / sizeof(unsigned long)];
static ssize_t auxv_len = -1;
static unsigned char random_bytes[16];
static char execfn[4096], platform[64];
static ElfW(Phdr) phdr0;

static ssize_t read_auxv(unsigned long *buf)
{
	int fd = open("/proc/self/auxv", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = zdtm_read_all(fd, buf, AUXV_MAX);
	close(fd);
	return n;
}

static const char *str_at(unsigned long type)
{
	const char *s = (const char *)getauxval(type);

	return s ? s : "";
}

static int setup(void)
{
	auxv_len = read_auxv(auxv);
	if (auxv_len <= 0 || auxv_len % (2 * sizeof(unsigned long)))
		return zdtm_fail("/proc/self/auxv: read %zd bytes", auxv_len);
	if (!getauxval(AT_RANDOM) || !getauxval(AT_PHDR) || !getauxval(AT_SYSINFO_EHDR))
		return zdtm_fail("auxv lacks AT_RANDOM, AT_PHDR or AT_SYSINFO_EHDR");
	memcpy(random_bytes, (void *)getauxval(AT_RANDOM), sizeof(random_bytes));
	memcpy(&phdr0, (void *)getauxval(AT_PHDR), sizeof(phdr0));
	snprintf(execfn, sizeof(execfn), "%s", str_at(AT_EXECFN));
	snprintf(platform, sizeof(platform), "%s", str_at(AT_PLATFORM));
	zdtm_msg("auxv: %zd entries, vdso at %#lx, execfn %s, platform %s",
		 auxv_len / (ssize_t)(2 * sizeof(unsigned long)), getauxval(AT_SYSINFO_EHDR),
		 execfn, platform);
	return 0;
}

static int check(void)
{
	static unsigned long now[AUXV_MAX / sizeof(unsigned long)];
	struct zdtm_vma mapped;
	unsigned long vdso;
	ssize_t n;

	if (auxv_len < 0)
		return zdtm_fail("no saved auxv: setup did not run");

	n = read_auxv(now);
	if (n != auxv_len)
		return zdtm_fail("/proc/self/auxv has %zd bytes, expected %zd", n, auxv_len);
	for (ssize_t i = 0; i < n / (ssize_t)sizeof(unsigned long); i += 2) {
		if (now[i] != auxv[i] || now[i + 1] != auxv[i + 1])
			return zdtm_fail("auxv entry %zd is (%lu, %#lx), expected (%lu, %#lx)", i / 2,
					 now[i], now[i + 1], auxv[i], auxv[i + 1]);
		if (now[i] == AT_NULL)
			break;
		/* glibc's copy (read at startup) agrees with the kernel's; glibc rewrites
		 * AT_HWCAP on x86 for its own use, so that one is compared raw only */
		if (now[i] != AT_HWCAP && getauxval(now[i]) != now[i + 1])
			return zdtm_fail("getauxval(%lu) is %#lx, /proc/self/auxv says %#lx", now[i],
					 getauxval(now[i]), now[i + 1]);
	}

	vdso = getauxval(AT_SYSINFO_EHDR);
	if (zdtm_find_vma("[vdso]", &mapped))
		return -1;
	if (mapped.start != vdso)
		return zdtm_fail("[vdso] is mapped at %#lx, AT_SYSINFO_EHDR says %#lx",
				 mapped.start, vdso);
	if (memcmp((void *)vdso, ELFMAG, SELFMAG))
		return zdtm_fail("no ELF image at AT_SYSINFO_EHDR %#lx", vdso);
	if (memcmp((void *)getauxval(AT_RANDOM), random_bytes, sizeof(random_bytes)))
		return zdtm_fail("the 16 AT_RANDOM bytes at %#lx changed", getauxval(AT_RANDOM));
	if (memcmp((void *)getauxval(AT_PHDR), &phdr0, sizeof(phdr0)))
		return zdtm_fail("the first program header at AT_PHDR %#lx changed",
				 getauxval(AT_PHDR));
	if (strcmp(str_at(AT_EXECFN), execfn))
		return zdtm_fail("AT_EXECFN is '%s', expected '%s'", str_at(AT_EXECFN), execfn);
	if (strcmp(str_at(AT_PLATFORM), platform))
		return zdtm_fail("AT_PLATFORM is '%s', expected '%s'", str_at(AT_PLATFORM), platform);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
