/* vfork'ed children during C/R: each step vforks a child that shares the parent's memory
 * while the parent waits. The child checks its parent's pid, stays up to 1 ms (C/R may
 * catch the pair in that state), writes its sequence number into a variable of the shared
 * memory, and exits with a code derived from it. When vfork returns, the parent must see
 * that write (the memory really was shared) and reap the child with its exact status. */
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define MIN_STEPS 3

static pid_t self_pid;			/* 0 until setup */
static unsigned long steps;
static volatile uint32_t vseq;		/* the sequence number of the next child */
static volatile uint32_t mark;		/* written by the vforked child */
static uint32_t reaped;

static int expected_code(uint32_t seq)
{
	return 1 + seq % 100;
}

static int build(void)
{
	self_pid = getpid();
	mark = ~0u;
	return 0;
}

static int step(void)
{
	static const struct timespec pause = { 0, 100000 };
	uint32_t seq = vseq;
	int status;
	pid_t pid, r;

	mark = ~0u;
	pid = vfork();
	if (pid == 0) {
		/* Only raw syscalls and plain stores here: we run on the parent's memory. */
		struct timespec ts = { 0, (long)(vseq % 3) * 500000 };

		if (syscall(SYS_getppid) != self_pid)
			_exit(120);
		syscall(SYS_nanosleep, &ts, NULL);
		mark = vseq;
		_exit(expected_code(vseq));
	}
	if (pid < 0)
		return zdtm_err("vfork of child #%u", seq);
	if (mark != seq)
		return zdtm_fail("vforked child #%u (pid %d) wrote %u into shared memory, the "
				 "parent sees %u", seq, pid, seq, mark);
	while ((r = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (r != pid)
		return zdtm_err("waitpid(%d) of vforked child #%u returned %d", pid, seq, r);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != expected_code(seq))
		return zdtm_fail("vforked child #%u (pid %d) left status 0x%x, expected exit %d",
				 seq, pid, status, expected_code(seq));
	vseq = seq + 1;
	reaped++;
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

	if (!self_pid)
		return zdtm_fail("setup never ran: no vfork loop state");
	if (steps < MIN_STEPS)
		return zdtm_fail("the vfork loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (self_pid != getpid())
		return zdtm_fail("pid changed from %d to %d", self_pid, getpid());
	if (reaped != steps || vseq != steps || mark != vseq - 1)
		return zdtm_fail("%lu steps, but %u children reaped, next is #%u, last mark %u",
				 steps, reaped, vseq, mark);
	r = waitpid(-1, &status, WNOHANG);
	if (r != -1 || errno != ECHILD)
		return zdtm_fail("an unexpected child is left: waitpid(-1) returned %d", r);
	zdtm_msg("%lu steps: %u vforked children wrote to the shared memory and exited", steps,
		 reaped);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
