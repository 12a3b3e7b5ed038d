/* A chroot survives C/R: a child chroots into a subdirectory of the scratch dir and works
 * in a directory below it. The child checks that "/" is that directory (inode), that "/.."
 * does not lead out, its cwd and a marker file by absolute path; the root (not chrooted)
 * checks the child's /proc/PID/root and /proc/PID/cwd links and the marker through them. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NEWROOT "new root"
#define MARKER_TEXT "inside the chroot"

static char root_path[PATH_MAX], cwd_path[PATH_MAX];	/* absolute, outside view */
static struct stat root_st, sub_st, marker_st;
static pid_t child;

static int same_inode(const char *what, const struct stat *a, const struct stat *b)
{
	if (a->st_dev == b->st_dev && a->st_ino == b->st_ino)
		return 0;
	return zdtm_fail("%s is inode %lu on dev %#lx, expected %lu on %#lx", what,
			 (unsigned long)a->st_ino, (unsigned long)a->st_dev,
			 (unsigned long)b->st_ino, (unsigned long)b->st_dev);
}

static int child_setup(void *arg)
{
	(void)arg;
	if (chroot(NEWROOT))
		return zdtm_err("chroot '%s'", NEWROOT);
	if (chdir("/sub"))
		return zdtm_err("chdir /sub inside the chroot");
	return 0;
}

static int child_check(void *arg)
{
	struct stat st;
	char cwd[PATH_MAX], buf[64];

	(void)arg;
	if (stat("/", &st))
		return zdtm_err("stat /");
	if (same_inode("the child's /", &st, &root_st))
		return -1;
	if (stat("/..", &st))
		return zdtm_err("stat /..");
	if (same_inode("the child's /..", &st, &root_st))
		return -1;
	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd in the chroot");
	if (strcmp(cwd, "/sub"))
		return zdtm_fail("cwd in the chroot is '%s', expected /sub", cwd);
	if (stat(".", &st))
		return zdtm_err("stat .");
	if (same_inode("the child's cwd", &st, &sub_st))
		return -1;
	if (zdtm_read_file("/marker", buf, sizeof(buf)) < 0)
		return zdtm_err("read /marker in the chroot");
	if (strcmp(buf, MARKER_TEXT))
		return zdtm_fail("/marker holds '%s', expected '%s'", buf, MARKER_TEXT);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_setup, .check = child_check };
	char base[PATH_MAX - 64];
	int fd;

	if (mkdir(NEWROOT, 0755) || mkdir(NEWROOT "/sub", 0755))
		return zdtm_err("mkdir");
	fd = open(NEWROOT "/marker", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || zdtm_write_all(fd, MARKER_TEXT, strlen(MARKER_TEXT)) < 0 || close(fd))
		return zdtm_err("write the marker");
	if (stat(NEWROOT, &root_st) || stat(NEWROOT "/sub", &sub_st) ||
	    stat(NEWROOT "/marker", &marker_st))
		return zdtm_err("stat");
	if (!getcwd(base, sizeof(base)))
		return zdtm_err("getcwd");
	snprintf(root_path, sizeof(root_path), "%s/%s", base, NEWROOT);
	snprintf(cwd_path, sizeof(cwd_path), "%s/%s/sub", base, NEWROOT);
	child = zdtm_child(&t);
	return child > 0 ? 0 : -1;
}

static int check_link(const char *name, const char *want)
{
	char path[64], link[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/%s", child, name);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", path);
	link[n] = '\0';
	if (strcmp(link, want))
		return zdtm_fail("%s is '%s', expected '%s'", path, link, want);
	return 0;
}

static int check(void)
{
	char path[64];
	struct stat st;
	int rc = 0;

	if (child <= 0)
		return zdtm_fail("no chrooted child: setup did not run");
	if (check_link("root", root_path) || check_link("cwd", cwd_path))
		rc = -1;
	snprintf(path, sizeof(path), "/proc/%d/root/marker", child);
	if (!rc && stat(path, &st))
		rc = zdtm_err("stat %s", path);
	if (!rc && same_inode(path, &st, &marker_st))
		rc = -1;
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
