/* Three hard links to one inode, each open through its own name; one name is unlinked
 * afterwards. After C/R the three fds are still one inode (st_ino equal, a write through
 * one seen through the others), nlink is 2, and each fd shows the name it was opened by. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x41ed
#define LEN 9000

struct link {
	const char *name;
	int flags;
	bool unlinked;
	int fd;
	char path[PATH_MAX + 64];	/* what /proc/self/fd shows */
};

static struct link links[] = {
	{ .name = "hl_a", .flags = O_RDWR, .fd = -1 },
	{ .name = "hl_b", .flags = O_RDONLY, .fd = -1 },
	{ .name = "hl_c", .flags = O_RDONLY, .unlinked = true, .fd = -1 },
};
#define NLINKS (int)(sizeof(links) / sizeof(links[0]))

static int setup(void)
{
	static char buf[LEN];
	char cwd[PATH_MAX];
	int fd;

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	fd = open(links[0].name, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	zdtm_fill(buf, LEN, SEED, 0);
	if (fd < 0 || zdtm_write_all(fd, buf, LEN) != LEN || close(fd))
		return zdtm_err("create %s", links[0].name);
	for (int i = 1; i < NLINKS; i++)
		if (link(links[0].name, links[i].name))
			return zdtm_err("link %s %s", links[0].name, links[i].name);
	for (int i = 0; i < NLINKS; i++) {
		struct link *l = &links[i];

		l->fd = open(l->name, l->flags);
		if (l->fd < 0)
			return zdtm_err("open %s", l->name);
		if (lseek(l->fd, 100 * (i + 1), SEEK_SET) < 0)
			return zdtm_err("lseek");
		snprintf(l->path, sizeof(l->path), "%s/%s%s", cwd, l->name,
			 l->unlinked ? " (deleted)" : "");
	}
	for (int i = 0; i < NLINKS; i++)
		if (links[i].unlinked && unlink(links[i].name))
			return zdtm_err("unlink %s", links[i].name);
	return 0;
}

static int check(void)
{
	static char buf[LEN];
	char link[64], target[PATH_MAX + 64];
	struct stat st[NLINKS], pst;
	ssize_t n, bad;

	for (int i = 0; i < NLINKS; i++) {
		struct link *l = &links[i];
		off_t pos;

		if (l->fd < 0)
			return zdtm_fail("%s was never opened", l->name);
		if (fstat(l->fd, &st[i]))
			return zdtm_err("fd %d (%s) is not open", l->fd, l->name);
		snprintf(link, sizeof(link), "/proc/self/fd/%d", l->fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			return zdtm_err("readlink %s", link);
		target[n] = '\0';
		if (strcmp(target, l->path))
			return zdtm_fail("fd %d points to '%s', expected '%s'", l->fd, target, l->path);
		if ((fcntl(l->fd, F_GETFL) & O_ACCMODE) != l->flags)
			return zdtm_fail("fd %d (%s): access mode %d, expected %d", l->fd, l->name,
					 fcntl(l->fd, F_GETFL) & O_ACCMODE, l->flags);
		pos = lseek(l->fd, 0, SEEK_CUR);
		if (pos != 100 * (i + 1))
			return zdtm_fail("fd %d (%s): offset %lld, expected %d", l->fd, l->name,
					 (long long)pos, 100 * (i + 1));
		if (st[i].st_nlink != 2)
			return zdtm_fail("fd %d (%s): nlink %lu, expected 2", l->fd, l->name,
					 (unsigned long)st[i].st_nlink);
		if (i && (st[i].st_ino != st[0].st_ino || st[i].st_dev != st[0].st_dev))
			return zdtm_fail("fd %d (%s) is inode %lu, fd %d (%s) is inode %lu", l->fd,
					 l->name, (unsigned long)st[i].st_ino, links[0].fd,
					 links[0].name, (unsigned long)st[0].st_ino);
		if (l->unlinked) {
			if (stat(l->name, &pst) == 0)
				return zdtm_fail("%s exists again", l->name);
		} else {
			if (stat(l->name, &pst))
				return zdtm_err("stat %s", l->name);
			if (pst.st_ino != st[i].st_ino)
				return zdtm_fail("%s is inode %lu, its fd %d is inode %lu", l->name,
						 (unsigned long)pst.st_ino, l->fd,
						 (unsigned long)st[i].st_ino);
		}
	}

	n = pread(links[2].fd, buf, LEN, 0);
	if (n != LEN)
		return zdtm_fail("pread through the unlinked name gave %zd bytes, expected %d", n, LEN);
	bad = zdtm_verify(buf, LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("byte %zd differs", bad);
	/* One inode, not copies: a write through hl_a shows through hl_b and hl_c. */
	if (pwrite(links[0].fd, "LINK", 4, 50) != 4)
		return zdtm_err("pwrite");
	for (int i = 1; i < NLINKS; i++)
		if (pread(links[i].fd, buf, 4, 50) != 4 || memcmp(buf, "LINK", 4))
			return zdtm_fail("a write through %s is not seen through %s", links[0].name,
					 links[i].name);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
