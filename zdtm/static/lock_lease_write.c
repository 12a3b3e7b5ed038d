/* Write leases survive C/R: two files, each with its only description holding an F_WRLCK
 * lease, one breaking with a realtime signal (F_SETSIG) and one with plain SIGIO. After C/R
 * F_GETLEASE/F_GETSIG are exact, and a reader's open breaks each lease: it is refused with
 * EWOULDBLOCK, the holder gets its signal, the lease is breaking down to F_RDLCK, and the
 * reader gets in once the holder downgrades. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NL 2

static const char *const paths[NL] = { "lease-w-rt", "lease-w-io" };
static int fds[NL] = { -1, -1 };
static int sigs[NL];		/* F_SETSIG values: a realtime signal, and 0 (SIGIO) */

static volatile int nnotes, last_signo, last_fd, last_code;

static void on_signal(int signo, siginfo_t *si, void *uc)
{
	(void)uc;
	last_signo = signo;
	last_fd = si->si_fd;
	last_code = si->si_code;
	nnotes++;
}

static int setup(void)
{
	struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_RESTART };

	sigs[0] = SIGRTMIN + 5;
	sigs[1] = 0;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sigs[0], &sa, NULL) || sigaction(SIGIO, &sa, NULL))
		return zdtm_err("sigaction");
	for (int i = 0; i < NL; i++) {
		int fd = open(paths[i], O_WRONLY | O_CREAT | O_EXCL, 0644);

		if (fd < 0 || write(fd, "write lease", 11) != 11 || close(fd))
			return zdtm_err("create %s", paths[i]);
		/* Read-only: a writable description of our own would forbid the downgrade
		 * to a read lease at check (fs/locks.c check_conflicting_open). */
		fds[i] = open(paths[i], O_RDONLY);
		if (fds[i] < 0)
			return zdtm_err("open %s", paths[i]);
		if (fcntl(fds[i], F_SETSIG, sigs[i]))
			return zdtm_err("F_SETSIG");
		if (fcntl(fds[i], F_SETLEASE, F_WRLCK))
			return zdtm_err("F_SETLEASE F_WRLCK on %s", paths[i]);
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int fdinfo_leases(int fd, const char *want)
{
	char path[64], buf[4096], *line, *save;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "lock:", 5) && strstr(line, " LEASE ") && strstr(line, want))
			n++;
	return n;
}

static int check_one(int i)
{
	int fd = fds[i], lease, n, r, before = nnotes;
	int want_sig = sigs[i] ? sigs[i] : SIGIO;
	long long deadline;

	if (fcntl(fd, F_GETFD) < 0)
		return zdtm_err("fd %d (%s) is not open", fd, paths[i]);
	lease = fcntl(fd, F_GETLEASE);
	if (lease != F_WRLCK)
		return zdtm_fail("%s: F_GETLEASE is %d, expected F_WRLCK (%d)", paths[i], lease,
				 F_WRLCK);
	n = fcntl(fd, F_GETSIG);
	if (n != sigs[i])
		return zdtm_fail("%s: F_GETSIG is %d, expected %d", paths[i], n, sigs[i]);
	n = fdinfo_leases(fd, " ACTIVE    WRITE ");
	if (n != 1)
		return zdtm_fail("fdinfo of fd %d lists %d active write leases, expected 1", fd, n);

	r = open(paths[i], O_RDONLY | O_NONBLOCK);
	if (r >= 0 || errno != EWOULDBLOCK) {
		if (r >= 0)
			close(r);
		return zdtm_fail("%s: a reader's O_NONBLOCK open %s, expected EWOULDBLOCK",
				 paths[i], r >= 0 ? "succeeded" : strerror(errno));
	}
	deadline = now_ms() + 1000;
	while (nnotes == before && now_ms() < deadline)
		usleep(1000);
	if (nnotes != before + 1)
		return zdtm_fail("%s: %d break signals, expected 1", paths[i], nnotes - before);
	if (last_signo != want_sig)
		return zdtm_fail("%s: break signal %d, expected %d", paths[i], last_signo, want_sig);
	if (sigs[i] && (last_fd != fd || last_code != POLL_MSG))
		return zdtm_fail("%s: break signal names fd %d code %d, expected fd %d POLL_MSG",
				 paths[i], last_fd, last_code, fd);
	lease = fcntl(fd, F_GETLEASE);
	if (lease != F_RDLCK)
		return zdtm_fail("%s: F_GETLEASE is %d while broken by a reader, expected F_RDLCK",
				 paths[i], lease);
	if (fcntl(fd, F_SETLEASE, F_RDLCK))
		return zdtm_err("%s: downgrade to F_RDLCK", paths[i]);
	r = open(paths[i], O_RDONLY | O_NONBLOCK);
	if (r < 0)
		return zdtm_err("%s: a reader's open after the downgrade", paths[i]);
	close(r);
	if (fcntl(fd, F_SETLEASE, F_UNLCK))
		return zdtm_err("%s: release the lease", paths[i]);
	return 0;
}

static int check(void)
{
	for (int i = 0; i < NL; i++)
		if (check_one(i))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
