/* Pids recycled during C/R: each step forks two children, tells each through a pipe the
 * pid fork() returned for it, and reaps them in reverse order. Each child compares that
 * pid with getpid() and the raw getpid syscall and its parent with getppid(), answers
 * through a second pipe with what it saw, and exits with a code derived from its
 * sequence number (a mismatch gives another code). The parent checks the answer and the
 * exit status, and counts pids it sees again (the kernel recycles them after pid_max). */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define PER_STEP 2
#define MIN_STEPS 3
#define SEEN_BITS (1 << 22)	/* pid_max is at most 4194304 */

/* exit codes of a child that saw something wrong */
#define BAD_READ 120
#define BAD_PID 121
#define BAD_RAWPID 122
#define BAD_PPID 123
#define BAD_WRITE 124

struct hello {			/* parent -> child */
	pid_t pid;		/* what fork() returned */
	uint32_t seq;
};

struct answer {			/* child -> parent */
	pid_t pid, rawpid, ppid;
	uint32_t seq;
};

static pid_t self_pid;		/* 0 until setup */
static unsigned long steps;
static uint32_t forked, reaped, reused;
static uint8_t *seen;		/* bitmap of pids seen */

static int expected_code(uint32_t seq)
{
	return 1 + seq % 100;
}

static void child(int in, int out, uint32_t seq)
{
	struct hello h;
	struct answer a;
	int code = expected_code(seq);

	if (zdtm_read_all(in, &h, sizeof(h)) != sizeof(h) || h.seq != seq)
		_exit(BAD_READ);
	a = (struct answer){ getpid(), (pid_t)syscall(SYS_getpid), getppid(), seq };
	if (zdtm_write_all(out, &a, sizeof(a)) != sizeof(a))
		_exit(BAD_WRITE);
	if (a.pid != h.pid)
		code = BAD_PID;
	else if (a.rawpid != h.pid)
		code = BAD_RAWPID;
	else if (a.ppid != self_pid)
		code = BAD_PPID;
	_exit(code);
}

static int build(void)
{
	seen = calloc(SEEN_BITS / 8, 1);
	if (!seen)
		return zdtm_err("pid bitmap");
	self_pid = getpid();
	return 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 100000 };
	struct {
		pid_t pid;
		uint32_t seq;
		int to[2], from[2];
	} c[PER_STEP];
	int i;

	for (i = 0; i < PER_STEP; i++) {
		struct hello h;

		c[i].seq = forked;
		if (pipe2(c[i].to, O_CLOEXEC) || pipe2(c[i].from, O_CLOEXEC))
			return zdtm_err("pipe");
		c[i].pid = fork();
		if (c[i].pid < 0)
			return zdtm_err("fork of child #%u", forked);
		if (c[i].pid == 0)
			child(c[i].to[0], c[i].from[1], c[i].seq);
		forked++;
		close(c[i].to[0]);
		close(c[i].from[1]);
		h = (struct hello){ c[i].pid, c[i].seq };
		if (zdtm_write_all(c[i].to[1], &h, sizeof(h)) != sizeof(h))
			return zdtm_err("write to child #%u (pid %d)", c[i].seq, c[i].pid);
		close(c[i].to[1]);
		if (c[i].pid < SEEN_BITS) {
			if (seen[c[i].pid / 8] & (1 << (c[i].pid % 8)))
				reused++;
			seen[c[i].pid / 8] |= 1 << (c[i].pid % 8);
		}
	}
	for (i = PER_STEP - 1; i >= 0; i--) {
		struct answer a;
		ssize_t n = zdtm_read_all(c[i].from[0], &a, sizeof(a));
		int status;
		pid_t r;

		close(c[i].from[0]);
		while ((r = waitpid(c[i].pid, &status, 0)) < 0 && errno == EINTR)
			;
		if (r != c[i].pid)
			return zdtm_err("waitpid(%d) of child #%u returned %d", c[i].pid, c[i].seq,
					r);
		if (n != sizeof(a))
			return zdtm_fail("child #%u (pid %d) sent %zd of %zu answer bytes, status "
					 "0x%x", c[i].seq, c[i].pid, n, sizeof(a), status);
		if (a.seq != c[i].seq || a.pid != c[i].pid || a.rawpid != c[i].pid ||
		    a.ppid != self_pid)
			return zdtm_fail("child #%u forked as pid %d saw itself as #%u, getpid %d, "
					 "raw getpid %d, parent %d (we are %d)", c[i].seq, c[i].pid,
					 a.seq, a.pid, a.rawpid, a.ppid, self_pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != expected_code(c[i].seq))
			return zdtm_fail("child #%u (pid %d) left status 0x%x, expected exit %d",
					 c[i].seq, c[i].pid, status, expected_code(c[i].seq));
		reaped++;
	}
	steps++;
	nanosleep(&pause, NULL);	/* stay a light load next to other tests */
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	int status;
	pid_t r;

	if (!self_pid || !seen)
		return zdtm_fail("setup never ran: no pid loop state");
	if (steps < MIN_STEPS)
		return zdtm_fail("the pid loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (self_pid != getpid() || self_pid != (pid_t)syscall(SYS_getpid))
		return zdtm_fail("pid changed from %d to %d (raw %ld)", self_pid, getpid(),
				 syscall(SYS_getpid));
	if (forked != steps * PER_STEP || reaped != forked)
		return zdtm_fail("%lu steps forked %u children (expected %lu), reaped %u", steps,
				 forked, steps * PER_STEP, reaped);
	r = waitpid(-1, &status, WNOHANG);
	if (r != -1 || errno != ECHILD)
		return zdtm_fail("an unexpected child is left: waitpid(-1) returned %d", r);
	zdtm_msg("%lu steps: %u children checked their pids, %u pids seen again", steps,
		 forked, reused);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
