/* flock locks, shared and exclusive, on several files survive C/R: a fresh open file
 * description conflicts with them exactly as before, and /proc/locks and the fds' fdinfo
 * list them with this task's pid. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NFILES 5
#define MAXLK 16

static const struct {
	const char *path;
	int op;			/* LOCK_SH, LOCK_EX, or 0: open but not locked */
} files[NFILES] = {
	{ "flock-sh-a", LOCK_SH },
	{ "flock-ex-a", LOCK_EX },
	{ "flock-sh-b", LOCK_SH },
	{ "flock-ex-b", LOCK_EX },
	{ "flock-none", 0 },
};

static int fds[NFILES] = { -1, -1, -1, -1, -1 };
static int extra_fd = -1;	/* a second description of files[0], also LOCK_SH */

struct lk {
	char kind[16], rw[16], token[64];
	int pid;
	bool blocked;
};

/* Parse one lock line: "N: [-> ]KIND ADVISORY RW PID MAJ:MIN:INO START END". */
static bool parse_lock(const char *line, struct lk *l)
{
	const char *p = strchr(line, ':');
	char mand[16];

	if (!p)
		return false;
	p++;
	while (*p == ' ')
		p++;
	l->blocked = !strncmp(p, "->", 2);
	if (l->blocked)
		p += 2;
	return sscanf(p, "%15s %15s %15s %d %63s", l->kind, mand, l->rw, &l->pid, l->token) == 5;
}

/* The lock lines of /proc/self/fdinfo/FD. */
static int fd_locks(int fd, struct lk *out, int max)
{
	char path[64], buf[8192], *line, *save;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "lock:", 5) && n < max && parse_lock(line + 5, &out[n]))
			n++;
	return n;
}

