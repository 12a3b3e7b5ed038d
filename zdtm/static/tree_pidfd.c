/* pidfds of tasks in several states, held by the root: a live child (one blocking pidfd,
 * one PIDFD_NONBLOCK), its child (not ours), a zombie that exited with 9 (pidfd from
 * clone3), a zombie killed by SIGKILL (pidfd opened while it lived), a zombie whose pidfd
 * was opened after its death, and a task that exited and was reaped (pidfd from clone3).
 * The check reads each pidfd's fdinfo (Pid: the pid, or -1 once reaped), its flags, polls
 * it (readable once the task exited), signals through it, waits through it, and watches
 * the pidfds change as the tasks end. */
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum { LIVE, LIVE_NB, GRANDCHILD, ZOMBIE, KILLED, LATE, REAPED, NR };

static const char *const names[NR] = {
	"live child", "live child (nonblocking pidfd)", "grandchild", "zombie (exit 9)",
	"zombie (SIGKILL)", "zombie (pidfd opened after death)", "reaped task",
};

struct shared {
	struct zdtm_sync ready;	/* the live child and grandchild are set up */
	pid_t grandchild;
};

static struct shared *sh;
static int pfd[NR] = { -1, -1, -1, -1, -1, -1, -1 };
static pid_t pid[NR];
static volatile sig_atomic_t got_usr1;

static int pidfd_open(pid_t p, unsigned int flags)
{
	return syscall(__NR_pidfd_open, p, flags);
}

static int pidfd_send_signal(int fd, int sig)
{
	return syscall(__NR_pidfd_send_signal, fd, sig, NULL, 0);
}

/* Like fork(), with a pidfd for the child in *fd. */
static pid_t fork_pidfd(int *fd)
{
	struct clone_args ca = {
		.flags = CLONE_PIDFD,
		.pidfd = (uint64_t)(uintptr_t)fd,
		.exit_signal = SIGCHLD,
	};

	return syscall(__NR_clone3, &ca, sizeof(ca));
}

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1++;
}

static void grandchild_main(pid_t parent)
{
	zdtm_sync_add(&sh->ready, 1);
	zdtm_wait_stop();
	if (getppid() != parent) {
		zdtm_fail("grandchild %d: parent %d, expected %d", getpid(), getppid(), parent);
		_exit(1);
	}
	_exit(0);
}

/* The live child: one SIGUSR1 comes through a pidfd before the SIGTERM of the check. */
static void live_main(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	pid_t root = getppid(), g;
	int status, rc = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	g = fork();
	if (g < 0)
		_exit(2);
	if (g == 0)
		grandchild_main(getppid());
	sh->grandchild = g;
	zdtm_sync_add(&sh->ready, 1);
	zdtm_wait_stop();
	if (got_usr1 != 1)
		rc = zdtm_fail("the live child got %d SIGUSR1 through its pidfd, expected 1", (int)got_usr1);
	if (getppid() != root)
		rc = zdtm_fail("the live child %d: parent %d, expected %d", getpid(), getppid(), root);
	kill(g, SIGTERM);
	if (waitpid(g, &status, 0) != g || status != 0)
		rc = zdtm_fail("the grandchild %d ended with status 0x%x", g, status);
	_exit(rc ? 1 : 0);
}

static int setup(void)
{
	siginfo_t si;
	int status;

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shmem");

	pid[LIVE] = fork();
	if (pid[LIVE] < 0)
		return zdtm_err("fork");
	if (pid[LIVE] == 0)
		live_main();
	if (zdtm_sync_wait(&sh->ready, 2))
		return zdtm_fail("stopped before the live child was ready");
	pid[LIVE_NB] = pid[LIVE];
	pid[GRANDCHILD] = sh->grandchild;
	pfd[LIVE] = pidfd_open(pid[LIVE], 0);
	pfd[LIVE_NB] = pidfd_open(pid[LIVE], PIDFD_NONBLOCK);
	pfd[GRANDCHILD] = pidfd_open(pid[GRANDCHILD], 0);
	if (pfd[LIVE] < 0 || pfd[LIVE_NB] < 0 || pfd[GRANDCHILD] < 0)
		return zdtm_err("pidfd_open");

	pid[ZOMBIE] = fork_pidfd(&pfd[ZOMBIE]);
	if (pid[ZOMBIE] == 0)
		_exit(9);
	pid[REAPED] = fork_pidfd(&pfd[REAPED]);
	if (pid[REAPED] == 0)
		_exit(5);
	pid[KILLED] = fork();
	if (pid[KILLED] == 0)
		for (;;)
			pause();
	pid[LATE] = fork();
	if (pid[LATE] == 0)
		_exit(6);
	if (pid[ZOMBIE] < 0 || pid[REAPED] < 0 || pid[KILLED] < 0 || pid[LATE] < 0)
		return zdtm_err("fork");
	pfd[KILLED] = pidfd_open(pid[KILLED], 0);
	if (pfd[KILLED] < 0)
		return zdtm_err("pidfd_open(%d)", pid[KILLED]);
	kill(pid[KILLED], SIGKILL);
	for (int i = ZOMBIE; i <= LATE; i++)
		if (waitid(P_PID, pid[i], &si, WEXITED | WNOWAIT))
			return zdtm_err("waitid(%d)", pid[i]);
	pfd[LATE] = pidfd_open(pid[LATE], 0);
	if (pfd[LATE] < 0)
		return zdtm_err("pidfd_open of the zombie %d", pid[LATE]);
	if (waitpid(pid[REAPED], &status, 0) != pid[REAPED] || status != 5 << 8)
		return zdtm_fail("the task %d to reap ended with status 0x%x", pid[REAPED], status);
	return 0;
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

/* The Pid: line of a pidfd's fdinfo, or -2 if there is none. */
static long fdinfo_pid(int fd)
{
	char path[64], buf[1024], *p;
	long v;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -2;
	p = strstr(buf, "\nPid:");
	if (!p || sscanf(p + 5, "%ld", &v) != 1)
		return -2;
	return v;
}

static int expect_pid(int i, pid_t want)
{
	long got = fdinfo_pid(pfd[i]);

	if (got != want)
		return zdtm_fail("pidfd %d of the %s (pid %d): fdinfo Pid: %ld, expected %d",
				 pfd[i], names[i], pid[i], got, want);
	return 0;
}

/* A task ends: its pidfd turns readable; reap it through the pidfd. */
static int reap_pidfd(int i, int code, int status)
{
	struct pollfd p = { .fd = pfd[i], .events = POLLIN };
	siginfo_t si;

	if (poll(&p, 1, 1500) != 1) {
		kill(pid[i], SIGKILL);
		waitpid(pid[i], NULL, 0);
		return zdtm_fail("the %s (pid %d) did not end in time: killed", names[i], pid[i]);
	}
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, pfd[i], &si, WEXITED))
		return zdtm_err("waitid(P_PIDFD, %d) for the %s (pid %d)", pfd[i], names[i], pid[i]);
	if (si.si_pid != pid[i] || si.si_code != code || si.si_status != status)
		return zdtm_fail("the %s: waitid gives pid %d code %d status %d, expected %d %d %d",
				 names[i], si.si_pid, si.si_code, si.si_status, pid[i], code, status);
	return expect_pid(i, -1);
}

