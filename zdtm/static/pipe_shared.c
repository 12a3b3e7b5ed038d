/* One pipe shared by the parent and two children, each task holding both ends, with data
 * written by all three. After C/R every task still holds the same pipe (kcmp), the data
 * come out in order whichever task reads, and once all are done no writer is left. */
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x5a1e
/* One stream: A by the parent, B by child 0, C by child 1 (setup); D by child 0 (check). */
#define A_OFF 0
#define A_LEN 1000
#define B_OFF (A_OFF + A_LEN)
#define B_LEN 2000
#define C_OFF (B_OFF + B_LEN)
#define C_LEN 3000
#define D_OFF (C_OFF + C_LEN)
#define D_LEN 500

static int fds[2] = { -1, -1 };
static pid_t kids[2];

static int put(uint64_t off, size_t len)
{
	char buf[C_LEN];

	zdtm_fill(buf, len, SEED, off);
	if (zdtm_write_all(fds[1], buf, len) != (ssize_t)len)
		return zdtm_err("write %zu bytes into the pipe", len);
	return 0;
}

static int take(uint64_t off, size_t len, const char *who)
{
	char buf[C_LEN];
	ssize_t n, bad;

	n = zdtm_read_all(fds[0], buf, len);	/* O_NONBLOCK: stops at EAGAIN */
	if (n < 0 && errno == EAGAIN)
		n = 0;
	if (n != (ssize_t)len)
		return zdtm_fail("%s read %zd bytes at stream offset %llu, expected %zu", who, n,
				 (unsigned long long)off, len);
	bad = zdtm_verify(buf, len, SEED, off);
	if (bad >= 0)
		return zdtm_fail("%s: byte %llu of the stream differs", who,
				 (unsigned long long)(off + bad));
	return 0;
}

static int empty(const char *who)
{
	char c;
	ssize_t n = read(fds[0], &c, 1);

	if (n != -1 || errno != EAGAIN)
		return zdtm_fail("%s: the pipe should be empty with writers left, read gave %zd "
				 "(errno %d)", who, n, errno);
	return 0;
}

static int child_setup(void *arg)
{
	return (long)arg == 0 ? put(B_OFF, B_LEN) : put(C_OFF, C_LEN);
}

static int child_check(void *arg)
{
	if ((long)arg == 0)
		return take(B_OFF, B_LEN, "child 0") || put(D_OFF, D_LEN);
	return take(C_OFF, C_LEN, "child 1") || take(D_OFF, D_LEN, "child 1") ||
	       empty("child 1");
}

static int setup(void)
{
	if (pipe(fds) || fcntl(fds[0], F_SETFL, O_NONBLOCK))
		return zdtm_err("pipe");
	if (put(A_OFF, A_LEN))
		return -1;
	for (long i = 0; i < 2; i++) {
		struct zdtm_task t = { .setup = child_setup, .check = child_check,
				       .arg = (void *)i };

		kids[i] = zdtm_child(&t);
		if (kids[i] < 0)
			return -1;
	}
	return 0;
}

static int do_check(void)
{
	char c;
	ssize_t n;

	if (fds[0] < 0 || fds[1] < 0 || kids[0] <= 0 || kids[1] <= 0)
		return zdtm_fail("the pipe and the children were never set up");
	if (fcntl(fds[0], F_GETFL) != (O_RDONLY | O_NONBLOCK) || fcntl(fds[1], F_GETFL) != O_WRONLY)
		return zdtm_fail("F_GETFL %#o/%#o, expected %#o/%#o", fcntl(fds[0], F_GETFL),
				 fcntl(fds[1], F_GETFL), O_RDONLY | O_NONBLOCK, O_WRONLY);
	for (int i = 0; i < 2; i++)
		for (int e = 0; e < 2; e++) {
			long r = syscall(SYS_kcmp, getpid(), kids[i], KCMP_FILE, fds[e], fds[e]);

			if (r)
				return zdtm_fail("kcmp(KCMP_FILE) of fd %d in the parent and child %d "
						 "(pid %d) = %ld: not the same pipe end", fds[e], i,
						 kids[i], r);
		}

	if (take(A_OFF, A_LEN, "parent"))
		return -1;
	if (zdtm_child_check(kids[0]))
		return -1;
	kids[0] = 0;
	if (zdtm_child_check(kids[1]))
		return -1;
	kids[1] = 0;
	if (empty("parent"))
		return -1;
	/* The children are gone: the parent's write end must be the last one. */
	close(fds[1]);
	fds[1] = -1;
	n = read(fds[0], &c, 1);
	if (n != 0)
		return zdtm_fail("read after the last writer closed gave %zd (errno %d), expected "
				 "EOF: another task still holds the write end", n, errno);
	return 0;
}

static int check(void)
{
	int rc = do_check();

	for (int i = 0; i < 2; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
