/* The execution domain (personality) survives C/R, per process. The root sets
 * ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT, a child sets UNAME26 |
 * WHOLE_SECONDS | STICKY_TIMEOUTS | SHORT_INODE (flags that change nothing dangerous in a
 * running task). Each checks personality(0xffffffff) and /proc/self/personality, and the
 * flags' effect where it shows at run time: a PROT_READ mapping made in the root's check
 * is executable (READ_IMPLIES_EXEC), the child's uname() release is "2.6.x" (UNAME26). */
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define ROOT_PERS (PER_LINUX | ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC | ADDR_COMPAT_LAYOUT)
#define CHILD_PERS (PER_LINUX | UNAME26 | WHOLE_SECONDS | STICKY_TIMEOUTS | SHORT_INODE)

static pid_t child;
static bool root_set;

static int check_value(const char *who, unsigned long want)
{
	char buf[64];
	int cur = personality(0xffffffff);

	if (cur < 0)
		return zdtm_err("%s: personality(0xffffffff)", who);
	if ((unsigned long)cur != want)
		return zdtm_fail("%s: personality is %#x, expected %#lx", who, cur, want);
	if (zdtm_read_file("/proc/self/personality", buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read /proc/self/personality", who);
	if (strtoul(buf, NULL, 16) != want)
		return zdtm_fail("%s: /proc/self/personality says %s, expected %08lx", who,
				 strtok(buf, "\n"), want);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	if (personality(CHILD_PERS) < 0)
		return zdtm_err("personality(%#x)", CHILD_PERS);
	return 0;
}

static int child_check(void *arg)
{
	struct utsname u;

	(void)arg;
	if (check_value("child", CHILD_PERS))
		return -1;
	if (uname(&u))
		return zdtm_err("uname");
	if (strncmp(u.release, "2.6.", 4))
		return zdtm_fail("child: uname release is '%s' despite UNAME26", u.release);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_setup, .check = child_check };

	child = zdtm_child(&t);
	if (child <= 0)
		return -1;
	if (personality(ROOT_PERS) < 0)
		return zdtm_err("personality(%#x)", ROOT_PERS);
	root_set = true;
	return 0;
}

static int check(void)
{
	struct zdtm_vma v;
	void *p;
	int rc = 0, n;

	if (!root_set)
		return zdtm_fail("personality never set: setup did not run");
	if (check_value("root", ROOT_PERS))
		rc = -1;
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		rc = zdtm_err("mmap");
	} else {
		n = zdtm_maps_read(0, (unsigned long)p, (unsigned long)p + 1, &v, 1);
		if (n < 0)
			rc = -1;
		else if (n == 0 || v.start != (unsigned long)p)
			rc = zdtm_fail("no line for %p in /proc/self/maps", p);
		else if (strcmp(v.perms, "r-xp"))
			rc = zdtm_fail("a PROT_READ mapping is '%s', READ_IMPLIES_EXEC makes it r-xp",
				       v.perms);
		munmap(p, 4096);
	}
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
