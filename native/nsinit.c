/* zdtm-nsinit: the small init of the `ns` flavor.
 *
 *   zdtm-nsinit init PIDFILE    new pid, mount, net, ipc and uts namespaces; forks their
 *                               init (pid 1), which makes mounts private, mounts a fresh
 *                               /proc, brings lo up, then reaps orphans until killed.
 *                               PIDFILE gets the init's pid (as seen from the caller).
 *   zdtm-nsinit enter PID CMD.. joins the namespaces of PID, keeps the cwd, runs CMD as
 *                               a child inside them and exits with its status.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compat.h"

#define NS_FLAGS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)

static void die(const char *what)
{
	fprintf(stderr, "zdtm-nsinit: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -1;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return close(s), -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		return close(s), -1;
	return close(s);
}

/* pid 1 of the new namespace: reap every orphan handed to it; SIGTERM ends the namespace. */
static void init_loop(int ready_fd)
{
	sigset_t set;
	siginfo_t si;
	int null;

	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("make / private");
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("mount /proc");
	if (lo_up())
		die("bring lo up");
	if (sethostname("zdtm", 4))
		die("sethostname");
	setsid();
	sigfillset(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* Let go of the caller's stdio: it waits for EOF on it, and we live on. */
	null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
		die("/dev/null");
	if (null > 2)
		close(null);
	if (write(ready_fd, "R", 1) != 1)
		die("report ready");
	close(ready_fd);
	for (;;) {
		if (sigwaitinfo(&set, &si) < 0)
			continue;
		if (si.si_signo == SIGTERM)
			exit(0);
		if (si.si_signo == SIGCHLD)
			while (waitpid(-1, NULL, WNOHANG) > 0)
				;
	}
}

static int cmd_init(const char *pidfile)
{
	char tmp[PATH_MAX], c;
	int p[2];
	pid_t pid;
	FILE *f;

	if (unshare(NS_FLAGS))
		die("unshare");
	if (pipe2(p, O_CLOEXEC))
		die("pipe");
	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		close(p[0]);
		init_loop(p[1]);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1) {
		fprintf(stderr, "zdtm-nsinit: the init died while setting up\n");
		return 1;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", pidfile);
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", pid) < 0 || fclose(f) || rename(tmp, pidfile))
		die(pidfile);
	return 0;
}

static int cmd_enter(const char *pidstr, char **argv)
{
	char cwd[PATH_MAX];
	pid_t pid = atoi(pidstr), child;
	int fd, status;

	if (pid <= 0) {
		fprintf(stderr, "zdtm-nsinit: enter: '%s' is not a pid\n", pidstr);
		return 2;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		die("getcwd");
	fd = syscall(__NR_pidfd_open, pid, 0);
	if (fd < 0)
		die("pidfd_open");
	if (setns(fd, NS_FLAGS))
		die("setns");
	close(fd);
	/* Joining a mount namespace moves cwd to its root: go back by path. */
	if (chdir(cwd))
		die(cwd);
	/* setns(CLONE_NEWPID) only places our children inside: fork, so that CMD runs in the
	 * namespace and the tasks it orphans are reparented to the namespace's init. */
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		execvp(argv[0], argv);
		die(argv[0]);
	}
	while (waitpid(child, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "init"))
		return cmd_init(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "enter"))
		return cmd_enter(argv[2], argv + 3);
	fprintf(stderr, "usage: zdtm-nsinit init PIDFILE | zdtm-nsinit enter PID CMD [ARG...]\n");
	return 2;
}
