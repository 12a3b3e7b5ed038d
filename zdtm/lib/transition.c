/* Transition-test helpers (see transition.h). */
#include "transition.h"

#include <signal.h>
#include <sys/wait.h>
#include <time.h>

/* Only a loop that is stuck takes this long: a healthy one makes its first steps in
 * milliseconds, but on a busy two-CPU CI machine a fork loop was once starved for 2 s. */
#define WARMUP_MS 10000

int zdtm_warmup_at(const char *file, int line, int (*build)(void), int (*step)(void),
		   const unsigned long *steps, unsigned long min_steps, bool (*ready)(void))
{
	struct timespec t0, t;

	if (build && build())
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (*steps < min_steps || (ready && !ready())) {
		if (step())
			return -1;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > WARMUP_MS)
			return zdtm_fail_at(file, line, 0, "setup: the loop made only %lu steps in "
					    "%d s", *steps, WARMUP_MS / 1000);
	}
	return 0;
}

int zdtm_child_stop(pid_t *pid)
{
	pid_t c = *pid;

	*pid = 0;	/* zdtm_child_check reaps it */
	return zdtm_child_check(c);
}

void zdtm_child_kill(pid_t *pid)
{
	if (*pid <= 0)
		return;
	kill(*pid, SIGKILL);
	while (waitpid(*pid, NULL, 0) < 0 && errno == EINTR)
		;
	*pid = 0;
}

int zdtm_child_guard(int (*check)(void), pid_t *pid)
{
	int rc = zdtm_failed() ? -1 : check();

	zdtm_child_kill(pid);
	return rc;
}
