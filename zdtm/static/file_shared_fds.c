/* A file fd inherited by two children shares one open file description with the parent
 * after C/R: kcmp says so, and an offset or flag change made by a child at check time is
 * seen by the parent and the other child. Each child's own open of the file stays apart. */
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "shared_fds.dat"
#define SEED 0x5fd5
#define LEN 30000
#define POS0 4321
#define POS1 11111	/* child 0 seeks here and writes WLEN bytes */
#define POS2 22222	/* child 1 seeks here */
#define WLEN 100
#define PRIV_POS 7

struct shared {
	int priv_fd[2];	/* each child's own open of the file */
};

static int fd = -1;
static int fl;
static pid_t kids[2];
static struct shared *sh;

static long kcmp_file(pid_t a, pid_t b, int fa, int fb)
{
	return syscall(SYS_kcmp, a, b, KCMP_FILE, fa, fb);
}

static int child_setup(void *arg)
{
	int i = (int)(long)arg;

	sh->priv_fd[i] = open(NAME, O_RDONLY);
	if (sh->priv_fd[i] < 0 || lseek(sh->priv_fd[i], PRIV_POS + i, SEEK_SET) < 0)
		return zdtm_err("child %d: open %s", i, NAME);
	return 0;
}

static int expect_pos(int f, off_t want, const char *who)
{
	off_t pos = lseek(f, 0, SEEK_CUR);

	if (pos != want)
		return zdtm_fail("%s: fd %d offset %lld, expected %lld", who, f, (long long)pos,
				 (long long)want);
	return 0;
}

static int child_check(void *arg)
{
	int i = (int)(long)arg;
	char buf[WLEN];

	if (expect_pos(sh->priv_fd[i], PRIV_POS + i, i ? "child 1 own fd" : "child 0 own fd"))
		return 1;
	if (i == 0) {
		/* First to run: sees the offset from setup, moves it and writes. */
		if (expect_pos(fd, POS0, "child 0, inherited fd"))
			return 1;
		zdtm_fill(buf, WLEN, SEED, POS1);
		if (lseek(fd, POS1, SEEK_SET) != POS1 || write(fd, buf, WLEN) != WLEN)
			return zdtm_err("child 0: seek and write"), 1;
	} else {
		/* Second: sees where child 0 left the shared offset. */
		if (expect_pos(fd, POS1 + WLEN, "child 1, inherited fd"))
			return 1;
		if (fcntl(fd, F_SETFL, fl | O_APPEND) || lseek(fd, POS2, SEEK_SET) != POS2)
			return zdtm_err("child 1: F_SETFL/lseek"), 1;
	}
	return 0;
}

static int setup(void)
{
	static char buf[LEN];

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh)
		return zdtm_err("shared memory");
	fd = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0644);
	zdtm_fill(buf, LEN, SEED, 0);
	if (fd < 0 || zdtm_write_all(fd, buf, LEN) != LEN || lseek(fd, POS0, SEEK_SET) != POS0)
		return zdtm_err("create %s", NAME);
	fl = fcntl(fd, F_GETFL);
	for (int i = 0; i < 2; i++) {
		struct zdtm_task t = { .setup = child_setup, .check = child_check,
				       .arg = (void *)(long)i };

		kids[i] = zdtm_child(&t);
		if (kids[i] < 0)
			return -1;
	}
	return 0;
}

static int do_check(void)
{
	char buf[WLEN];
	long r;

	if (fd < 0 || !sh || kids[0] <= 0 || kids[1] <= 0)
		return zdtm_fail("the file and the children were never set up");
	if (fcntl(fd, F_GETFL) != fl)
		return zdtm_fail("parent fd %d: F_GETFL %#o, expected %#o", fd, fcntl(fd, F_GETFL),
				 fl);
	if (expect_pos(fd, POS0, "parent"))
		return -1;
	for (int i = 0; i < 2; i++) {
		r = kcmp_file(getpid(), kids[i], fd, fd);
		if (r)
			return zdtm_fail("kcmp(KCMP_FILE) of fd %d in parent and child %d (pid %d) "
					 "= %ld: not one description", fd, i, kids[i], r);
		r = kcmp_file(getpid(), kids[i], fd, sh->priv_fd[i]);
		if (r <= 0)
			return zdtm_fail("child %d's own fd %d: kcmp with the parent's fd = %ld, "
					 "expected a separate description", i, sh->priv_fd[i], r);
	}

	if (zdtm_child_check(kids[0]))
		return -1;
	kids[0] = 0;
	if (expect_pos(fd, POS1 + WLEN, "parent, after child 0 moved the offset"))
		return -1;
	if (pread(fd, buf, WLEN, POS1) != WLEN || zdtm_verify(buf, WLEN, SEED, POS1) >= 0)
		return zdtm_fail("the parent does not read what child 0 wrote at %d", POS1);

	if (zdtm_child_check(kids[1]))
		return -1;
	kids[1] = 0;
	if (expect_pos(fd, POS2, "parent, after child 1 moved the offset"))
		return -1;
	if (!(fcntl(fd, F_GETFL) & O_APPEND))
		return zdtm_fail("parent fd %d: O_APPEND set by child 1 is not seen (F_GETFL %#o)",
				 fd, fcntl(fd, F_GETFL));
	return 0;
}

static int check(void)
{
	int rc = do_check();

	/* After a failure, leave no child behind. */
	for (int i = 0; i < 2; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
