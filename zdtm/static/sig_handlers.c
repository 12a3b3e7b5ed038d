/* Signal dispositions survive C/R: handlers, SIG_IGN and SIG_DFL with every flag
 * (SA_SIGINFO, SA_RESTART, SA_ONSTACK, SA_RESETHAND, SA_NODEFER, SA_NOCLDSTOP,
 * SA_NOCLDWAIT), their sa_mask and restorer; and they behave as set when signals come. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

/* x86-64 uapi asm/signal.h; glibc sets it on every sigaction and hides it */
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

enum { H_NONE, H_PLAIN, H_INFO, H_IGN, H_DFL };

struct disp {
	const char *name;
	int sig;		/* SIGRTMIN-relative ones are filled in at run time */
	int rt;			/* 1: sig is an offset from SIGRTMIN, -1: from SIGRTMAX */
	int kind;
	int flags;
	int mask[6];		/* signals of sa_mask, 0-terminated; -1: all signals */
	int mask_rt[3];		/* SIGRTMIN offsets in sa_mask, -1-terminated */
	void (*restorer)(void);	/* as the kernel reported it after setup */
};

static void h_plain(int sig);
static void h_info(int sig, siginfo_t *si, void *uc);

static struct disp disps[] = {
	{ "SIGUSR1", SIGUSR1, 0, H_INFO, SA_SIGINFO | SA_RESTART,
	  { SIGUSR2, SIGHUP, 0 }, { 2, -1 }, NULL },
	{ "SIGUSR2", SIGUSR2, 0, H_PLAIN, SA_ONSTACK | SA_NODEFER,
	  { SIGQUIT, SIGWINCH, 0 }, { -1 }, NULL },
	{ "SIGHUP", SIGHUP, 0, H_PLAIN, SA_RESETHAND, { 0 }, { -1 }, NULL },
	{ "SIGINT", SIGINT, 0, H_IGN, 0, { 0 }, { -1 }, NULL },
	{ "SIGQUIT", SIGQUIT, 0, H_IGN, SA_RESTART, { SIGUSR1, 0 }, { -1 }, NULL },
	{ "SIGPIPE", SIGPIPE, 0, H_IGN, 0, { 0 }, { -1 }, NULL },
	{ "SIGCHLD", SIGCHLD, 0, H_INFO, SA_SIGINFO | SA_NOCLDSTOP | SA_NOCLDWAIT | SA_RESTART,
	  { SIGALRM, 0 }, { -1 }, NULL },
	{ "SIGWINCH", SIGWINCH, 0, H_INFO, SA_SIGINFO | SA_RESETHAND | SA_NODEFER,
	  { SIGUSR1, SIGUSR2, SIGCONT, 0 }, { 0, 7, -1 }, NULL },
	{ "SIGALRM", SIGALRM, 0, H_DFL, SA_RESTART, { SIGUSR1, 0 }, { -1 }, NULL },
	{ "SIGSEGV", SIGSEGV, 0, H_INFO, SA_SIGINFO | SA_ONSTACK | SA_NODEFER,
	  { 0 }, { -1 }, NULL },
	{ "SIGRTMIN+2", 2, 1, H_INFO, SA_SIGINFO, { -1 }, { -1 }, NULL },
	{ "SIGRTMIN+5", 5, 1, H_PLAIN, SA_RESTART | SA_ONSTACK, { SIGHUP, 0 }, { 3, -1 }, NULL },
	{ "SIGRTMAX-1", 1, -1, H_IGN, 0, { 0 }, { -1 }, NULL },
};
#define NDISP (sizeof(disps) / sizeof(disps[0]))

static bool set_up;	/* setup ran (false in a fresh check-only process) */

/* What the handlers saw at check time. */
static volatile sig_atomic_t hits[_NSIG];
static volatile int last_code[_NSIG], last_pid[_NSIG], last_signo[_NSIG];
static sigset_t in_mask[_NSIG];

static void note(int sig)
{
	if (sig > 0 && sig < _NSIG) {
		hits[sig]++;
		sigprocmask(SIG_BLOCK, NULL, &in_mask[sig]);
	}
}

static void h_plain(int sig)
{
	note(sig);
}

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig > 0 && sig < _NSIG) {
		last_code[sig] = si->si_code;
		last_pid[sig] = si->si_pid;
		last_signo[sig] = si->si_signo;
	}
	note(sig);
}

static int sig_of(const struct disp *d)
{
	if (d->rt > 0)
		return SIGRTMIN + d->sig;
	if (d->rt < 0)
		return SIGRTMAX - d->sig;
	return d->sig;
}

static void build_mask(const struct disp *d, sigset_t *m)
{
	sigemptyset(m);
	if (d->mask[0] == -1) {
		sigfillset(m);
		return;
	}
	for (int i = 0; d->mask[i]; i++)
		sigaddset(m, d->mask[i]);
	for (int i = 0; d->mask_rt[i] >= 0; i++)
		sigaddset(m, SIGRTMIN + d->mask_rt[i]);
}

