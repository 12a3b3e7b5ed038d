/* POSIX record locks (fcntl F_SETLK) on several byte ranges of two files, read and write,
 * survive C/R: another process sees each range locked with the right type, bounds and
 * owner pid, and the gaps free. They stay process-owned: closing any other fd of the
 * file drops them all. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define NFILES 2
#define MAXR 8
#define MAXLK 16

struct range {
	short type;		/* F_RDLCK, F_WRLCK; F_UNLCK for a gap */
	off_t start, len;	/* len 0: up to EOF and beyond */
};

static const struct {
	const char *path;
	struct range r[MAXR];
	int nlocks;		/* the first nlocks ranges are locks, the rest gaps */
	int nranges;
} files[NFILES] = {
	{ "posix-a", {
		{ F_RDLCK, 0, 100 }, { F_WRLCK, 200, 100 }, { F_RDLCK, 1000, 500 },
		{ F_WRLCK, 4096, 0 },
		{ F_UNLCK, 100, 100 }, { F_UNLCK, 300, 700 }, { F_UNLCK, 1500, 2596 } },
	  4, 7 },
	{ "posix-b", {
		{ F_WRLCK, 10, 10 }, { F_RDLCK, 30, 1 }, { F_WRLCK, 1LL << 40, 4096 },
		{ F_UNLCK, 0, 10 }, { F_UNLCK, 20, 10 }, { F_UNLCK, 31, (1LL << 40) - 31 },
		{ F_UNLCK, (1LL << 40) + 4096, 0 } },
	  3, 7 },
};

static int fds[NFILES] = { -1, -1 };

static const char *tname(int t)
{
	return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

static int setup(void)
{
	for (int i = 0; i < NFILES; i++) {
		fds[i] = open(files[i].path, O_RDWR | O_CREAT | O_EXCL, 0644);
		if (fds[i] < 0)
			return zdtm_err("create %s", files[i].path);
		for (int k = 0; k < files[i].nlocks; k++) {
			const struct range *r = &files[i].r[k];
			struct flock fl = { .l_type = r->type, .l_whence = SEEK_SET,
					    .l_start = r->start, .l_len = r->len };

			if (fcntl(fds[i], F_SETLK, &fl))
				return zdtm_err("%s: F_SETLK %s [%lld, +%lld)", files[i].path,
						tname(r->type), (long long)r->start,
						(long long)r->len);
		}
	}
	return 0;
}

/* In a helper process (another lock owner): probe every range of file i with F_GETLK. */
static int probe_file(int i, pid_t owner, bool released)
{
	int fd = open(files[i].path, O_RDWR);

	if (fd < 0)
		return zdtm_err("helper: open %s", files[i].path);
	for (int k = 0; k < files[i].nranges; k++) {
		const struct range *r = &files[i].r[k];
		short want_w = released ? F_UNLCK : r->type;
		short want_r = released ? F_UNLCK : r->type == F_WRLCK ? F_WRLCK : F_UNLCK;
		short probe[2] = { F_WRLCK, F_RDLCK }, want[2] = { want_w, want_r };

		for (int p = 0; p < 2; p++) {
			struct flock fl = { .l_type = probe[p], .l_whence = SEEK_SET,
					    .l_start = r->start, .l_len = r->len };

			if (fcntl(fd, F_GETLK, &fl))
				return zdtm_err("helper: %s F_GETLK [%lld, +%lld)", files[i].path,
						(long long)r->start, (long long)r->len);
			if (fl.l_type != want[p])
				return zdtm_fail("%s [%lld, +%lld): a %s probe finds %s, expected %s",
						 files[i].path, (long long)r->start,
						 (long long)r->len, tname(probe[p]),
						 tname(fl.l_type), tname(want[p]));
			if (fl.l_type == F_UNLCK)
				continue;
			if (fl.l_start != r->start || fl.l_len != r->len || fl.l_pid != owner)
				return zdtm_fail("%s: %s lock is [%lld, +%lld) pid %d, expected "
						 "[%lld, +%lld) pid %d", files[i].path,
						 tname(fl.l_type), (long long)fl.l_start,
						 (long long)fl.l_len, fl.l_pid,
						 (long long)r->start, (long long)r->len, owner);
		}
		/* A real attempt agrees with the probe. */
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
				    .l_start = r->start, .l_len = r->len };
		int rc = fcntl(fd, F_SETLK, &fl);

		if (rc && errno != EAGAIN && errno != EACCES)
			return zdtm_err("helper: %s F_SETLK", files[i].path);
		if ((rc == 0) != (want_w == F_UNLCK))
			return zdtm_fail("%s [%lld, +%lld): F_SETLK F_WRLCK %s by another process",
					 files[i].path, (long long)r->start, (long long)r->len,
					 rc ? "refused" : "granted");
		fl.l_type = F_UNLCK;
		fcntl(fd, F_SETLK, &fl);
	}
	close(fd);
	return 0;
}

static int run_helper(bool a_released)
{
	pid_t owner = getpid(), pid;
	int status;

	pid = fork();
	if (pid < 0)
		return zdtm_err("fork");
	if (pid == 0) {
		for (int i = 0; i < NFILES; i++)
			if (probe_file(i, owner, i == 0 && a_released))
				_exit(1);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return zdtm_err("waitpid(%d)", pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return zdtm_fail("probe helper %d failed (status 0x%x)", pid, status);
	return 0;
}

/* How many POSIX lock: lines the fdinfo of fd shows. */
static int fdinfo_locks(int fd)
{
	char path[64], buf[8192], *line, *save;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "lock:", 5) && strstr(line, " POSIX "))
			n++;
	return n;
}

static int check(void)
{
	int fd2, n;

	for (int i = 0; i < NFILES; i++) {
		if (fcntl(fds[i], F_GETFD) < 0)
			return zdtm_err("fd %d (%s) is not open", fds[i], files[i].path);
		n = fdinfo_locks(fds[i]);
		if (n != files[i].nlocks)
			return zdtm_fail("fdinfo of fd %d (%s) shows %d POSIX locks, expected %d",
					 fds[i], files[i].path, n, files[i].nlocks);
	}
	if (run_helper(false))
		return -1;

	/* POSIX locks belong to the process: closing any fd of the file drops them all. */
	fd2 = open(files[0].path, O_RDONLY);
	if (fd2 < 0)
		return zdtm_err("open %s", files[0].path);
	close(fd2);
	n = fdinfo_locks(fds[0]);
	if (n != 0)
		return zdtm_fail("%s: %d locks left after closing another fd of it; POSIX locks "
				 "are process-owned and should all be gone", files[0].path, n);
	return run_helper(true);
}

ZDTM_TEST(.setup = setup, .check = check);
