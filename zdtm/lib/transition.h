/* Transition-test helpers: the warm-up loop of a setup, and the end of a test's child.
 *
 *	static int setup(void) { return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL); }
 *	static int check(void) { return zdtm_child_guard(check_state, &child); }
 */
#ifndef ZDTM_TRANSITION_H
#define ZDTM_TRANSITION_H

#include "zdtm.h"

/* A transition test's setup: run build, then step until *steps >= min_steps and ready()
 * (when given) holds, so the check's minimums hold however soon SIGTERM comes. A loop
 * still short of them after 10 s is a failure (reported at the caller's line). */
#define zdtm_warmup(build, step, steps, min_steps, ready) \
	zdtm_warmup_at(__FILE__, __LINE__, build, step, steps, min_steps, ready)
int zdtm_warmup_at(const char *file, int line, int (*build)(void), int (*step)(void),
		   const unsigned long *steps, unsigned long min_steps, bool (*ready)(void));

/* Stop a zdtm_child in the check: take its pid out of *pid, then zdtm_child_check it. */
int zdtm_child_stop(pid_t *pid);
/* SIGKILL and reap the child *pid if it is still running (*pid > 0); *pid becomes 0. */
void zdtm_child_kill(pid_t *pid);
/* A check for a test with a child: check (skipped once a task recorded a failure), then
 * zdtm_child_kill: an early failure leaves no child running. */
int zdtm_child_guard(int (*check)(void), pid_t *pid);

#endif
