/* A vfork'ed child that neither exec'd nor exited: the child sleeps in read() on a pipe,
 * on its parent's memory, while the parent sleeps in vfork(). At check the root sees both
 * in /proc (the parent still in its vfork, the child its child), then releases the child:
 * it writes a word into the memory it shares with the parent and exits with code 33; the
 * parent's vfork() must then return the child's pid, and the parent must see that word. */
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define V_CODE 33
#define MARK_SETUP 0x5e7a
#define MARK_CHECK 0xc4ec

struct shared {
	struct zdtm_sync v_ready;	/* the vfork child is about to block */
	pid_t v;			/* the vfork child */
	pid_t v_saw_pid, v_saw_ppid;	/* what the child saw once released */
	pid_t p_vfork_ret;		/* what vfork() returned in the parent */
	uint32_t p_word;		/* the shared word as the parent saw it after vfork() */
	int p_vstatus;			/* the child's wait status, as the parent got it */
};

static struct shared *sh;
static pid_t parent;		/* the task blocked in vfork(); 0 until made */
static int wfd = -1;		/* the root's end of the pipe the vfork child reads */
static volatile uint32_t word;	/* in the parent's memory, written by the vfork child */

struct pstat {
	char state;
	int ppid, pgrp, sid;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int read_stat(pid_t pid, struct pstat *st)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %d %d %d", &st->state, &st->ppid, &st->pgrp, &st->sid) != 4)
		return -1;
	return 0;
}

static void parent_main(int rfd)
{
	int status = 0;
	char c;
	pid_t v;

	word = 0;
	v = vfork();
	if (v == 0) {
		/* the vfork child: on the parent's memory and stack until _exit() */
		sh->v = getpid();
		word = MARK_SETUP;
		zdtm_sync_add(&sh->v_ready, 1);
		if (read(rfd, &c, 1) != 1)
			_exit(2);
		sh->v_saw_pid = getpid();
		sh->v_saw_ppid = getppid();
		word = MARK_CHECK;
		_exit(V_CODE);
	}
	sh->p_vfork_ret = v;
	sh->p_word = word;
	if (v > 0 && waitpid(v, &status, 0) == v)
		sh->p_vstatus = status;
	_exit(0);
}

/* The syscall a task sleeps in: the first field of /proc/PID/syscall. */
static long in_syscall(pid_t pid)
{
	char path[64], buf[256];
	long nr;

	snprintf(path, sizeof(path), "/proc/%d/syscall", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0 || sscanf(buf, "%ld", &nr) != 1)
		return -2;
	return nr;
}

static int check_shape(bool report)
{
	struct pstat ps, vs;
	long nr;

	if (read_stat(parent, &ps))
		return report ? zdtm_err("the vfork parent %d: /proc stat", parent) : -1;
	if (read_stat(sh->v, &vs))
		return report ? zdtm_err("the vfork child %d: /proc stat", sh->v) : -1;
	/* the parent waits killable in vfork: D, or S on older kernels */
	if (ps.state != 'D' && ps.state != 'S')
		return report ? zdtm_fail("the vfork parent %d is in state %c, expected D", parent, ps.state) : -1;
	if (vs.state != 'S')
		return report ? zdtm_fail("the vfork child %d is in state %c, expected S", sh->v, vs.state) : -1;
	nr = in_syscall(parent);
	if (nr != SYS_vfork && nr != SYS_clone && nr != __NR_clone3)
		return report ? zdtm_fail("the vfork parent %d sleeps in syscall %ld, not in vfork (%d)",
					  parent, nr, SYS_vfork) : -1;
	if (!report)
		return 0;
	if (ps.ppid != getpid())
		return zdtm_fail("the vfork parent %d has parent %d, expected %d", parent, ps.ppid, getpid());
	if (vs.ppid != parent)
		return zdtm_fail("the vfork child %d has parent %d, expected %d", sh->v, vs.ppid, parent);
	if (vs.pgrp != getpgrp() || vs.sid != getsid(0))
		return zdtm_fail("the vfork child %d is in group %d session %d, expected %d and %d",
				 sh->v, vs.pgrp, vs.sid, getpgrp(), getsid(0));
	return 0;
}

static int setup(void)
{
	int64_t end = now_ms() + 2000;
	int p[2];

	sh = zdtm_shmem(sizeof(*sh));
	if (!sh || pipe(p))
		return zdtm_err("shmem or pipe");
	parent = fork();
	if (parent < 0)
		return zdtm_err("fork");
	if (parent == 0) {
		close(p[1]);
		parent_main(p[0]);
	}
	close(p[0]);
	wfd = p[1];
	if (zdtm_sync_wait(&sh->v_ready, 1))
		return zdtm_fail("stopped before the vfork child was ready");
	while (check_shape(false)) {
		if (now_ms() > end)
			return check_shape(true) ? -1 : zdtm_fail("the vfork pair did not settle");
		usleep(1000);
	}
	return 0;
}

static int check(void)
{
	int64_t end = now_ms() + 1500;
	int status, rc;
	pid_t r;

	if (parent <= 0 || wfd < 0)
		return zdtm_fail("no vfork'ed task was made");
	rc = check_shape(true);
	signal(SIGPIPE, SIG_IGN);	/* a pipe without readers must fail the write, not kill us */
	if (write(wfd, "g", 1) != 1)
		rc = zdtm_err("release the vfork child through the pipe");
	while ((r = waitpid(parent, &status, WNOHANG)) == 0 && now_ms() < end)
		usleep(1000);
	if (r == 0) {
		kill(sh->v, SIGKILL);
		kill(parent, SIGKILL);
		waitpid(parent, &status, 0);
		return zdtm_fail("the vfork parent %d did not end once its child was released: killed", parent);
	}
	if (r < 0)
		return zdtm_err("waitpid(%d)", parent);
	if (status != 0)
		return zdtm_fail("the vfork parent %d ended with status 0x%x", parent, status);
	if (sh->v_saw_pid != sh->v || sh->v_saw_ppid != parent)
		return zdtm_fail("the vfork child saw pid %d parent %d, expected %d and %d",
				 sh->v_saw_pid, sh->v_saw_ppid, sh->v, parent);
	if (sh->p_vfork_ret != sh->v)
		return zdtm_fail("vfork() returned %d in the parent, expected the child's pid %d",
				 sh->p_vfork_ret, sh->v);
	if (sh->p_word != MARK_CHECK)
		return zdtm_fail("the parent sees word 0x%x after vfork(), expected 0x%x written by the child: they no longer share memory",
				 sh->p_word, MARK_CHECK);
	if (sh->p_vstatus != V_CODE << 8)
		return zdtm_fail("the vfork child ended with status 0x%x, expected exit %d",
				 sh->p_vstatus, V_CODE);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
