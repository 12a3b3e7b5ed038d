/* Locks held by three tasks on one file survive C/R with their owners: shared flocks by
 * the root and two children, POSIX ranges by the two children. /proc/locks lists all six
 * with the right pids, another owner sees each range held by the right child, and each
 * child's locks go away when that child exits, and only then. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include "zdtm.h"

#define PATH "multi-file"
#define MAXLK 32
#define NCHILD 2

struct posix_lock {
	short type;
	off_t start, len;
};

/* Child k holds a shared flock and these POSIX locks. */
static const struct posix_lock child_locks[NCHILD][2] = {
	{ { F_WRLCK, 0, 4096 }, { F_WRLCK, 5000, 10 } },
	{ { F_RDLCK, 8192, 4096 }, { F_RDLCK, 20000, 0 } },
};

static int fd = -1;
static pid_t kids[NCHILD];
static int *proc_pids;		/* shared: [0] root, [1 + k] child k, as /proc/locks shows them */

struct lk {
	char kind[16], rw[16], token[64];
	int pid;
	long long start, end;	/* end -1: EOF */
};

static bool parse_lock(const char *line, struct lk *l)
{
	const char *p = strchr(line, ':');
	char mand[16], end[32];

	if (!p)
		return false;
	p++;
	while (*p == ' ')
		p++;
	if (!strncmp(p, "->", 2))
		return false;	/* a blocked request, not a held lock */
	if (sscanf(p, "%15s %15s %15s %d %63s %lld %31s", l->kind, mand, l->rw, &l->pid,
		   l->token, &l->start, end) != 7)
		return false;
	l->end = strcmp(end, "EOF") ? atoll(end) : -1;
	return true;
}

static int fd_locks(int lfd, struct lk *out, int max)
{
	char path[64], buf[8192], *line, *save;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", lfd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "lock:", 5) && n < max && parse_lock(line + 5, &out[n]))
			n++;
	return n;
}

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

