/* A flock belongs to the open file description, shared by dup'ed fds and by a child that
 * inherited them; that sharing survives C/R. An exclusive lock stays held while any fd of
 * its description is open in the root or the child, and goes when the last one closes; a
 * shared lock dropped with LOCK_UN through one fd is gone for every fd of the description. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include "zdtm.h"

#define PATH_EX "dup-ex"
#define PATH_SH "dup-sh"
#define POS 1234

static int ex_a = -1, ex_b = -1;	/* dup'ed fds of one description, LOCK_EX */
static int sh_a = -1, sh_b = -1;	/* dup'ed fds of another, LOCK_SH */
static pid_t child;

/* The flock line of the fdinfo of fd: "READ", "WRITE", or "" for none; NULL on error. */
static const char *fd_flock(int fd)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return NULL;
	if (strstr(buf, " FLOCK  ADVISORY  WRITE "))
		return "WRITE";
	if (strstr(buf, " FLOCK  ADVISORY  READ "))
		return "READ";
	return "";
}

/* op|LOCK_NB on a fresh description: 0 granted (and dropped), 1 conflicts, -1 error. */
static int try_fresh(const char *path, int op)
{
	int f = open(path, O_RDONLY), rc;

	if (f < 0)
		return zdtm_err("open %s", path);
	rc = flock(f, op | LOCK_NB);
	if (rc && errno != EWOULDBLOCK)
		rc = zdtm_err("flock on a fresh description of %s", path);
	else if (rc)
		rc = 1;
	close(f);
	return rc;
}

static int expect(const char *path, int op, int want, const char *when)
{
	int c = try_fresh(path, op);

	if (c < 0)
		return -1;
	if (c != want)
		return zdtm_fail("%s: %s from a fresh description %s %s", path,
				 op == LOCK_EX ? "LOCK_EX" : "LOCK_SH",
				 c ? "conflicts" : "is granted", when);
	return 0;
}

/* The child keeps ex_b and sh_a: the other fd of each pair is closed here. */
static int child_setup(void *arg)
{
	(void)arg;
	close(ex_a);
	close(sh_b);
	return 0;
}

static int child_check(void *arg)
{
	const char *lk;
	off_t pos;

	(void)arg;
	lk = fd_flock(ex_b);
	if (!lk || strcmp(lk, "WRITE"))
		return zdtm_fail("child: inherited fd %d of %s shows flock '%s', expected WRITE",
				 ex_b, PATH_EX, lk ? lk : "(not open)");
	pos = lseek(ex_b, 0, SEEK_CUR);
	if (pos != POS)
		return zdtm_fail("child: fd %d is at %lld, expected %d as the root set it: the "
				 "description is not shared", ex_b, (long long)pos, POS);
	lk = fd_flock(sh_a);
	if (!lk || *lk)
		return zdtm_fail("child: fd %d of %s shows flock '%s' after the root's LOCK_UN, "
				 "expected none", sh_a, PATH_SH, lk ? lk : "(not open)");
	return 0;
}

static int setup(void)
{
	struct zdtm_task t = { .setup = child_setup, .check = child_check };

	ex_a = open(PATH_EX, O_RDWR | O_CREAT | O_EXCL, 0644);
	sh_a = open(PATH_SH, O_RDWR | O_CREAT | O_EXCL, 0644);
	if (ex_a < 0 || sh_a < 0)
		return zdtm_err("create the files");
	if (flock(ex_a, LOCK_EX) || flock(sh_a, LOCK_SH))
		return zdtm_err("flock");
	ex_b = dup(ex_a);
	sh_b = dup(sh_a);
	if (ex_b < 0 || sh_b < 0)
		return zdtm_err("dup");
	child = zdtm_child(&t);
	if (child < 0)
		return -1;
	/* The root keeps ex_b and both fds of the shared lock. */
	close(ex_a);
	return 0;
}

static int check_all(void)
{
	const char *lk;

	if (child <= 0)
		return zdtm_fail("the child sharing the locks was never started");
	lk = fd_flock(ex_b);
	if (!lk || strcmp(lk, "WRITE"))
		return zdtm_fail("fd %d of %s shows flock '%s', expected WRITE", ex_b, PATH_EX,
				 lk ? lk : "(not open)");
	lk = fd_flock(sh_b);
	if (!lk || strcmp(lk, "READ"))
		return zdtm_fail("fd %d of %s shows flock '%s', expected READ", sh_b, PATH_SH,
				 lk ? lk : "(not open)");
	if (expect(PATH_EX, LOCK_SH, 1, "while its exclusive lock is held") ||
	    expect(PATH_SH, LOCK_SH, 0, "while only a shared lock is held") ||
	    expect(PATH_SH, LOCK_EX, 1, "while a shared lock is held"))
		return -1;

	/* LOCK_UN through one fd drops the lock of the whole description (the child's fd too). */
	if (flock(sh_a, LOCK_UN))
		return zdtm_err("LOCK_UN on fd %d", sh_a);
	lk = fd_flock(sh_b);
	if (!lk || *lk)
		return zdtm_fail("dup fd %d of %s still shows flock '%s' after LOCK_UN on fd %d",
				 sh_b, PATH_SH, lk ? lk : "(not open)", sh_a);
	if (expect(PATH_SH, LOCK_EX, 0, "after LOCK_UN through one fd of the description"))
		return -1;

	/* Closing the root's last fd keeps the lock: the child's fd holds the description. */
	if (lseek(ex_b, POS, SEEK_SET) != POS)
		return zdtm_err("lseek fd %d", ex_b);
	close(ex_b);
	ex_b = -1;
	if (expect(PATH_EX, LOCK_SH, 1, "with the root's fds closed and the child's open"))
		return -1;
	if (zdtm_child_check(child))
		return -1;
	child = 0;
	return expect(PATH_EX, LOCK_EX, 0, "after every fd of the description closed");
}

static int check(void)
{
	int rc = check_all();

	if (child > 0)
		zdtm_child_check(child);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
