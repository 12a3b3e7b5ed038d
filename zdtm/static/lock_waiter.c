/* Tasks blocked waiting for locks survive C/R still waiting: three children sleep in
 * F_SETLKW, flock(LOCK_SH) and F_OFD_SETLKW on locks the root holds. At check they are
 * still blocked (listed as "->" in /proc/locks, not granted, not failed); the root then
 * releases each lock and the waiter gets it, seen from the root as held by that waiter. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum { W_POSIX, W_FLOCK, W_OFD, NW };

enum { ST_NONE, ST_BLOCKING, ST_GOT, ST_ERROR };

static const char *const paths[NW] = { "wait-posix", "wait-flock", "wait-ofd" };
static const char *const kinds[NW] = { "POSIX", "FLOCK", "OFDLCK" };
/* what each waiter asks for, as /proc/locks writes it */
static const char *const want_rw[NW] = { "READ", "READ", "WRITE" };
static const long long want_start[NW] = { 10, 0, 0 }, want_end[NW] = { 19, -1, 9 };

struct waiter {
	int state;
	int err;
	int proc_pid;		/* the waiter's pid as /proc shows it */
	int quit;
};

static int fds[NW] = { -1, -1, -1 };
static pid_t pids[NW];
static struct waiter *w;	/* shared with the waiters */
static char ofd_token[64];	/* "MAJ:MIN:INO" of the OFD file, as /proc/locks writes it */

static int proc_pid(void)
{
	char buf[32];
	ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return atoi(buf);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static void waiter_main(int k, pid_t parent)
{
	struct flock fl = { .l_whence = SEEK_SET };
	int fd = open(paths[k], O_RDWR), rc;

	/* Never outlive the root, whatever happens to it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	/* Keep only our own description: the root's (and their locks) stay the root's. */
	for (int i = 0; i < NW; i++)
		close(fds[i]);

	w[k].proc_pid = proc_pid();
	if (fd < 0) {
		w[k].err = errno;
		__atomic_store_n(&w[k].state, ST_ERROR, __ATOMIC_SEQ_CST);
		_exit(1);
	}
	__atomic_store_n(&w[k].state, ST_BLOCKING, __ATOMIC_SEQ_CST);
	switch (k) {
	case W_POSIX:
		fl.l_type = F_RDLCK;
		fl.l_start = 10;
		fl.l_len = 10;
		rc = fcntl(fd, F_SETLKW, &fl);
		break;
	case W_FLOCK:
		rc = flock(fd, LOCK_SH);
		break;
	default:
		fl.l_type = F_WRLCK;
		fl.l_start = 0;
		fl.l_len = 10;
		rc = fcntl(fd, F_OFD_SETLKW, &fl);
		break;
	}
	if (rc) {
		w[k].err = errno;
		__atomic_store_n(&w[k].state, ST_ERROR, __ATOMIC_SEQ_CST);
		_exit(1);
	}
	__atomic_store_n(&w[k].state, ST_GOT, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&w[k].quit, __ATOMIC_SEQ_CST) && getppid() == parent)
		usleep(1000);
	_exit(0);
}

/* Take "MAJ:MIN:INO" of the file from the lock line in the fdinfo of fd. */
static int fd_token(int fd)
{
	char path[64], buf[4096], *p;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || !(p = strstr(buf, "\nlock:")))
		return -1;
	if (sscanf(p, "\nlock: %*s %*s %*s %*s %*s %63s", ofd_token) != 1)
		return -1;
	return 0;
}

/* Is waiter k listed in /proc/locks as blocked on what it asked for? */
static bool listed_blocked(int k)
{
	static char buf[1 << 18];
	char *line, *save;

	if (zdtm_read_file("/proc/locks", buf, sizeof(buf)) < 0)
		return false;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char kind[16], mand[16], rw[16], token[64], end[32];
		long long start;
		int pid;
		char *p = strstr(line, ": -> ");

		if (!p || sscanf(p + 5, "%15s %15s %15s %d %63s %lld %31s", kind, mand, rw, &pid,
				 token, &start, end) != 7)
			continue;
		/* OFD locks have no pid: /proc/locks shows -1; tell them by the file. */
		if (k == W_OFD ? pid != -1 || strcmp(token, ofd_token) : pid != w[k].proc_pid)
			continue;
		if (!strcmp(kind, kinds[k]) && !strcmp(rw, want_rw[k]) &&
		    start == want_start[k] && (strcmp(end, "EOF") ? atoll(end) : -1) == want_end[k])
			return true;
	}
	return false;
}

static const char *state_name(int st)
{
	return st == ST_NONE ? "not started" : st == ST_BLOCKING ? "blocked" :
	       st == ST_GOT ? "granted" : "failed";
}

/* Wait until waiter k is blocked in the kernel on its lock; true if it is. */
static bool wait_blocked(int k, long long deadline)
{
	while (now_ms() < deadline) {
		int st = __atomic_load_n(&w[k].state, __ATOMIC_SEQ_CST);

		if (st != ST_BLOCKING && st != ST_NONE)
			return false;
		if (listed_blocked(k))
			return true;
		usleep(1000);
	}
	return false;
}

static void stop_waiters(void)
{
	for (int k = 0; k < NW; k++) {
		int status;

		if (pids[k] <= 0)
			continue;
		__atomic_store_n(&w[k].quit, 1, __ATOMIC_SEQ_CST);
		if (w[k].state != ST_GOT)
			kill(pids[k], SIGKILL);
		while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR)
			;
		pids[k] = 0;
	}
}