static int proc_pid(void)
{
	char buf[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

static const char *tname(int t)
{
	return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

/* Does the list hold a lock kind/rw/pid/[start, end]? Count them. */
static int count(const struct lk *l, int n, const char *kind, const char *rw, int pid,
		 long long start, long long end)
{
	int c = 0;

	for (int i = 0; i < n; i++)
		if (!strcmp(l[i].kind, kind) && !strcmp(l[i].rw, rw) && l[i].pid == pid &&
		    l[i].start == start && l[i].end == end)
			c++;
	return c;
}

static long long lk_end(const struct posix_lock *p)
{
	return p->len ? p->start + p->len - 1 : -1;
}

static int child_setup(void *arg)
{
	int k = (int)(long)arg;

	/* Drop the root's inherited description: this child holds locks through its own. */
	close(fd);
	fd = open(PATH, O_RDWR);
	if (fd < 0)
		return zdtm_err("child %d: open %s", k, PATH);
	if (flock(fd, LOCK_SH | LOCK_NB))
		return zdtm_err("child %d: LOCK_SH", k);
	for (int i = 0; i < 2; i++) {
		const struct posix_lock *p = &child_locks[k][i];
		struct flock fl = { .l_type = p->type, .l_whence = SEEK_SET,
				    .l_start = p->start, .l_len = p->len };

		if (fcntl(fd, F_SETLK, &fl))
			return zdtm_err("child %d: F_SETLK %s", k, tname(p->type));
	}
	proc_pids[1 + k] = proc_pid();
	return 0;
}

/* The child's own view: its fd carries its flock and its two POSIX locks. */
static int child_check(void *arg)
{
	int k = (int)(long)arg, me = proc_pid(), n;
	struct lk l[MAXLK];

	n = fd_locks(fd, l, MAXLK);
	if (n != 3)
		return zdtm_fail("child %d: fdinfo of fd %d shows %d locks, expected 3", k, fd, n);
	if (count(l, n, "FLOCK", "READ", me, 0, -1) != 1)
		return zdtm_fail("child %d (pid %d): its shared flock is missing", k, me);
	for (int i = 0; i < 2; i++) {
		const struct posix_lock *p = &child_locks[k][i];

		if (count(l, n, "POSIX", p->type == F_WRLCK ? "WRITE" : "READ", me, p->start,
			  lk_end(p)) != 1)
			return zdtm_fail("child %d (pid %d): POSIX %s [%lld, +%lld) is missing", k,
					 me, tname(p->type), (long long)p->start,
					 (long long)p->len);
	}
	return 0;
}

static int setup(void)
{
	proc_pids = zdtm_shmem(4096);
	if (!proc_pids)
		return zdtm_err("shared page");
	fd = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return zdtm_err("create %s", PATH);
	if (flock(fd, LOCK_SH))
		return zdtm_err("LOCK_SH");
	proc_pids[0] = proc_pid();
	for (int k = 0; k < NCHILD; k++) {
		struct zdtm_task t = { .setup = child_setup, .check = child_check,
				       .arg = (void *)(long)k };

		kids[k] = zdtm_child(&t);
		if (kids[k] < 0)
			return -1;
	}
	return 0;
}

/* What is wrong in one read of /proc/locks on the file, against the root's flock and the
 * flocks and ranges of children k >= first, nothing else: 0 if nothing, -1 on a read error. */
struct listing {
	const char *token;	/* the file's MAJ:MIN:INO */
	int first;		/* children k >= first still hold their locks */
};

static int listing_problem(void *arg, char *why, size_t len)
{
	const struct listing *a = arg;
	const char *token = a->token;
	int first = a->first;
	struct lk l[MAXLK];
	int n = proc_locks(token, l, MAXLK), want = 1;

	if (n < 0)
		return -1;
	if (count(l, n, "FLOCK", "READ", proc_pids[0], 0, -1) != 1) {
		snprintf(why, len, "no shared flock of the root (pid %d)", proc_pids[0]);
		return 1;
	}
	for (int k = first; k < NCHILD; k++) {
		int pid = proc_pids[1 + k];

		if (count(l, n, "FLOCK", "READ", pid, 0, -1) != 1) {
			snprintf(why, len, "no shared flock of child %d (pid %d)", k, pid);
			return 1;
		}
		for (int i = 0; i < 2; i++) {
			const struct posix_lock *p = &child_locks[k][i];

			if (count(l, n, "POSIX", p->type == F_WRLCK ? "WRITE" : "READ", pid,
				  p->start, lk_end(p)) != 1) {
				snprintf(why, len, "no POSIX %s [%lld, +%lld) of child %d (pid %d)",
					 tname(p->type), (long long)p->start, (long long)p->len, k,
					 pid);
				return 1;
			}
		}
		want += 3;
	}
	if (n != want) {
		snprintf(why, len, "%d locks listed on %s, expected %d", n, PATH, want);
		return 1;
	}
	return 0;
}

/* /proc/locks shows exactly the expected locks of the file (a global listing: see
 * zdtm_settled). */
static int check_listing(const char *token, int first)
{
	struct listing a = { token, first };

	return zdtm_settled(listing_problem, &a, "/proc/locks");
}

/* Probe the children's ranges from the root (another POSIX owner). */
static int check_ranges(int first)
{
	for (int k = 0; k < NCHILD; k++)
		for (int i = 0; i < 2; i++) {
			const struct posix_lock *p = &child_locks[k][i];
			struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
					    .l_start = p->start, .l_len = p->len };
			short want = k >= first ? p->type : F_UNLCK;

			if (fcntl(fd, F_GETLK, &fl))
				return zdtm_err("F_GETLK");
			if (fl.l_type != want)
				return zdtm_fail("[%lld, +%lld) of child %d: F_GETLK finds %s, expected %s",
						 (long long)p->start, (long long)p->len, k,
						 tname(fl.l_type), tname(want));
			if (want != F_UNLCK && (fl.l_pid != kids[k] || fl.l_start != p->start ||
						fl.l_len != p->len))
				return zdtm_fail("[%lld, +%lld): held by pid %d as [%lld, +%lld), "
						 "expected child %d (pid %d)", (long long)p->start,
						 (long long)p->len, fl.l_pid, (long long)fl.l_start,
						 (long long)fl.l_len, k, kids[k]);
		}
	return 0;
}

/* op|LOCK_NB on a fresh description: 0 granted (and dropped), 1 conflicts, -1 error. */
static int try_fresh(int op)
{
	int f = open(PATH, O_RDONLY), rc;

	if (f < 0)
		return zdtm_err("open %s", PATH);
	rc = flock(f, op | LOCK_NB);
	if (rc && errno != EWOULDBLOCK)
		rc = zdtm_err("flock on a fresh description");
	else if (rc)
		rc = 1;
	close(f);
	return rc;
}

static int check_all(void)
{
	struct lk l[MAXLK];
	char token[64];
	int n;

	if (!proc_pids || fcntl(fd, F_GETFD) < 0)
		return zdtm_fail("the root's fd %d on %s is not open", fd, PATH);
	n = fd_locks(fd, l, MAXLK);
	if (n != 1 || strcmp(l[0].kind, "FLOCK") || strcmp(l[0].rw, "READ"))
		return zdtm_fail("the root's fd %d shows %d locks, expected one shared flock", fd, n);
	snprintf(token, sizeof(token), "%s", l[0].token);

	if (check_listing(token, 0) || check_ranges(0))
		return -1;
	if (try_fresh(LOCK_SH) != 0 || try_fresh(LOCK_EX) != 1)
		return zdtm_fail("a fresh description should get LOCK_SH and not LOCK_EX");

	for (int k = 0; k < NCHILD; k++) {
		if (zdtm_child_check(kids[k]))
			return -1;
		kids[k] = 0;
		if (check_listing(token, k + 1) || check_ranges(k + 1))
			return -1;
		if (try_fresh(LOCK_EX) != 1)
			return zdtm_fail("LOCK_EX granted after child %d exited: the root still "
					 "holds a shared flock", k);
	}
	if (flock(fd, LOCK_UN))
		return zdtm_err("LOCK_UN");
	if (try_fresh(LOCK_EX) != 0)
		return zdtm_fail("LOCK_EX refused with every lock released");
	return 0;
}

static int check(void)
{
	int rc = check_all();

	/* After a failure, stop and reap the children still there. */
	for (int k = 0; k < NCHILD; k++)
		if (kids[k] > 0)
			zdtm_child_check(kids[k]);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
