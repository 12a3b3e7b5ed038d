/* Several signalfds with different masks survive C/R: one per standard signal, one mixing
 * standard and realtime signals, one whose mask was replaced by a second signalfd() call,
 * one with an empty mask, and a dup. Checked with fdinfo sigmask and fd flags, and by
 * raising each signal: exactly the fds whose mask holds it become readable. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

struct sfd {
	const char *name;
	int sigs[4];		/* 0-terminated; negative: -(offset from SIGRTMIN) - 1 */
	int flags;
	int fd;
};

static struct sfd sfds[] = {
	{ "usr1", { SIGUSR1, 0 }, SFD_NONBLOCK, -1 },
	{ "usr2+rt1", { SIGUSR2, -2, 0 }, SFD_NONBLOCK | SFD_CLOEXEC, -1 },
	{ "replaced", { SIGWINCH, -4, 0 }, SFD_NONBLOCK, -1 },	/* + SIGRTMAX, see smask() */
	{ "empty", { 0 }, 0, -1 },
	{ "dup of usr1", { SIGUSR1, 0 }, SFD_NONBLOCK, -1 },
};
#define NSFD (sizeof(sfds) / sizeof(sfds[0]))
#define REPLACED 2
#define DUP 4

static int signo(int s)
{
	return s < 0 ? SIGRTMIN - s - 1 : s;
}

static void smask(int i, sigset_t *m)
{
	sigemptyset(m);
	for (int k = 0; sfds[i].sigs[k]; k++)
		sigaddset(m, signo(sfds[i].sigs[k]));
	if (i == REPLACED)
		sigaddset(m, SIGRTMAX);
}

static void all_sigs(sigset_t *m)
{
	sigemptyset(m);
	for (size_t i = 0; i < NSFD; i++)
		for (int k = 0; sfds[i].sigs[k]; k++)
			sigaddset(m, signo(sfds[i].sigs[k]));
	sigaddset(m, SIGRTMAX);
	sigaddset(m, SIGHUP);	/* the replaced fd's first mask */
}

static int setup(void)
{
	sigset_t m;

	all_sigs(&m);
	if (sigprocmask(SIG_BLOCK, &m, NULL))
		return zdtm_err("sigprocmask");
	for (size_t i = 0; i < NSFD; i++) {
		if (i == DUP)
			continue;
		if (i == REPLACED) {
			sigemptyset(&m);
			sigaddset(&m, SIGHUP);
		} else {
			smask(i, &m);
		}
		sfds[i].fd = signalfd(-1, &m, sfds[i].flags);
		if (sfds[i].fd < 0)
			return zdtm_err("signalfd(%s)", sfds[i].name);
	}
	smask(REPLACED, &m);
	if (signalfd(sfds[REPLACED].fd, &m, 0) != sfds[REPLACED].fd)
		return zdtm_err("signalfd: replace the mask");
	sfds[DUP].fd = dup(sfds[0].fd);
	if (sfds[DUP].fd < 0)
		return zdtm_err("dup");
	return 0;
}

static uint64_t kmask(const sigset_t *m)
{
	uint64_t v = 0;

	for (int s = 1; s <= 64; s++)
		if (sigismember(m, s) == 1)
			v |= 1ULL << (s - 1);
	return v;
}

static int check_fd(int i)
{
	const struct sfd *f = &sfds[i];
	char path[64], buf[1024], *p;
	unsigned long long mask;
	sigset_t m;
	int fl = fcntl(f->fd, F_GETFL), fdfl = fcntl(f->fd, F_GETFD);

	if (fl < 0 || fdfl < 0)
		return zdtm_err("signalfd %s: fd %d", f->name, f->fd);
	/* a dup has its own FD_CLOEXEC (clear) but shares O_NONBLOCK */
	if (!!(fl & O_NONBLOCK) != !!(f->flags & SFD_NONBLOCK) ||
	    !!(fdfl & FD_CLOEXEC) != !!(f->flags & SFD_CLOEXEC))
		return zdtm_fail("signalfd %s: flags %#x fd flags %#x", f->name, fl, fdfl);
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", f->fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	p = strstr(buf, "sigmask:");
	if (!p || sscanf(p, "sigmask: %llx", &mask) != 1)
		return zdtm_fail("fd %d is not a signalfd: '%s'", f->fd, buf);
	smask(i, &m);
	if (mask != kmask(&m))
		return zdtm_fail("signalfd %s (fd %d): sigmask %016llx, expected %016llx", f->name,
				 f->fd, mask, (unsigned long long)kmask(&m));
	return 0;
}

/* Raise sig to this thread: exactly the fds whose mask holds it turn readable. */
static int fire(int sig)
{
	struct pollfd pfd[NSFD];
	struct signalfd_siginfo ssi;
	int first = -1;
	sigset_t m;

	if (syscall(SYS_tgkill, getpid(), zdtm_gettid(), sig))
		return zdtm_err("tgkill %d", sig);
	for (size_t i = 0; i < NSFD; i++)
		pfd[i] = (struct pollfd){ .fd = sfds[i].fd, .events = POLLIN };
	if (poll(pfd, NSFD, 0) < 0)
		return zdtm_err("poll");
	for (size_t i = 0; i < NSFD; i++) {
		bool want;

		smask(i, &m);
		want = sigismember(&m, sig) == 1;
		if (!!(pfd[i].revents & POLLIN) != want)
			return zdtm_fail("signal %d: signalfd %s is %sreadable", sig, sfds[i].name,
					 want ? "not " : "");
		if (want && first < 0)
			first = i;
	}
	if (first < 0) {	/* nobody wants it: take it off the queue */
		struct timespec zero = { 0 };

		sigemptyset(&m);
		sigaddset(&m, sig);
		return sigtimedwait(&m, NULL, &zero) == sig ? 0 :
		       zdtm_fail("signal %d is not pending", sig);
	}
	if (read(sfds[first].fd, &ssi, sizeof(ssi)) != sizeof(ssi) || (int)ssi.ssi_signo != sig)
		return zdtm_fail("signalfd %s: read did not give signal %d", sfds[first].name, sig);
	return 0;
}

static int check(void)
{
	int sigs[] = { SIGUSR1, SIGUSR2, SIGRTMIN + 1, SIGWINCH, SIGRTMIN + 3, SIGRTMAX, SIGHUP };
	sigset_t blocked;

	if (sfds[0].fd < 0)
		return zdtm_fail("setup never ran: no signalfds");
	for (size_t i = 0; i < NSFD; i++)
		if (check_fd(i))
			return -1;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (!sigismember(&blocked, sigs[i]))
			return zdtm_fail("signal %d is no longer blocked", sigs[i]);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (fire(sigs[i]))
			return -1;
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
