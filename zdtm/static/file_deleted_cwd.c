/* The cwd is a directory that was removed: after C/R it is still the removed directory
 * (path with " (deleted)", nlink 0, its mode, no new entries possible), not a live one. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define PARENT "dcwd.d"
#define CHILD "gone"
#define MODE 0751

static char want[PATH_MAX + 64];	/* readlink of /proc/self/cwd */
static ino_t parent_ino;

static int setup(void)
{
	char cwd[PATH_MAX];
	struct stat st;

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	if (mkdir(PARENT, 0755) || mkdir(PARENT "/" CHILD, MODE) || chmod(PARENT "/" CHILD, MODE))
		return zdtm_err("mkdir %s/%s", PARENT, CHILD);
	if (stat(PARENT, &st))
		return zdtm_err("stat %s", PARENT);
	parent_ino = st.st_ino;
	if (chdir(PARENT "/" CHILD) || rmdir("../" CHILD))
		return zdtm_err("chdir into %s/%s and remove it", PARENT, CHILD);
	snprintf(want, sizeof(want), "%s/%s/%s (deleted)", cwd, PARENT, CHILD);
	return 0;
}

static int check(void)
{
	char target[PATH_MAX + 64];
	struct stat st;
	ssize_t n;
	int fd;

	if (!want[0])
		return zdtm_fail("the cwd was never removed (setup did not run)");
	n = readlink("/proc/self/cwd", target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink /proc/self/cwd");
	target[n] = '\0';
	if (strcmp(target, want))
		return zdtm_fail("cwd is '%s', expected '%s'", target, want);
	if (stat(".", &st))
		return zdtm_err("stat .");
	if (!S_ISDIR(st.st_mode) || (st.st_mode & 07777) != MODE)
		return zdtm_fail("cwd mode %#o, expected a directory with %#o", st.st_mode, MODE);
	if (st.st_nlink != 0)
		return zdtm_fail("cwd nlink %lu, expected 0 (removed)", (unsigned long)st.st_nlink);

	/* Nothing can be created in a removed directory. */
	fd = open("new", O_CREAT | O_WRONLY, 0600);
	if (fd >= 0 || errno != ENOENT) {
		if (fd >= 0)
			close(fd);
		return zdtm_fail("creating a file in the removed cwd gave fd %d errno %d, "
				 "expected ENOENT", fd, errno);
	}
	/* ".." of a removed directory still leads to its old parent. */
	if (stat("..", &st))
		return zdtm_err("stat ..");
	if (st.st_ino != parent_ino)
		return zdtm_fail(".. is inode %lu, expected %lu (%s)", (unsigned long)st.st_ino,
				 (unsigned long)parent_ino, PARENT);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
