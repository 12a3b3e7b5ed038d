/* Zombies: children of the root that exited with several codes (one from a second thread,
 * one after leaving for its own group, one after starting its own session) or were killed
 * by several signals (sent by the root, by themselves, by the kernel on a broken pipe),
 * never reaped. The check sees each in /proc as state Z with its name, parent, group and
 * session, then reaps each and compares its wait status exactly. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

enum how {
	EXIT,		/* _exit(val) */
	EXIT_THREAD,	/* exit(val) from a second thread */
	EXIT_PGRP,	/* setpgid(0, 0), then _exit(val) */
	EXIT_SESSION,	/* setsid(), then _exit(val) */
	KILLED,		/* killed by the root with signal val */
	RAISED,		/* sends itself signal val */
	SIGPIPED,	/* writes to a pipe without readers: the kernel sends SIGPIPE */
};

struct zombie {
	enum how how;
	int val;
	pid_t pid;
};

static struct zombie zombies[] = {
	{ .how = EXIT, .val = 0 },
	{ .how = EXIT, .val = 1 },
	{ .how = EXIT, .val = 42 },
	{ .how = EXIT, .val = 255 },
	{ .how = EXIT_THREAD, .val = 77 },
	{ .how = EXIT_PGRP, .val = 3 },
	{ .how = EXIT_SESSION, .val = 4 },
	{ .how = KILLED, .val = SIGKILL },
	{ .how = KILLED, .val = SIGHUP },
	{ .how = RAISED, .val = SIGUSR1 },
	{ .how = RAISED, .val = SIGTERM },
	{ .how = SIGPIPED, .val = SIGPIPE },
};

#define NR (int)(sizeof(zombies) / sizeof(zombies[0]))

static bool made;
static struct zdtm_sync *named;	/* shared: children that have set their name */

/* The wait status the zombie must give (no core dumps: none of these signals dumps core). */
static int want_status(const struct zombie *z)
{
	switch (z->how) {
	case KILLED:
	case RAISED:
	case SIGPIPED:
		return z->val;
	default:
		return z->val << 8;
	}
}

static void *thread_exit(void *arg)
{
	exit((int)(long)arg);
}

static void child(int i)
{
	struct zombie *z = &zombies[i];
	static const int dfl[] = { SIGHUP, SIGUSR1, SIGTERM, SIGPIPE };
	char name[16];
	sigset_t none;
	pthread_t th;
	int p[2];

	snprintf(name, sizeof(name), "zombie-%d", i);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	/* whatever the harness left: the signals must take their default action */
	for (unsigned int k = 0; k < sizeof(dfl) / sizeof(dfl[0]); k++)
		signal(dfl[k], SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	zdtm_sync_add(named, 1);
	switch (z->how) {
	case EXIT:
		_exit(z->val);
	case EXIT_THREAD:
		if (pthread_create(&th, NULL, thread_exit, (void *)(long)z->val))
			_exit(200);
		for (;;)
			pause();
	case EXIT_PGRP:
		if (setpgid(0, 0))
			_exit(201);
		_exit(z->val);
	case EXIT_SESSION:
		if (setsid() < 0)
			_exit(202);
		_exit(z->val);
	case KILLED:
		for (;;)
			pause();
	case RAISED:
		kill(getpid(), z->val);
		_exit(203);
	case SIGPIPED:
		if (pipe(p))
			_exit(204);
		close(p[0]);
		if (write(p[1], "x", 1) < 0)
			_exit(205);
		_exit(206);
	}
	_exit(207);
}

static int setup(void)
{
	siginfo_t si;
	int i;

	named = zdtm_shmem(sizeof(*named));
	if (!named)
		return zdtm_err("shmem");
	for (i = 0; i < NR; i++) {
		struct zombie *z = &zombies[i];

		z->pid = fork();
		if (z->pid < 0)
			return zdtm_err("fork zombie %d", i);
		if (z->pid == 0)
			child(i);
		if (zdtm_sync_wait(named, i + 1))
			return zdtm_fail("stopped while making zombie %d", i);
		if (z->how == KILLED && kill(z->pid, z->val))
			return zdtm_err("signal %d to child %d", z->val, z->pid);
	}
	/* wait until each is a zombie, leaving it unreaped (WNOWAIT) */
	for (i = 0; i < NR; i++) {
		struct zombie *z = &zombies[i];
		int st;

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, z->pid, &si, WEXITED | WNOWAIT))
			return zdtm_err("waitid(%d)", z->pid);
		st = si.si_code == CLD_EXITED ? si.si_status << 8 : si.si_status;
		if (st != want_status(z))
			return zdtm_fail("zombie %d (pid %d) ended with status 0x%x, expected 0x%x",
					 i, z->pid, st, want_status(z));
	}
	made = true;
	return 0;
}

