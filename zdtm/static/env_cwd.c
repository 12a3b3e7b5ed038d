/* The current working directory survives C/R, per process: the root sits in a nested
 * subdirectory whose name has spaces, a child in another one. Each checks getcwd(), the
 * /proc/self/cwd link, the inode of "." and a marker file reached by a relative path;
 * the root also checks the child's /proc/PID/cwd link. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define ROOT_DIR "cwd dir/deeper level"
#define CHILD_DIR "child cwd"

struct where {
	const char *rel;	/* relative to the scratch dir */
	char path[PATH_MAX];	/* absolute, as getcwd() gave it after chdir */
	dev_t dev;
	ino_t ino;
	char marker[64];
};

static struct where root_at = { .rel = ROOT_DIR }, child_at = { .rel = CHILD_DIR };
static char child_path[PATH_MAX];	/* the root's idea of where the child is */
static pid_t child;

static int enter(struct where *w)
{
	struct stat st;
	int fd;

	if (chdir(w->rel))
		return zdtm_err("chdir '%s'", w->rel);
	if (!getcwd(w->path, sizeof(w->path)))
		return zdtm_err("getcwd");
	if (stat(".", &st))
		return zdtm_err("stat .");
	w->dev = st.st_dev;
	w->ino = st.st_ino;
	snprintf(w->marker, sizeof(w->marker), "marker of %d in %s", getpid(), w->rel);
	fd = open("marker", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || zdtm_write_all(fd, w->marker, strlen(w->marker)) < 0 || close(fd))
		return zdtm_err("write marker in '%s'", w->path);
	return 0;
}

static int same_place(const char *who, const struct where *w)
{
	char cwd[PATH_MAX], link[PATH_MAX], buf[128];
	struct stat st;
	ssize_t n;

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("%s: getcwd", who);
	if (strcmp(cwd, w->path))
		return zdtm_fail("%s: cwd is '%s', expected '%s'", who, cwd, w->path);
	n = readlink("/proc/self/cwd", link, sizeof(link) - 1);
	if (n < 0)
		return zdtm_err("%s: readlink /proc/self/cwd", who);
	link[n] = '\0';
	if (strcmp(link, w->path))
		return zdtm_fail("%s: /proc/self/cwd is '%s', expected '%s'", who, link, w->path);
	if (stat(".", &st))
		return zdtm_err("%s: stat .", who);
	if (st.st_dev != w->dev || st.st_ino != w->ino)
		return zdtm_fail("%s: '.' is inode %lu on dev %#lx, expected %lu on %#lx", who,
				 (unsigned long)st.st_ino, (unsigned long)st.st_dev,
				 (unsigned long)w->ino, (unsigned long)w->dev);
	if (zdtm_read_file("marker", buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read ./marker", who);
	if (strcmp(buf, w->marker))
		return zdtm_fail("%s: ./marker holds '%s', expected '%s'", who, buf, w->marker);
	return 0;
}

static int child_setup(void *arg)
{
	(void)arg;
	/* the child forked from the root's directory: go up and over to its own */
	if (chdir("../.."))
		return zdtm_err("chdir ../..");
	return enter(&child_at);
}

static int child_check(void *arg)
{
	(void)arg;
	return same_place("child", &child_at);
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_setup, .check = child_check };

	char base[PATH_MAX - 64];

	if (mkdir("cwd dir", 0755) || mkdir(ROOT_DIR, 0755) || mkdir(CHILD_DIR, 0700))
		return zdtm_err("mkdir");
	if (!getcwd(base, sizeof(base)))
		return zdtm_err("getcwd");
	snprintf(child_path, sizeof(child_path), "%s/%s", base, CHILD_DIR);
	if (enter(&root_at))
		return -1;
	child = zdtm_child(&t);
	return child > 0 ? 0 : -1;
}

static int check(void)
{
	char path[64], link[PATH_MAX];
	ssize_t n;
	int rc;

	if (!root_at.path[0])
		return zdtm_fail("no saved cwd: setup did not run");
	rc = same_place("root", &root_at);
	if (child > 0) {
		snprintf(path, sizeof(path), "/proc/%d/cwd", child);
		n = readlink(path, link, sizeof(link) - 1);
		if (n < 0) {
			rc = zdtm_err("readlink %s", path);
		} else {
			link[n] = '\0';
			if (strcmp(link, child_path))
				rc = zdtm_fail("child %d: %s is '%s', expected '%s'", child, path, link,
					       child_path);
		}
	}
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
