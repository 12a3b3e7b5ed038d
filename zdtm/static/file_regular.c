/* Regular files open with different access modes, status flags and positions survive C/R:
 * F_GETFL, the offset, the contents and the path each fd refers to. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NFILES 3
#define LEN 20000

struct ofile {
	const char *name;	/* file in the cwd */
	int file;		/* which of the NFILES files */
	int flags;		/* open(2) flags */
	off_t pos;		/* offset set at setup */
	int fd;
	int fl;			/* F_GETFL right after open */
};

static const char *names[NFILES] = { "regular_a.dat", "regular_b.dat", "regular_c.dat" };
static char paths[NFILES][PATH_MAX + 64];

static struct ofile files[] = {
	{ .file = 0, .flags = O_RDONLY, .pos = 1234 },
	{ .file = 0, .flags = O_RDONLY | O_NOATIME, .pos = 0 },
	{ .file = 1, .flags = O_WRONLY | O_DSYNC, .pos = 5000 },
	{ .file = 1, .flags = O_RDWR | O_SYNC, .pos = LEN },
	{ .file = 2, .flags = O_RDWR | O_NONBLOCK, .pos = LEN + 1000000 },	/* past EOF */
	{ .file = 2, .flags = O_WRONLY | O_NOATIME, .pos = 17 },
};
#define NOPEN (int)(sizeof(files) / sizeof(files[0]))

static bool ready;

static int setup(void)
{
	static char buf[LEN];
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	for (int i = 0; i < NFILES; i++) {
		int fd = open(names[i], O_CREAT | O_TRUNC | O_WRONLY, 0644);

		snprintf(paths[i], sizeof(paths[i]), "%s/%s", cwd, names[i]);
		zdtm_fill(buf, LEN, 0x5e0 + i, 0);
		if (fd < 0 || zdtm_write_all(fd, buf, LEN) != LEN || close(fd))
			return zdtm_err("create %s", names[i]);
	}
	for (int i = 0; i < NOPEN; i++) {
		struct ofile *f = &files[i];

		f->name = names[f->file];
		f->fd = open(f->name, f->flags);
		if (f->fd < 0)
			return zdtm_err("open %s flags %#o", f->name, f->flags);
		f->fl = fcntl(f->fd, F_GETFL);
		if (f->fl < 0 || (f->fl & f->flags) != f->flags)
			return zdtm_fail("%s: F_GETFL %#o lacks flags %#o", f->name, f->fl, f->flags);
		if (lseek(f->fd, f->pos, SEEK_SET) != f->pos)
			return zdtm_err("lseek fd %d to %lld", f->fd, (long long)f->pos);
	}
	ready = true;
	return 0;
}

static int check_one(const struct ofile *f)
{
	static char buf[LEN + 1];
	char link[64], target[PATH_MAX + 64];
	struct stat fst, pst;
	off_t pos;
	ssize_t n, bad;
	int fl;

	fl = fcntl(f->fd, F_GETFL);
	if (fl < 0)
		return zdtm_err("fd %d (%s) is not open", f->fd, f->name);
	if (fl != f->fl)
		return zdtm_fail("fd %d (%s): F_GETFL %#o, expected %#o", f->fd, f->name, fl, f->fl);
	pos = lseek(f->fd, 0, SEEK_CUR);
	if (pos != f->pos)
		return zdtm_fail("fd %d (%s): offset %lld, expected %lld", f->fd, f->name,
				 (long long)pos, (long long)f->pos);

	snprintf(link, sizeof(link), "/proc/self/fd/%d", f->fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, paths[f->file]))
		return zdtm_fail("fd %d points to '%s', expected '%s'", f->fd, target,
				 paths[f->file]);
	if (fstat(f->fd, &fst) || stat(f->name, &pst))
		return zdtm_err("stat fd %d / %s", f->fd, f->name);
	if (fst.st_dev != pst.st_dev || fst.st_ino != pst.st_ino)
		return zdtm_fail("fd %d is inode %lu, but %s is inode %lu", f->fd,
				 (unsigned long)fst.st_ino, f->name, (unsigned long)pst.st_ino);
	if (fst.st_size != LEN)
		return zdtm_fail("fd %d: size %lld, expected %d", f->fd, (long long)fst.st_size, LEN);

	if ((f->flags & O_ACCMODE) == O_WRONLY) {
		/* Not readable: reading must fail with EBADF, as it did before. */
		if (pread(f->fd, buf, 1, 0) != -1 || errno != EBADF)
			return zdtm_fail("write-only fd %d can be read", f->fd);
		return 0;
	}
	n = pread(f->fd, buf, LEN + 1, 0);
	if (n != LEN)
		return zdtm_fail("fd %d: pread gave %zd bytes, expected %d", f->fd, n, LEN);
	bad = zdtm_verify(buf, LEN, 0x5e0 + f->file, 0);
	if (bad >= 0)
		return zdtm_fail("fd %d (%s): byte %zd differs", f->fd, f->name, bad);
	if ((f->flags & O_ACCMODE) == O_RDONLY &&
	    (pwrite(f->fd, buf, 1, 0) != -1 || errno != EBADF))
		return zdtm_fail("read-only fd %d can be written", f->fd);
	if (lseek(f->fd, 0, SEEK_CUR) != f->pos)
		return zdtm_fail("fd %d: pread moved the offset", f->fd);
	return 0;
}

static int check(void)
{
	if (!ready)
		return zdtm_fail("no files were opened (setup did not run)");
	for (int i = 0; i < NOPEN; i++)
		if (check_one(&files[i]))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