/* The lines of /proc/locks on the file with token "MAJ:MIN:INO". */
static int proc_locks(const char *token, struct lk *out, int max)
{
	static char buf[1 << 18];
	char *line, *save;
	struct lk l;
	int n = 0;

	if (zdtm_read_file("/proc/locks", buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (parse_lock(line, &l) && !strcmp(l.token, token) && n < max)
			out[n++] = l;
	return n;
}

/* Our pid as the proc mount sees it (the pid namespace of /proc may not be ours). */
static int proc_pid(void)
{
	char buf[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

static int setup(void)
{
	for (int i = 0; i < NFILES; i++) {
		fds[i] = open(files[i].path, O_RDWR | O_CREAT | O_EXCL, 0644);
		if (fds[i] < 0)
			return zdtm_err("create %s", files[i].path);
		if (files[i].op && flock(fds[i], files[i].op))
			return zdtm_err("flock(%s, %s)", files[i].path,
					files[i].op == LOCK_SH ? "LOCK_SH" : "LOCK_EX");
	}
	extra_fd = open(files[0].path, O_RDONLY);
	if (extra_fd < 0)
		return zdtm_err("open %s again", files[0].path);
	if (flock(extra_fd, LOCK_SH | LOCK_NB))
		return zdtm_err("second LOCK_SH on %s", files[0].path);
	return 0;
}

/* Try op|LOCK_NB on a fresh description: 0 if granted (then dropped), 1 if it conflicts. */
static int try_fresh(const char *path, int op)
{
	int fd = open(path, O_RDONLY), rc;

	if (fd < 0)
		return zdtm_err("open %s", path);
	rc = flock(fd, op | LOCK_NB);
	if (rc && errno != EWOULDBLOCK) {
		zdtm_err("flock(fresh %s)", path);
		close(fd);
		return -1;
	}
	close(fd);
	return rc ? 1 : 0;
}

struct listing {
	const char *path, *token, *want_rw;	/* the file, its MAJ:MIN:INO, READ or WRITE */
	int want_n, pid;			/* how many flocks, all this task's */
};

/* What is wrong in one read of /proc/locks on the file: 0 if nothing, -1 on a read error. */
static int listing_problem(void *arg, char *why, size_t len)
{
	const struct listing *a = arg;
	struct lk l[MAXLK];
	int n = proc_locks(a->token, l, MAXLK);

	if (n < 0)
		return -1;
	if (n != a->want_n) {
		snprintf(why, len, "%d locks listed on %s (%s), expected %d", n, a->path, a->token,
			 a->want_n);
		return 1;
	}
	for (int k = 0; k < n; k++)
		if (strcmp(l[k].kind, "FLOCK") || strcmp(l[k].rw, a->want_rw) || l[k].pid != a->pid ||
		    l[k].blocked) {
			snprintf(why, len, "on %s: %s %s pid %d%s, expected FLOCK %s pid %d", a->path,
				 l[k].kind, l[k].rw, l[k].pid, l[k].blocked ? " (blocked)" : "",
				 a->want_rw, a->pid);
			return 1;
		}
	return 0;
}

static int check_one(int i, int pid)
{
	const char *path = files[i].path;
	const char *want_rw = files[i].op == LOCK_EX ? "WRITE" : "READ";
	int want_n = files[i].op ? (i == 0 ? 2 : 1) : 0;
	struct lk l[MAXLK];
	struct stat st_fd, st_path;
	char token[64];
	int n, c;

	if (fstat(fds[i], &st_fd))
		return zdtm_err("fd %d (%s) is not open", fds[i], path);
	if (stat(path, &st_path))
		return zdtm_err("stat %s", path);
	if (st_fd.st_ino != st_path.st_ino || st_fd.st_dev != st_path.st_dev)
		return zdtm_fail("fd %d is not %s (inode %lu, expected %lu)", fds[i], path,
				 (unsigned long)st_fd.st_ino, (unsigned long)st_path.st_ino);

	n = fd_locks(fds[i], l, MAXLK);
	if (n < 0)
		return zdtm_err("read fdinfo of fd %d", fds[i]);
	if (n != (files[i].op ? 1 : 0))
		return zdtm_fail("fdinfo of fd %d (%s) shows %d locks, expected %d", fds[i], path,
				 n, files[i].op ? 1 : 0);
	if (n) {
		if (strcmp(l[0].kind, "FLOCK") || strcmp(l[0].rw, want_rw) || l[0].pid != pid)
			return zdtm_fail("fd %d (%s) holds %s %s pid %d, expected FLOCK %s pid %d",
					 fds[i], path, l[0].kind, l[0].rw, l[0].pid, want_rw, pid);
		snprintf(token, sizeof(token), "%s", l[0].token);
		struct listing a = { path, token, want_rw, want_n, pid };

		if (zdtm_settled(listing_problem, &a, "/proc/locks"))
			return -1;
	}

	c = try_fresh(path, LOCK_SH);
	if (c < 0)
		return -1;
	if (c != (files[i].op == LOCK_EX))
		return zdtm_fail("%s: LOCK_SH from a fresh description %s, expected it %s", path,
				 c ? "conflicts" : "is granted",
				 files[i].op == LOCK_EX ? "to conflict" : "granted");
	c = try_fresh(path, LOCK_EX);
	if (c < 0)
		return -1;
	if (c != (files[i].op != 0))
		return zdtm_fail("%s: LOCK_EX from a fresh description %s, expected it %s", path,
				 c ? "conflicts" : "is granted",
				 files[i].op ? "to conflict" : "granted");
	return 0;
}

static int check(void)
{
	int pid = proc_pid();
	struct lk l[MAXLK];
	int n;

	if (pid <= 0)
		return zdtm_err("readlink /proc/self");
	for (int i = 0; i < NFILES; i++)
		if (check_one(i, pid))
			return -1;

	n = fd_locks(extra_fd, l, MAXLK);
	if (n != 1 || strcmp(l[0].kind, "FLOCK") || strcmp(l[0].rw, "READ"))
		return zdtm_fail("second description fd %d of %s holds %d locks, expected one FLOCK READ",
				 extra_fd, files[0].path, n);
	/* Dropping one of the two shared locks leaves the other: still no LOCK_EX. */
	if (flock(fds[0], LOCK_UN))
		return zdtm_err("unlock fd %d", fds[0]);
	if (try_fresh(files[0].path, LOCK_EX) != 1)
		return zdtm_fail("%s: LOCK_EX granted with fd %d's shared lock dropped, "
				 "but fd %d should still hold one", files[0].path, fds[0], extra_fd);
	if (flock(extra_fd, LOCK_UN))
		return zdtm_err("unlock fd %d", extra_fd);
	if (try_fresh(files[0].path, LOCK_EX) != 0)
		return zdtm_fail("%s: LOCK_EX still conflicts after both shared locks dropped",
				 files[0].path);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