/* After a failure: kill and reap whatever is left (all unreaped, so the pids are ours). */
static void cleanup(void)
{
	static const int order[] = { GRANDCHILD, LIVE, ZOMBIE, KILLED, LATE };

	for (unsigned int k = 0; k < sizeof(order) / sizeof(order[0]); k++)
		if (pid[order[k]] > 0 && kill(pid[order[k]], SIGKILL) == 0 && order[k] != GRANDCHILD)
			waitpid(pid[order[k]], NULL, 0);
}

static int check(void)
{
	siginfo_t si;
	int i, fl, rc = 0;

	for (i = 0; i < NR; i++) {
		if (pfd[i] < 0 || fcntl(pfd[i], F_GETFD) < 0) {
			zdtm_fail("the pidfd of the %s is not open (fd %d)", names[i], pfd[i]);
			cleanup();
			return -1;
		}
		fl = fcntl(pfd[i], F_GETFL);
		if (!!(fl & O_NONBLOCK) != (i == LIVE_NB))
			rc = zdtm_fail("pidfd %d of the %s: O_NONBLOCK is %s", pfd[i], names[i],
				       fl & O_NONBLOCK ? "set" : "clear");
		if (!(fcntl(pfd[i], F_GETFD) & FD_CLOEXEC))
			rc = zdtm_fail("pidfd %d of the %s lost FD_CLOEXEC", pfd[i], names[i]);
	}
	for (i = 0; i < NR; i++) {
		struct pollfd p = { .fd = pfd[i], .events = POLLIN };
		short want = i == LIVE || i == LIVE_NB || i == GRANDCHILD ? 0 : POLLIN;

		rc |= expect_pid(i, i == REAPED ? -1 : pid[i]);
		if (poll(&p, 1, 0) < 0)
			rc = zdtm_err("poll pidfd %d", pfd[i]);
		else if ((p.revents & POLLIN) != want || (i != REAPED && (p.revents & POLLHUP)))
			rc = zdtm_fail("pidfd %d of the %s (pid %d) polls 0x%x, expected 0x%x",
				       pfd[i], names[i], pid[i], p.revents, want);
	}
	if (rc)
		goto out;
	if (must_fail(waitid(P_PIDFD, pfd[LIVE_NB], &si, WEXITED), EAGAIN,
		      "waitid on the nonblocking pidfd of the live child"))
		rc = -1;
	if (must_fail(waitid(P_PIDFD, pfd[REAPED], &si, WEXITED | WNOHANG), ECHILD,
		      "waitid on the pidfd of the reaped task"))
		rc = -1;
	if (must_fail(pidfd_send_signal(pfd[REAPED], 0), ESRCH, "a signal through the pidfd of the reaped task"))
		rc = -1;
	for (i = GRANDCHILD; i <= LATE; i++)
		if (pidfd_send_signal(pfd[i], 0))
			rc = zdtm_err("signal 0 through the pidfd of the %s (pid %d)", names[i], pid[i]);
out:
	/* the live child checks itself (SIGUSR1 came first) and reaps the grandchild */
	if (pidfd_send_signal(pfd[LIVE], SIGUSR1) || pidfd_send_signal(pfd[LIVE], SIGTERM))
		rc = zdtm_err("signals through the pidfd of the live child %d", pid[LIVE]);
	rc |= reap_pidfd(LIVE, CLD_EXITED, 0);
	rc |= expect_pid(LIVE_NB, -1);
	rc |= expect_pid(GRANDCHILD, -1);
	rc |= reap_pidfd(ZOMBIE, CLD_EXITED, 9);
	rc |= reap_pidfd(KILLED, CLD_KILLED, SIGKILL);
	rc |= reap_pidfd(LATE, CLD_EXITED, 6);
	if (rc)
		cleanup();
	if (waitpid(-1, NULL, WNOHANG) > 0)
		rc = zdtm_fail("an unexpected child was left");
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
