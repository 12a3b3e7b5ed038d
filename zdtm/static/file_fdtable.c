/* Two tasks share one fd table (clone with CLONE_FILES, separate memory). After C/R they
 * still do: kcmp(KCMP_FILES) says equal, fds opened before C/R by either are seen by both,
 * and an fd opened or closed at check by one is at once opened or closed for the other. */
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum op { OP_NONE, OP_STAT, OP_OPEN, OP_CLOSED, OP_EXIT };

struct shared {
	uint32_t cmd;		/* bumped by the parent for each request */
	uint32_t done;		/* bumped by the child when it has answered */
	int op;
	int fd;			/* in: the fd to look at; out (OP_OPEN): the fd opened */
	ino_t ino;		/* in: the inode fd must be; out (OP_OPEN): its inode */
	int ok;			/* out: 1 if the request held */
};

static struct shared *sh;
static pid_t kid;
static int fd_parent = -1;	/* opened by the parent before the clone */
static int fd_child = -1;	/* opened by the child after the clone */
static int fd_late = -1;	/* opened by the parent after the clone */
static char stack[65536] __attribute__((aligned(16)));

/* Wait until *p >= want; false on timeout (ms < 0: wait while the parent lives). */
static bool wait_for(uint32_t *p, uint32_t want, int ms, pid_t parent)
{
	for (int waited = 0; ms < 0 || waited < ms; waited += 50) {
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		uint32_t v = __atomic_load_n(p, __ATOMIC_SEQ_CST);

		if (v >= want)
			return true;
		if (parent && getppid() != parent)
			return false;
		syscall(SYS_futex, p, FUTEX_WAIT, v, &ts, NULL, 0);
	}
	return __atomic_load_n(p, __ATOMIC_SEQ_CST) >= want;
}

static void bump(uint32_t *p)
{
	__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int child_main(void *arg)
{
	pid_t parent = (pid_t)(long)arg;
	struct stat st;
	uint32_t seq = 0;

	/* An fd the parent never opened itself: the table is one, so it sees it. */
	fd_child = open("fdt_child", O_CREAT | O_RDWR, 0600);
	sh->fd = fd_child;
	sh->ok = fd_child >= 0;
	bump(&sh->done);
	for (;;) {
		if (!wait_for(&sh->cmd, ++seq, -1, parent))
			_exit(1);
		switch (sh->op) {
		case OP_STAT:
			sh->ok = fstat(sh->fd, &st) == 0 && st.st_ino == sh->ino;
			break;
		case OP_OPEN:
			sh->fd = open("fdt_bychild", O_CREAT | O_RDWR, 0600);
			sh->ok = sh->fd >= 0 && fstat(sh->fd, &st) == 0;
			sh->ino = sh->ok ? st.st_ino : 0;
			break;
		case OP_CLOSED:
			sh->ok = fcntl(sh->fd, F_GETFD) == -1 && errno == EBADF;
			break;
		case OP_EXIT:
			bump(&sh->done);
			_exit(0);
		}
		bump(&sh->done);
	}
}

/* One request to the child; returns its ok, or -1 if it did not answer in time. */
static int ask(int op, int fd, ino_t ino)
{
	uint32_t want = sh->done + 1;

	sh->op = op;
	sh->fd = fd;
	sh->ino = ino;
	sh->ok = 0;
	bump(&sh->cmd);
	if (!wait_for(&sh->done, want, 2000, 0))
		return -1;
	return sh->ok;
}

static int setup(void)
{
	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared memory");
	fd_parent = open("fdt_parent", O_CREAT | O_RDWR, 0600);
	if (fd_parent < 0)
		return zdtm_err("open fdt_parent");
	kid = clone(child_main, stack + sizeof(stack), CLONE_FILES | SIGCHLD,
		    (void *)(long)getpid());
	if (kid < 0)
		return zdtm_err("clone(CLONE_FILES)");
	if (!wait_for(&sh->done, 1, 2000, 0) || !sh->ok)
		return zdtm_fail("child %d did not open its fd", kid);
	fd_child = sh->fd;
	fd_late = open("fdt_late", O_CREAT | O_RDWR, 0600);
	if (fd_late < 0)
		return zdtm_err("open fdt_late");
	return 0;
}

/* fd must be open here and be the file name. */
static int same_file(int fd, const char *name, ino_t *ino)
{
	struct stat st, pst;

	if (fstat(fd, &st))
		return zdtm_err("fd %d (%s) is not open in the parent", fd, name);
	if (stat(name, &pst))
		return zdtm_err("stat %s", name);
	if (st.st_ino != pst.st_ino || st.st_dev != pst.st_dev)
		return zdtm_fail("fd %d is inode %lu, %s is inode %lu", fd,
				 (unsigned long)st.st_ino, name, (unsigned long)pst.st_ino);
	*ino = st.st_ino;
	return 0;
}

static int do_check(void)
{
	static const char *names[3] = { "fdt_parent", "fdt_child", "fdt_late" };
	int fds[3] = { fd_parent, fd_child, fd_late };
	int fd, r;
	ino_t ino;
	long k;

	if (!sh || kid <= 0)
		return zdtm_fail("the CLONE_FILES child was never created");
	k = syscall(SYS_kcmp, getpid(), kid, KCMP_FILES, 0, 0);
	if (k)
		return zdtm_fail("kcmp(KCMP_FILES, %d, %d) = %ld: the fd table is not shared",
				 getpid(), kid, k);
	for (int i = 0; i < 3; i++) {
		if (same_file(fds[i], names[i], &ino))
			return -1;
		r = ask(OP_STAT, fds[i], ino);
		if (r != 1)
			return zdtm_fail("child %d %s fd %d (%s)", kid,
					 r < 0 ? "did not answer about" : "does not see", fds[i],
					 names[i]);
	}

	/* Opened by the parent now: the child sees it. */
	fd = open("fdt_new", O_CREAT | O_RDWR, 0600);
	if (fd < 0 || same_file(fd, "fdt_new", &ino))
		return zdtm_err("open fdt_new");
	if (ask(OP_STAT, fd, ino) != 1)
		return zdtm_fail("fd %d opened by the parent after C/R is not seen by child %d", fd,
				 kid);
	/* Opened by the child now: the parent sees it. */
	if (ask(OP_OPEN, -1, 0) != 1)
		return zdtm_fail("child %d could not open a file", kid);
	if (same_file(sh->fd, "fdt_bychild", &ino))
		return zdtm_fail("fd %d opened by child %d after C/R is not the parent's", sh->fd,
				 kid);
	/* Closed by the parent: closed for the child. */
	if (close(fd))
		return zdtm_err("close %d", fd);
	if (ask(OP_CLOSED, fd, 0) != 1)
		return zdtm_fail("fd %d closed by the parent is still open in child %d", fd, kid);
	return 0;
}

static int check(void)
{
	int rc = do_check(), status;

	if (kid <= 0)
		return rc;
	if (sh && ask(OP_EXIT, -1, 0) < 0)
		kill(kid, SIGKILL);
	if (waitpid(kid, &status, 0) != kid)
		return zdtm_err("waitpid %d", kid);
	if (!rc && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		return zdtm_fail("child %d ended with status %#x", kid, status);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