static int check_proc(int i, const struct zombie *z)
{
	char path[64], buf[1024], name[16], want_name[16], state;
	int ppid, pgrp, sid;
	char *p, *q;

	snprintf(path, sizeof(path), "/proc/%d/stat", z->pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("zombie %d (pid %d): %s", i, z->pid, path);
	p = strchr(buf, '(');
	q = strrchr(buf, ')');
	if (!p || !q || q - p - 1 >= (int)sizeof(name) ||
	    sscanf(q + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4)
		return zdtm_fail("zombie %d (pid %d): cannot parse %s", i, z->pid, path);
	memcpy(name, p + 1, q - p - 1);
	name[q - p - 1] = '\0';
	snprintf(want_name, sizeof(want_name), "zombie-%d", i);
	if (state != 'Z')
		return zdtm_fail("zombie %d (pid %d) is in state %c, expected Z", i, z->pid, state);
	if (strcmp(name, want_name))
		return zdtm_fail("zombie %d (pid %d) is named '%s', expected '%s'", i, z->pid, name, want_name);
	if (ppid != getpid())
		return zdtm_fail("zombie %d (pid %d) has parent %d, expected %d", i, z->pid, ppid, getpid());
	if (pgrp != (z->how == EXIT_PGRP || z->how == EXIT_SESSION ? z->pid : getpgrp()))
		return zdtm_fail("zombie %d (pid %d) is in group %d", i, z->pid, pgrp);
	if (sid != (z->how == EXIT_SESSION ? z->pid : getsid(0)))
		return zdtm_fail("zombie %d (pid %d) is in session %d", i, z->pid, sid);
	return 0;
}

static int check(void)
{
	int i, status, rc = 0;
	siginfo_t si;
	pid_t r;

	if (!made)
		return zdtm_fail("no zombies were made");
	for (i = 0; i < NR; i++)
		if (check_proc(i, &zombies[i]))
			rc = -1;
	for (i = 0; i < NR; i++) {
		struct zombie *z = &zombies[i];

		/* the kernel's view first, without reaping: who, how, and with what */
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, z->pid, &si, WEXITED | WNOHANG | WNOWAIT))
			rc = zdtm_err("waitid(%d)", z->pid);
		else if (si.si_pid != z->pid)
			rc = zdtm_fail("zombie %d (pid %d) cannot be waited for: it has not ended", i, z->pid);
		else if (si.si_code != (want_status(z) & 0xff ? CLD_KILLED : CLD_EXITED) ||
			 si.si_status != z->val)
			rc = zdtm_fail("zombie %d (pid %d): waitid gives code %d status %d, expected %s %d",
				       i, z->pid, si.si_code, si.si_status,
				       want_status(z) & 0xff ? "killed by" : "exit", z->val);
		r = waitpid(z->pid, &status, WNOHANG);
		if (r == 0) {
			rc = zdtm_fail("zombie %d (pid %d) is alive: killed", i, z->pid);
			kill(z->pid, SIGKILL);
			r = waitpid(z->pid, &status, 0);
			continue;
		}
		if (r != z->pid)
			rc = zdtm_err("waitpid(%d)", z->pid);
		else if (status != want_status(z))
			rc = zdtm_fail("zombie %d (pid %d) gave wait status 0x%x, expected 0x%x",
				       i, z->pid, status, want_status(z));
	}
	r = waitpid(-1, &status, WNOHANG);
	if (r > 0)
		rc = zdtm_fail("an unexpected child %d (status 0x%x) was left", r, status);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