static int setup(void)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	pid_t parent = getpid();

	w = zdtm_shmem(4096);
	if (!w)
		return zdtm_err("shared page");
	for (int k = 0; k < NW; k++) {
		fds[k] = open(paths[k], O_RDWR | O_CREAT | O_EXCL, 0644);
		if (fds[k] < 0)
			return zdtm_err("create %s", paths[k]);
	}
	fl.l_start = 0;
	fl.l_len = 100;
	if (fcntl(fds[W_POSIX], F_SETLK, &fl))
		return zdtm_err("F_SETLK F_WRLCK [0, 100)");
	if (flock(fds[W_FLOCK], LOCK_EX))
		return zdtm_err("LOCK_EX");
	fl.l_len = 0;
	if (fcntl(fds[W_OFD], F_OFD_SETLK, &fl))
		return zdtm_err("F_OFD_SETLK F_WRLCK [0, EOF)");
	if (fd_token(fds[W_OFD]))
		return zdtm_fail("no lock in the fdinfo of fd %d", fds[W_OFD]);

	for (int k = 0; k < NW; k++) {
		pids[k] = fork();
		if (pids[k] < 0)
			return zdtm_err("fork");
		if (pids[k] == 0)
			waiter_main(k, parent);
		if (!wait_blocked(k, now_ms() + 2500)) {
			zdtm_fail("waiter %d (%s) did not block: %s, %s", pids[k], kinds[k],
				  state_name(w[k].state), strerror(w[k].err));
			stop_waiters();
			return -1;
		}
	}
	return 0;
}

static int release(int k)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET };

	if (k == W_FLOCK)
		return flock(fds[k], LOCK_UN) ? zdtm_err("LOCK_UN") : 0;
	if (fcntl(fds[k], k == W_POSIX ? F_SETLK : F_OFD_SETLK, &fl))
		return zdtm_err("unlock %s", paths[k]);
	return 0;
}

/* After the release: the waiter's lock is there, seen from the root. */
static int check_granted(int k)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int f;

	switch (k) {
	case W_POSIX:
		if (fcntl(fds[k], F_GETLK, &fl))
			return zdtm_err("F_GETLK");
		if (fl.l_type != F_RDLCK || fl.l_pid != pids[k] || fl.l_start != 10 ||
		    fl.l_len != 10)
			return zdtm_fail("%s: F_GETLK finds type %d pid %d [%lld, +%lld), expected "
					 "the waiter's F_RDLCK pid %d [10, +10)", paths[k],
					 fl.l_type, fl.l_pid, (long long)fl.l_start,
					 (long long)fl.l_len, pids[k]);
		return 0;
	case W_FLOCK:
		f = open(paths[k], O_RDONLY);
		if (f < 0)
			return zdtm_err("open %s", paths[k]);
		if (!flock(f, LOCK_EX | LOCK_NB) || errno != EWOULDBLOCK) {
			close(f);
			return zdtm_fail("%s: LOCK_EX is not refused though the waiter holds "
					 "LOCK_SH", paths[k]);
		}
		close(f);
		return 0;
	default:
		f = open(paths[k], O_RDONLY);
		if (f < 0)
			return zdtm_err("open %s", paths[k]);
		if (fcntl(f, F_OFD_GETLK, &fl)) {
			close(f);
			return zdtm_err("F_OFD_GETLK");
		}
		close(f);
		if (fl.l_type != F_WRLCK || fl.l_pid != -1 || fl.l_start != 0 || fl.l_len != 10)
			return zdtm_fail("%s: F_OFD_GETLK finds type %d pid %d [%lld, +%lld), "
					 "expected the waiter's F_WRLCK [0, +10)", paths[k],
					 fl.l_type, fl.l_pid, (long long)fl.l_start,
					 (long long)fl.l_len);
		return 0;
	}
}

static int check_all(void)
{
	long long deadline = now_ms() + 1000;

	if (!w)
		return zdtm_fail("no waiters were ever started");
	for (int k = 0; k < NW; k++) {
		char path[64], buf[4096];

		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fds[k]);
		if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || !strstr(buf, kinds[k]))
			return zdtm_fail("the root's fd %d on %s holds no %s lock", fds[k],
					 paths[k], kinds[k]);
	}
	if (fd_token(fds[W_OFD]))
		return zdtm_fail("no lock in the fdinfo of fd %d", fds[W_OFD]);
	/* A restored waiter may need a moment to re-enter its syscall. */
	for (int k = 0; k < NW; k++)
		if (!wait_blocked(k, deadline))
			return zdtm_fail("waiter %d (%s on %s) is %s%s%s, expected blocked in "
					 "/proc/locks", pids[k], kinds[k], paths[k],
					 state_name(w[k].state),
					 w[k].state == ST_ERROR ? ": " : "",
					 w[k].state == ST_ERROR ? strerror(w[k].err) : "");

	for (int k = 0; k < NW; k++) {
		if (release(k))
			return -1;
		deadline = now_ms() + 1000;
		while (__atomic_load_n(&w[k].state, __ATOMIC_SEQ_CST) == ST_BLOCKING &&
		       now_ms() < deadline)
			usleep(1000);
		if (w[k].state != ST_GOT)
			return zdtm_fail("waiter %d (%s on %s) is %s after the release, expected "
					 "granted%s%s", pids[k], kinds[k], paths[k],
					 state_name(w[k].state),
					 w[k].state == ST_ERROR ? ": " : "",
					 w[k].state == ST_ERROR ? strerror(w[k].err) : "");
		if (check_granted(k))
			return -1;
	}
	return 0;
}

static int check(void)
{
	int rc = check_all();

	if (w)
		stop_waiters();
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
