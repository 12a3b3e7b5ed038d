/* A pid reused after its task was reaped, in a pid namespace of the test's own: its init
 * (pid 1) makes a child (pid 2) holding a pidfd to it, reaps it, and makes another child
 * with that same pid 2 (clone3 set_tid), holding a pidfd to it too. Two pidfds, one pid
 * number: the old one must stay dead (fdinfo Pid: -1, ESRCH, ECHILD) and the new one
 * must point at the new task. The root checks the namespace pids from /proc. */
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define REUSED 2	/* the pid reused inside the namespace */
#define X_CODE 21

struct shared {
	struct zdtm_sync ready;
	pid_t y_outer;		/* the new pid-2 task, as /proc sees it */
};

static struct shared *sh;
static pid_t init;		/* the namespace's init, as we see it; 0 until made */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t clone3_pidfd(int *fd, pid_t *set_tid)
{
	struct clone_args ca = {
		.flags = CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)fd,
		.exit_signal = SIGCHLD,
		.set_tid = (uint64_t)(uintptr_t)set_tid,
		.set_tid_size = set_tid ? 1 : 0,
	};

	return syscall(__NR_clone3, &ca, sizeof(ca));
}

static int pidfd_send_signal(int fd, int sig)
{
	return syscall(__NR_pidfd_send_signal, fd, sig, NULL, 0);
}

/* The last number of a "name:" line (Pid, NSpid) in a /proc file, or -2. */
static long last_field(const char *path, const char *name)
{
	char buf[4096], *p, *end;
	size_t n = strlen(name);
	long v = -2;

	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -2;
	for (p = buf; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, name, n) || p[n] != ':')
			continue;
		p += n + 1;
		end = p + strcspn(p, "\n");
		while (p < end) {
			char *q;
			long x = strtol(p, &q, 10);

			if (q == p)
				break;
			v = x;
			p = q;
		}
		return v;
	}
	return -2;
}

/* A call that must fail with errno want: ret is its result, errno still its error. */
static int must_fail(long ret, int want, const char *what)
{
	if (ret >= 0)
		return zdtm_fail("%s succeeded, expected %s", what, strerror(want));
	if (errno != want)
		return zdtm_fail("%s failed with %s, expected %s", what, strerror(errno), strerror(want));
	return 0;
}

static long fdinfo(int fd, const char *name)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return last_field(path, name);
}

static void y_main(void)
{
	zdtm_wait_stop();
	if (getpid() != REUSED || getppid() != 1) {
		zdtm_fail("the reused-pid task: pid %d parent %d, expected %d and 1", getpid(), getppid(), REUSED);
		_exit(1);
	}
	_exit(0);
}

/* The init of the new namespace. */
static int init_check(int xfd, int yfd)
{
	struct pollfd p = { .fd = yfd, .events = POLLIN };
	siginfo_t si;
	long v;
	int rc = 0;

	if (getpid() != 1)
		rc = zdtm_fail("the namespace's init has pid %d, expected 1", getpid());
	v = fdinfo(xfd, "Pid");
	if (v != -1)
		rc = zdtm_fail("the pidfd %d of the reaped pid-%d task shows Pid %ld, expected -1", xfd, REUSED, v);
	if (must_fail(pidfd_send_signal(xfd, 0), ESRCH, "a signal through the pidfd of the reaped task"))
		rc = -1;
	if (must_fail(waitid(P_PIDFD, xfd, &si, WEXITED | WNOHANG), ECHILD,
		      "waitid on the pidfd of the reaped task"))
		rc = -1;
	v = fdinfo(yfd, "Pid");
	if (v != sh->y_outer)
		rc = zdtm_fail("the pidfd %d of the new pid-%d task shows Pid %ld, expected %d", yfd, REUSED, v, sh->y_outer);
	v = fdinfo(yfd, "NSpid");
	if (v != REUSED)
		rc = zdtm_fail("the pidfd %d of the new task shows namespace pid %ld, expected %d", yfd, v, REUSED);
	if (kill(REUSED, 0) || pidfd_send_signal(yfd, 0))
		rc = zdtm_err("signal 0 to the new pid-%d task", REUSED);

	if (pidfd_send_signal(yfd, SIGTERM))
		return zdtm_err("SIGTERM through the pidfd of the new task");
	if (poll(&p, 1, 1000) != 1) {
		kill(REUSED, SIGKILL);
		return zdtm_fail("the new pid-%d task did not end in time", REUSED);
	}
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, yfd, &si, WEXITED))
		return zdtm_err("waitid(P_PIDFD) for the new task");
	if (si.si_pid != REUSED || si.si_code != CLD_EXITED || si.si_status != 0)
		rc = zdtm_fail("the new task ended as pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
	if (fdinfo(xfd, "Pid") != -1 || fdinfo(yfd, "Pid") != -1)
		rc = zdtm_fail("once both are reaped, the pidfds show Pid %ld and %ld, expected -1",
			       fdinfo(xfd, "Pid"), fdinfo(yfd, "Pid"));
	return rc;
}

