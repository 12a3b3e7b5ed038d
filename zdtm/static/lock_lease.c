/* Read leases survive C/R: two descriptions of one file hold F_RDLCK leases with a
 * realtime break signal (F_SETSIG). After C/R F_GETLEASE says F_RDLCK, fdinfo lists both
 * leases, a reader does not break them, and a writer's open does: it is refused with
 * EWOULDBLOCK and each holder gets the break signal naming its fd. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define PATH "lease-r"
#define NL 2

static int fds[NL] = { -1, -1 };
static int sig;			/* the break signal set with F_SETSIG */

struct note {
	int signo, fd, code;
};
static volatile int nnotes;
static struct note notes[8];

static void on_signal(int signo, siginfo_t *si, void *uc)
{
	int i = nnotes;

	(void)uc;
	if (i < 8) {
		notes[i].signo = signo;
		notes[i].fd = si->si_fd;
		notes[i].code = si->si_code;
	}
	nnotes = i + 1;
}

static int setup(void)
{
	struct sigaction sa = { .sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_RESTART };
	int fd;

	sig = SIGRTMIN + 3;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL) || sigaction(SIGIO, &sa, NULL))
		return zdtm_err("sigaction");
	fd = open(PATH, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || write(fd, "lease", 5) != 5 || close(fd))
		return zdtm_err("create %s", PATH);
	for (int i = 0; i < NL; i++) {
		fds[i] = open(PATH, O_RDONLY);
		if (fds[i] < 0)
			return zdtm_err("open %s", PATH);
		if (fcntl(fds[i], F_SETSIG, sig))
			return zdtm_err("F_SETSIG");
		if (fcntl(fds[i], F_SETLEASE, F_RDLCK))
			return zdtm_err("F_SETLEASE F_RDLCK on fd %d", fds[i]);
	}
	return 0;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* The lease lines of the fdinfo of fd. */
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

static int check(void)
{
	long long deadline;
	int fd, lease, n;

	for (int i = 0; i < NL; i++) {
		if (fcntl(fds[i], F_GETFD) < 0)
			return zdtm_err("fd %d is not open", fds[i]);
		lease = fcntl(fds[i], F_GETLEASE);
		if (lease != F_RDLCK)
			return zdtm_fail("fd %d: F_GETLEASE is %d, expected F_RDLCK (%d)", fds[i],
					 lease, F_RDLCK);
		n = fcntl(fds[i], F_GETSIG);
		if (n != sig)
			return zdtm_fail("fd %d: F_GETSIG is %d, expected %d", fds[i], n, sig);
		n = fdinfo_leases(fds[i], " ACTIVE    READ ");
		if (n != 1)
			return zdtm_fail("fdinfo of fd %d lists %d active read leases, expected 1",
					 fds[i], n);
	}

	/* Readers do not break read leases. */
	fd = open(PATH, O_RDONLY | O_NONBLOCK);
	if (fd < 0)
		return zdtm_err("a reader's open of %s", PATH);
	close(fd);
	if (nnotes)
		return zdtm_fail("a reader's open sent %d break signals", nnotes);

	fd = open(PATH, O_WRONLY | O_NONBLOCK);
	if (fd >= 0 || errno != EWOULDBLOCK) {
		if (fd >= 0)
			close(fd);
		return zdtm_fail("a writer's O_NONBLOCK open %s, expected EWOULDBLOCK (lease break)",
				 fd >= 0 ? "succeeded" : strerror(errno));
	}
	deadline = now_ms() + 1000;
	while (nnotes < NL && now_ms() < deadline)
		usleep(1000);
	if (nnotes != NL)
		return zdtm_fail("%d break signals after the writer's open, expected %d", nnotes, NL);
	for (int i = 0; i < NL; i++) {
		bool seen = false;

		for (int k = 0; k < NL; k++)
			if (notes[k].fd == fds[i])
				seen = true;
		if (notes[i].signo != sig || notes[i].code != POLL_MSG)
			return zdtm_fail("break signal %d code %d, expected %d code POLL_MSG (%d)",
					 notes[i].signo, notes[i].code, sig, POLL_MSG);
		if (!seen)
			return zdtm_fail("no break signal names fd %d (got fds %d, %d)", fds[i],
					 notes[0].fd, notes[1].fd);
		lease = fcntl(fds[i], F_GETLEASE);
		if (lease != F_UNLCK)
			return zdtm_fail("fd %d: F_GETLEASE is %d while broken, expected F_UNLCK",
					 fds[i], lease);
		if (fcntl(fds[i], F_SETLEASE, F_UNLCK))
			return zdtm_err("release the lease of fd %d", fds[i]);
	}
	fd = open(PATH, O_WRONLY | O_NONBLOCK);
	if (fd < 0)
		return zdtm_err("a writer's open with the leases released");
	close(fd);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
