/* A signalfd with signals queued for it survives C/R: its mask (fdinfo sigmask) and the
 * blocked signals waiting in the shared and private queues, read back in order with their
 * ssi_signo, ssi_code, ssi_int and sender. A blocked signal outside the mask stays pending
 * and is not readable from the fd. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

struct qsig {
	int sig, code, val;
};

static int sfd = -1;
static struct qsig expected[8];
static int nexpected;

static void sfd_mask(sigset_t *m)
{
	sigemptyset(m);
	sigaddset(m, SIGUSR1);
	sigaddset(m, SIGRTMIN + 4);
	sigaddset(m, SIGRTMIN + 6);
}

static int tgsigqueue(int sig, int val)
{
	siginfo_t si = { .si_signo = sig, .si_code = SI_QUEUE };

	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = val;
	return syscall(SYS_rt_tgsigqueueinfo, getpid(), zdtm_gettid(), sig, &si);
}

static int setup(void)
{
	sigset_t m;
	int fd;

	sfd_mask(&m);
	sigaddset(&m, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &m, NULL))
		return zdtm_err("sigprocmask");
	sfd_mask(&m);
	fd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return zdtm_err("signalfd");

	/* shared queue */
	for (int i = 0; i < 3; i++)
		if (sigqueue(getpid(), SIGRTMIN + 4, (union sigval){ .sival_int = 41 + i }))
			return zdtm_err("sigqueue");
	if (sigqueue(getpid(), SIGUSR1, (union sigval){ .sival_int = 11 }) ||
	    kill(getpid(), SIGUSR2))
		return zdtm_err("sigqueue/kill");
	/* private queue */
	if (tgsigqueue(SIGRTMIN + 6, 61) ||
	    syscall(SYS_tgkill, getpid(), zdtm_gettid(), SIGRTMIN + 4))
		return zdtm_err("rt_tgsigqueueinfo/tgkill");

	/* Read order: the private queue first, then the shared one; lowest signal first. */
	expected[nexpected++] = (struct qsig){ SIGRTMIN + 4, SI_TKILL, 0 };
	expected[nexpected++] = (struct qsig){ SIGRTMIN + 6, SI_QUEUE, 61 };
	expected[nexpected++] = (struct qsig){ SIGUSR1, SI_QUEUE, 11 };
	for (int i = 0; i < 3; i++)
		expected[nexpected++] = (struct qsig){ SIGRTMIN + 4, SI_QUEUE, 41 + i };
	sfd = fd;
	return 0;
}

static int check(void)
{
	struct signalfd_siginfo ssi;
	struct timespec zero = { 0 };
	char path[64], buf[1024], *p;
	unsigned long long mask, want = 0;
	sigset_t m;
	siginfo_t si;
	int n = 0;
	ssize_t r;

	if (sfd < 0)
		return zdtm_fail("setup never ran: no signalfd");
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", sfd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	p = strstr(buf, "sigmask:");
	if (!p || sscanf(p, "sigmask: %llx", &mask) != 1)
		return zdtm_fail("fd %d is not a signalfd: fdinfo '%s'", sfd, buf);
	sfd_mask(&m);
	for (int s = 1; s <= 64; s++)
		if (sigismember(&m, s) == 1)
			want |= 1ULL << (s - 1);
	if (mask != want)
		return zdtm_fail("signalfd %d: sigmask %016llx, expected %016llx", sfd, mask, want);
	if (!(fcntl(sfd, F_GETFL) & O_NONBLOCK) || !(fcntl(sfd, F_GETFD) & FD_CLOEXEC))
		return zdtm_fail("signalfd %d lost O_NONBLOCK or FD_CLOEXEC", sfd);

	for (;; n++) {
		r = read(sfd, &ssi, sizeof(ssi));
		if (r < 0 && errno == EAGAIN)
			break;
		if (r != sizeof(ssi))
			return zdtm_err("read signalfd %d: %zd bytes", sfd, r);
		if (n >= nexpected)
			return zdtm_fail("extra signal #%d from the signalfd: %u code %d int %d", n,
					 ssi.ssi_signo, ssi.ssi_code, ssi.ssi_int);
		if ((int)ssi.ssi_signo != expected[n].sig || ssi.ssi_code != expected[n].code ||
		    ssi.ssi_int != expected[n].val || (pid_t)ssi.ssi_pid != getpid() ||
		    ssi.ssi_uid != getuid())
			return zdtm_fail("signal #%d from the signalfd: signo %u code %d int %d pid %u "
					 "uid %u, expected %d %d %d %d %d", n, ssi.ssi_signo,
					 ssi.ssi_code, ssi.ssi_int, ssi.ssi_pid, ssi.ssi_uid,
					 expected[n].sig, expected[n].code, expected[n].val, getpid(),
					 getuid());
	}
	if (n != nexpected)
		return zdtm_fail("read %d signals from the signalfd, expected %d; next missing: "
				 "signal %d code %d int %d", n, nexpected, expected[n].sig,
				 expected[n].code, expected[n].val);

	/* SIGUSR2 is blocked but not in the mask: still pending, never read. */
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	if (syscall(SYS_rt_sigtimedwait, &m, &si, &zero, _NSIG / 8) != SIGUSR2)
		return zdtm_fail("SIGUSR2 (outside the signalfd mask) is no longer pending");
	if (si.si_code != SI_USER || si.si_pid != getpid())
		return zdtm_fail("SIGUSR2: code %d pid %d, expected %d %d", si.si_code, si.si_pid,
				 SI_USER, getpid());
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