static void init_main(void)
{
	pid_t x, y, want = REUSED;
	int xfd = -1, yfd = -1, status;

	x = clone3_pidfd(&xfd, NULL);
	if (x == 0)
		_exit(X_CODE);
	if (x != REUSED || waitpid(x, &status, 0) != x || status != X_CODE << 8) {
		zdtm_fail("the first child of the namespace's init: pid %d, status 0x%x", x, status);
		_exit(2);
	}
	y = clone3_pidfd(&yfd, &want);
	if (y == 0)
		y_main();
	if (y != REUSED) {
		zdtm_err("clone3 with set_tid %d", REUSED);
		_exit(2);
	}
	sh->y_outer = fdinfo(yfd, "Pid");
	zdtm_sync_add(&sh->ready, 1);
	zdtm_wait_stop();
	_exit(init_check(xfd, yfd) ? 1 : 0);
}

/* The root's view: the namespace pids of init and of the new task. */
static int check_outside(void)
{
	char path[64];
	long v;

	snprintf(path, sizeof(path), "/proc/%d/status", init);
	if ((v = last_field(path, "NSpid")) != 1)
		return zdtm_fail("the namespace's init %d has namespace pid %ld, expected 1", init, v);
	snprintf(path, sizeof(path), "/proc/%d/status", sh->y_outer);
	if ((v = last_field(path, "NSpid")) != REUSED)
		return zdtm_fail("the new task %d has namespace pid %ld, expected %d", sh->y_outer, v, REUSED);
	if ((v = last_field(path, "PPid")) != init)
		return zdtm_fail("the new task %d has parent %ld, expected the namespace's init %d",
				 sh->y_outer, v, init);
	return 0;
}

static int setup(void)
{
	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shmem");
	init = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, NULL, NULL, 0);
	if (init < 0) {
		init = 0;
		return zdtm_err("clone(CLONE_NEWPID)");
	}
	if (init == 0)
		init_main();
	if (zdtm_sync_wait(&sh->ready, 1) || zdtm_failed())
		return zdtm_fail("the namespace was not set up");
	return check_outside();
}

static int check(void)
{
	int64_t end = now_ms() + 1500;
	int status, rc;
	pid_t r;

	if (init <= 0)
		return zdtm_fail("no pid namespace was made");
	rc = check_outside();
	if (kill(init, SIGTERM))
		return zdtm_err("SIGTERM to the namespace's init %d", init);
	while ((r = waitpid(init, &status, WNOHANG)) == 0 && now_ms() < end)
		usleep(1000);
	if (r == 0) {
		kill(init, SIGKILL);
		waitpid(init, &status, 0);
		return zdtm_fail("the namespace's init %d did not end in time: killed", init);
	}
	if (r < 0)
		return zdtm_err("waitpid(%d)", init);
	if (status != 0)
		rc = zdtm_fail("the namespace's init %d ended its check with status 0x%x", init, status);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
