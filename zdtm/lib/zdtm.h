/* zdtm test library: the test-program protocol of DESIGN.md.
 *
 * A program hands the library its setup (build the state) and its check (verify it):
 *
 *	static int setup(void) { ... return 0; }
 *	static int check(void) { if (x != 42) return zdtm_fail("x is %d, not 42", x); return 0; }
 *	ZDTM_TEST(.setup = setup, .check = check);
 *
 * Started as `prog --pidfile=P --outfile=O [--name=value...]`, the library forks; the child
 * calls setsid(), sends stdout/stderr to O, runs setup, then the parent writes the child's
 * pid to P (atomically) and exits. The child waits for SIGTERM (calling .step in a loop for
 * transition tests), runs check, and writes `PASS` or `FAIL: why (file:line)` as the last
 * line of O. With --check-only the setup (and step) is skipped: the check runs on a process
 * that never built the state, and must FAIL.
 *
 * The library owns SIGTERM (handler installed before setup) and one shared page (first
 * failure reason, seen by every forked task). Everything else belongs to the test.
 */
#ifndef ZDTM_H
#define ZDTM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "compat.h"

struct zdtm_test {
	int (*setup)(void);	/* build the state; non-zero: setup failed, the test is broken */
	int (*check)(void);	/* verify the state; 0: pass, otherwise fail (say why with zdtm_fail) */
	int (*step)(void);	/* transition tests: one change, looped until SIGTERM; non-zero: fail */
};

int zdtm_main(int argc, char **argv, const struct zdtm_test *test);

#define ZDTM_TEST(...)                                                        \
	int main(int argc, char **argv)                                       \
	{                                                                     \
		static const struct zdtm_test zdtm_test__ = { __VA_ARGS__ };  \
		return zdtm_main(argc, argv, &zdtm_test__);                   \
	}

/* --- verdicts and messages ------------------------------------------------------------ */

/* Record a failure (the first one is the verdict's reason); returns -1 for `return zdtm_fail(...)`. */
#define zdtm_fail(...) zdtm_fail_at(__FILE__, __LINE__, 0, __VA_ARGS__)
/* Same, with ": strerror(errno)" appended. */
#define zdtm_err(...) zdtm_fail_at(__FILE__, __LINE__, errno, __VA_ARGS__)
int zdtm_fail_at(const char *file, int line, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A log line in the outfile, prefixed with the pid. */
void zdtm_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* True once any task of this test recorded a failure. */
bool zdtm_failed(void);

/* --- options -------------------------------------------------------------------------- */

/* The value of --name=value, or def when absent. A bare --name gives "1". */
const char *zdtm_opt(const char *name, const char *def);
long zdtm_opt_long(const char *name, long def);
/* True when started with --check-only (setup skipped). */
bool zdtm_check_only(void);

/* --- SIGTERM -------------------------------------------------------------------------- */

/* True once this task got SIGTERM (the signal to stop and check). */
bool zdtm_stopping(void);
/* Sleep until SIGTERM arrives (other signals are delivered as usual meanwhile). */
void zdtm_wait_stop(void);

/* --- checksummed data ----------------------------------------------------------------- */

/* Byte i of a stream is a function of (seed, pos + i), so any slice can be checked alone. */
void zdtm_fill(void *buf, size_t len, uint64_t seed, uint64_t pos);
/* -1 when buf holds that slice, otherwise the offset of the first wrong byte. */
ssize_t zdtm_verify(const void *buf, size_t len, uint64_t seed, uint64_t pos);
uint32_t zdtm_crc32(const void *buf, size_t len);

/* --- multi-process tests -------------------------------------------------------------- */

/* A task of the test's tree with its own setup, optional step loop and check. */
struct zdtm_task {
	int (*setup)(void *arg);	/* runs in the child before it counts as ready */
	int (*step)(void *arg);		/* optional: looped until the child gets SIGTERM */
	int (*check)(void *arg);	/* runs in the child after SIGTERM; 0 = pass */
	void *arg;
};
/* Fork a child that runs t->setup, then waits for SIGTERM (looping t->step), then runs
 * t->check and exits 0 (pass) or 1 (fail). Returns once the child's setup is done:
 * its pid, or -1 (the setup failed; the reason is recorded). */
pid_t zdtm_child(const struct zdtm_task *t);
/* Send SIGTERM to a zdtm_child and reap it: 0 if its check passed, else a recorded
 * failure. A pid <= 0 (never started, e.g. in check-only mode) is a failure too. */
int zdtm_child_check(pid_t pid);

/* Zeroed MAP_SHARED anonymous memory, shared with tasks forked afterwards. */
void *zdtm_shmem(size_t len);

/* A futex word in shared memory: tasks wait until it reaches a value. */
struct zdtm_sync {
	uint32_t value;
};
void zdtm_sync_set(struct zdtm_sync *s, uint32_t value);
void zdtm_sync_add(struct zdtm_sync *s, uint32_t n);
/* Wait until value >= want. Returns 0, or -1 if SIGTERM came first. */
int zdtm_sync_wait(struct zdtm_sync *s, uint32_t want);

/* --- small helpers -------------------------------------------------------------------- */

/* Loop over short reads/writes; return bytes done or -1. A read stops early at EOF, or at
 * EAGAIN once some bytes came (non-blocking fds). */
ssize_t zdtm_read_all(int fd, void *buf, size_t len);
ssize_t zdtm_write_all(int fd, const void *buf, size_t len);
/* The value of field "name:" of /proc/<pid>/status (pid 0: self), stripped; 0 or -1. */
int zdtm_proc_status(pid_t pid, const char *name, char *out, size_t outlen);
/* Read a whole small file into buf (NUL-terminated); bytes read or -1. */
ssize_t zdtm_read_file(const char *path, char *buf, size_t len);
/* A check of a listing other tasks change while it is read (/proc/locks is made one page per
 * read() from a position in the kernel's list: an entry of another task coming or going
 * shifts ours out of a read, or into it twice). probe reads the listing once and returns 0
 * when it shows what it should, 1 with why filled when not, -1 when it cannot be read. It is
 * tried up to 40 times, 20 ms apart; 0 once it passes, else zdtm_fail (or zdtm_err) with
 * what and the last why. */
int zdtm_settled(int (*probe)(void *arg, char *why, size_t len), void *arg, const char *what);
pid_t zdtm_gettid(void);

#endif
