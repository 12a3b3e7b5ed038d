/* Directories open with O_DIRECTORY survive C/R at their getdents positions: one at the
 * start, one part-way through (reading on gives exactly the entries not yet seen), one at
 * the end (reading gives nothing). */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define DIR "dir.d"
#define NENT 60		/* files in the directory; with "." and ".." NENT + 2 entries */
#define NALL (NENT + 2)

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int dstart = -1, dmid = -1, dend = -1;
static off_t mid_pos, end_pos;
static bool mid_seen[NALL];	/* entries dmid returned before C/R */
static int mid_nseen;
static char path[PATH_MAX + 64];

/* Index of an entry: "." is NENT, ".." is NENT + 1, "fNN" is NN; -1 if unknown. */
static int entry_index(const char *name)
{
	int n;
	char c;

	if (!strcmp(name, "."))
		return NENT;
	if (!strcmp(name, ".."))
		return NENT + 1;
	if (sscanf(name, "f%d%c", &n, &c) == 1 && n >= 0 && n < NENT)
		return n;
	return -1;
}

/* Read entries from fd with a buffer of bufsz; mark them in seen (failing on repeats);
 * stop after one getdents call if once is set. Returns entries read, or -1. */
static int read_entries(int fd, size_t bufsz, bool once, bool *seen)
{
	char buf[4096];
	int count = 0;

	for (;;) {
		long n = syscall(SYS_getdents64, fd, buf, bufsz);

		if (n < 0)
			return zdtm_err("getdents64 on fd %d", fd);
		if (n == 0)
			return count;
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
			int i = entry_index(d->d_name);

			if (i < 0)
				return zdtm_fail("fd %d: unexpected entry '%s'", fd, d->d_name);
			if (seen[i])
				return zdtm_fail("fd %d: entry '%s' returned twice", fd, d->d_name);
			seen[i] = true;
			count++;
			off += d->d_reclen;
		}
		if (once)
			return count;
	}
}

static int setup(void)
{
	bool seen[NALL] = { false };
	char cwd[PATH_MAX], name[32];

	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(path, sizeof(path), "%s/%s", cwd, DIR);
	if (mkdir(DIR, 0755))
		return zdtm_err("mkdir %s", DIR);
	for (int i = 0; i < NENT; i++) {
		int fd;

		snprintf(name, sizeof(name), DIR "/f%d", i);
		fd = open(name, O_CREAT | O_WRONLY, 0644);
		if (fd < 0)
			return zdtm_err("create %s", name);
		close(fd);
	}
	dstart = open(DIR, O_RDONLY | O_DIRECTORY);
	dmid = open(DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dend = open(DIR, O_RDONLY | O_DIRECTORY | O_NOATIME);
	if (dstart < 0 || dmid < 0 || dend < 0)
		return zdtm_err("open %s", DIR);

	/* A small buffer: the first call returns some of the entries only. */
	mid_nseen = read_entries(dmid, 256, true, mid_seen);
	if (mid_nseen <= 0 || mid_nseen >= NALL)
		return zdtm_fail("a 256-byte getdents returned %d of %d entries", mid_nseen, NALL);
	mid_pos = lseek(dmid, 0, SEEK_CUR);
	if (read_entries(dend, 4096, false, seen) != NALL)
		return zdtm_fail("the directory does not list %d entries", NALL);
	end_pos = lseek(dend, 0, SEEK_CUR);
	zdtm_msg("mid fd at %lld after %d entries, end fd at %lld", (long long)mid_pos,
		 mid_nseen, (long long)end_pos);
	return 0;
}

static int check_fd(int fd, off_t want)
{
	char link[64], target[PATH_MAX + 64];
	struct stat st, pst;
	off_t pos;
	ssize_t n;

	if (fstat(fd, &st))
		return zdtm_err("directory fd %d is not open", fd);
	if (stat(DIR, &pst))
		return zdtm_err("stat %s", DIR);
	if (!S_ISDIR(st.st_mode) || st.st_ino != pst.st_ino || st.st_dev != pst.st_dev)
		return zdtm_fail("fd %d is inode %lu mode %#o, %s is inode %lu", fd,
				 (unsigned long)st.st_ino, st.st_mode, DIR, (unsigned long)pst.st_ino);
	if (!(fcntl(fd, F_GETFL) & O_DIRECTORY))
		return zdtm_fail("fd %d: F_GETFL %#o lacks O_DIRECTORY", fd, fcntl(fd, F_GETFL));
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, path))
		return zdtm_fail("fd %d points to '%s', expected '%s'", fd, target, path);
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != want)
		return zdtm_fail("directory fd %d at position %lld, expected %lld", fd,
				 (long long)pos, (long long)want);
	return 0;
}

static int check(void)
{
	bool seen[NALL];
	int n;

	if (dstart < 0 || dmid < 0 || dend < 0)
		return zdtm_fail("the directory fds were never opened");
	if (check_fd(dstart, 0) || check_fd(dmid, mid_pos) || check_fd(dend, end_pos))
		return -1;
	if (fcntl(dmid, F_GETFD) != FD_CLOEXEC || fcntl(dstart, F_GETFD) != 0)
		return zdtm_fail("F_GETFD %d/%d, expected 0/%d", fcntl(dstart, F_GETFD),
				 fcntl(dmid, F_GETFD), FD_CLOEXEC);

	/* Part-way: the rest, and only the rest. */
	memcpy(seen, mid_seen, sizeof(seen));
	n = read_entries(dmid, 4096, false, seen);
	if (n < 0)
		return zdtm_fail("fd %d read on from position %lld: an entry came again", dmid,
				 (long long)mid_pos);
	if (n != NALL - mid_nseen)
		return zdtm_fail("fd %d read on gave %d entries, expected %d", dmid, n,
				 NALL - mid_nseen);
	/* At the end: nothing more. */
	memset(seen, 0, sizeof(seen));
	n = read_entries(dend, 4096, false, seen);
	if (n != 0)
		return zdtm_fail("fd %d at the end still gave %d entries", dend, n);
	/* At the start: everything. */
	n = read_entries(dstart, 4096, false, seen);
	if (n != NALL)
		return zdtm_fail("fd %d from the start gave %d entries, expected %d", dstart, n, NALL);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
