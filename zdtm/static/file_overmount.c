/* In a mount namespace of its own, the test opens a file, then mounts a tmpfs over the
 * file's directory and puts a different file of the same name there. After C/R the fd
 * still reads the old, hidden file, while the path leads to the new one. */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define DIR "om.d"
#define NAME "om.d/file"
#define SEED 0x03e7
#define LEN 20000
#define NEWDATA "the file on the tmpfs"

static int fd = -1;
static char path[PATH_MAX + 64];	/* absolute path of the file and of the fd */
static char mnt[PATH_MAX + 64];	/* absolute path of the tmpfs mount point */
static ino_t old_ino;

static int setup(void)
{
	static char buf[LEN];
	char cwd[PATH_MAX];
	struct stat st;
	int nfd;

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(path, sizeof(path), "%s/%s", cwd, NAME);
	snprintf(mnt, sizeof(mnt), "%s/%s", cwd, DIR);
	if (unshare(CLONE_NEWNS))
		return zdtm_err("unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return zdtm_err("make / private");
	if (mkdir(DIR, 0755))
		return zdtm_err("mkdir %s", DIR);
	fd = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0644);
	zdtm_fill(buf, LEN, SEED, 0);
	if (fd < 0 || zdtm_write_all(fd, buf, LEN) != LEN || fstat(fd, &st))
		return zdtm_err("create %s", NAME);
	old_ino = st.st_ino;
	if (lseek(fd, 333, SEEK_SET) != 333)
		return zdtm_err("lseek");
	if (mount("om", mnt, "tmpfs", 0, "size=64k,mode=0755"))
		return zdtm_err("mount tmpfs on %s", mnt);
	nfd = open(NAME, O_CREAT | O_EXCL | O_WRONLY, 0600);
	if (nfd < 0 || write(nfd, NEWDATA, sizeof(NEWDATA)) != sizeof(NEWDATA) || close(nfd))
		return zdtm_err("create %s on the tmpfs", NAME);
	return 0;
}

/* The tmpfs must still be mounted on mnt in this namespace. */
static int check_mount(void)
{
	static char info[1 << 16];
	char *line;

	if (zdtm_read_file("/proc/self/mountinfo", info, sizeof(info)) < 0)
		return zdtm_err("read /proc/self/mountinfo");
	for (line = info; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		char point[PATH_MAX], *sep;

		if (sscanf(line, "%*d %*d %*d:%*d %*s %4095s", point) != 1 || strcmp(point, mnt))
			continue;
		sep = strstr(line, " - ");
		if (sep && !strncmp(sep, " - tmpfs ", 9))
			return 0;
	}
	return zdtm_fail("no tmpfs is mounted on %s", mnt);
}

static int check(void)
{
	static char buf[LEN + 1];
	char link[64], target[PATH_MAX + 64];
	struct stat st, pst;
	ssize_t n, bad;
	off_t pos;
	int nfd;

	if (fd < 0)
		return zdtm_fail("the over-mounted file was never opened");
	if (check_mount())
		return -1;
	if (fstat(fd, &st))
		return zdtm_err("fd %d is not open", fd);
	if (stat(NAME, &pst))
		return zdtm_err("stat %s", NAME);
	if (st.st_ino == pst.st_ino && st.st_dev == pst.st_dev)
		return zdtm_fail("fd %d is the file on the tmpfs, not the hidden one", fd);
	if (st.st_ino != old_ino || st.st_size != LEN)
		return zdtm_fail("fd %d: inode %lu size %lld, expected inode %lu size %d", fd,
				 (unsigned long)st.st_ino, (long long)st.st_size,
				 (unsigned long)old_ino, LEN);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, path))
		return zdtm_fail("fd %d points to '%s', expected '%s'", fd, target, path);
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != 333)
		return zdtm_fail("fd %d: offset %lld, expected 333", fd, (long long)pos);

	n = pread(fd, buf, LEN + 1, 0);
	if (n != LEN)
		return zdtm_fail("fd %d: pread gave %zd bytes, expected %d", fd, n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("hidden file byte %zd differs", bad);

	nfd = open(NAME, O_RDONLY);
	if (nfd < 0)
		return zdtm_err("open %s", NAME);
	n = read(nfd, buf, sizeof(buf));
	close(nfd);
	if (n != sizeof(NEWDATA) || memcmp(buf, NEWDATA, sizeof(NEWDATA)))
		return zdtm_fail("%s on the tmpfs reads %zd bytes, not its own data", NAME, n);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