static int setup(void)
{
	for (size_t i = 0; i < NDISP; i++) {
		struct disp *d = &disps[i];
		struct sigaction sa = { .sa_flags = d->flags }, got;

		switch (d->kind) {
		case H_PLAIN:
			sa.sa_handler = h_plain;
			break;
		case H_INFO:
			sa.sa_sigaction = h_info;
			break;
		case H_IGN:
			sa.sa_handler = SIG_IGN;
			break;
		default:
			sa.sa_handler = SIG_DFL;
		}
		build_mask(d, &sa.sa_mask);
		if (sigaction(sig_of(d), &sa, NULL) || sigaction(sig_of(d), NULL, &got))
			return zdtm_err("sigaction(%s)", d->name);
		d->restorer = got.sa_restorer;
	}
	set_up = true;
	return 0;
}

/* Compare the installed disposition of d with what setup asked for, field by field. */
static int check_disp(const struct disp *d)
{
	struct sigaction got;
	sigset_t want;
	void *want_h;
	int sig = sig_of(d), flags;

	if (sigaction(sig, NULL, &got))
		return zdtm_err("sigaction(%s, NULL)", d->name);
	switch (d->kind) {
	case H_PLAIN:
		want_h = (void *)h_plain;
		break;
	case H_INFO:
		want_h = (void *)h_info;
		break;
	case H_IGN:
		want_h = (void *)SIG_IGN;
		break;
	default:
		want_h = (void *)SIG_DFL;
	}
	if ((void *)got.sa_handler != want_h)
		return zdtm_fail("%s (%d): handler is %p, expected %p", d->name, sig,
				 (void *)got.sa_handler, want_h);
	flags = got.sa_flags & ~SA_RESTORER;
	if (flags != d->flags)
		return zdtm_fail("%s (%d): sa_flags are %#x, expected %#x", d->name, sig,
				 flags, d->flags);
	if (got.sa_restorer != d->restorer)
		return zdtm_fail("%s (%d): sa_restorer is %p, expected %p", d->name, sig,
				 (void *)got.sa_restorer, (void *)d->restorer);
	build_mask(d, &want);
	for (int s = 1; s < _NSIG; s++) {
		int w = sigismember(&want, s) == 1 && s != SIGKILL && s != SIGSTOP;
		int g = sigismember(&got.sa_mask, s) == 1;

		if (w != g)
			return zdtm_fail("%s (%d): signal %d is %sin sa_mask, expected %s", d->name,
					 sig, s, g ? "" : "not ", w ? "in" : "not in");
	}
	return 0;
}

/* Raise sig and check the handler ran once with the blocked mask sa_mask (+ sig unless
 * SA_NODEFER) and, for SA_SIGINFO handlers, the right siginfo. */
static int fire(const struct disp *d)
{
	int sig = sig_of(d), before = hits[sig];
	sigset_t want;

	if (raise(sig))
		return zdtm_err("raise(%s)", d->name);
	if (hits[sig] != before + 1)
		return zdtm_fail("%s: the handler ran %d times, expected once", d->name,
				 hits[sig] - before);
	if (d->kind == H_INFO && (last_signo[sig] != sig || last_code[sig] != SI_TKILL ||
				  last_pid[sig] != getpid()))
		return zdtm_fail("%s: siginfo signo %d code %d pid %d, expected %d %d %d",
				 d->name, last_signo[sig], last_code[sig], last_pid[sig], sig,
				 SI_TKILL, getpid());
	build_mask(d, &want);
	if (!(d->flags & SA_NODEFER))
		sigaddset(&want, sig);
	for (int s = 1; s < _NSIG; s++) {
		int w = sigismember(&want, s) == 1 && s != SIGKILL && s != SIGSTOP;
		int g = sigismember(&in_mask[sig], s) == 1;

		if (w != g)
			return zdtm_fail("%s: in the handler signal %d was %sblocked, expected %s",
					 d->name, s, g ? "" : "not ", w ? "blocked" : "not blocked");
	}
	if (d->flags & SA_RESETHAND) {
		struct sigaction now;

		sigaction(sig, NULL, &now);
		if (now.sa_handler != SIG_DFL)
			return zdtm_fail("%s: SA_RESETHAND did not reset the handler (%p)",
					 d->name, (void *)now.sa_handler);
	}
	return 0;
}

static int check(void)
{
	sigset_t pend;
	pid_t pid;
	int status;

	for (size_t i = 0; i < NDISP; i++)
		if (check_disp(&disps[i]))
			return -1;
	if (!set_up)
		return zdtm_fail("setup never ran, yet every disposition matched");

	/* Behaviour: handled signals reach their handlers with the right masks. */
	for (size_t i = 0; i < NDISP; i++) {
		const struct disp *d = &disps[i];

		if ((d->kind == H_PLAIN || d->kind == H_INFO) && d->sig != SIGSEGV &&
		    d->sig != SIGCHLD && fire(d))
			return -1;
	}
	/* Ignored signals are discarded, not left pending. */
	raise(SIGINT);
	raise(SIGPIPE);
	sigpending(&pend);
	if (sigismember(&pend, SIGINT) || sigismember(&pend, SIGPIPE))
		return zdtm_fail("an ignored signal stays pending");
	/* SA_NOCLDWAIT: an exited child is reaped by the kernel, wait() ends with ECHILD. */
	pid = fork();
	if (pid < 0)
		return zdtm_err("fork");
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, &status, 0) != -1 || errno != ECHILD)
		return zdtm_fail("SA_NOCLDWAIT: waitpid(%d) did not fail with ECHILD (%s)", pid,
				 strerror(errno));
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
