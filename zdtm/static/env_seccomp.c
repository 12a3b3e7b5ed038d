/* Seccomp filters survive C/R, per thread, with their programs intact.
 *   filter A: getpriority() fails with EBADFD
 *   filter B: getpgid(4242) fails with EDOM (an argument test; other getpgid calls pass)
 *   filter C: getpriority() fails with ENOTUNIQ
 * The main thread installs A, starts a thread (which inherits A only), then installs B;
 * a child forked before any of them installs C. Each task checks the Seccomp and
 * Seccomp_filters lines of its /proc status and runs the calls to see each filter act. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define ERR_A EBADFD
#define ERR_B EDOM
#define ERR_C ENOTUNIQ
#define MAGIC_PGID 4242

#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARCH BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))
#define LD_ARG0_LO BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]))
#define LD_ARG0_HI BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4)
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static struct sock_filter filter_a[] = {
	LD_ARCH,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_NR,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
	RET(SECCOMP_RET_ERRNO | ERR_A),
	RET(SECCOMP_RET_ALLOW),
};

static struct sock_filter filter_b[] = {
	LD_ARCH,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_NR,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_ARG0_HI,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_ARG0_LO,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MAGIC_PGID, 0, 1),
	RET(SECCOMP_RET_ERRNO | ERR_B),
	RET(SECCOMP_RET_ALLOW),
};

static struct sock_filter filter_c[] = {
	LD_ARCH,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_NR,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
	RET(SECCOMP_RET_ERRNO | ERR_C),
	RET(SECCOMP_RET_ALLOW),
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static bool main_set;
static pid_t child;
static pthread_t thread;
static uint32_t thread_state;	/* 1: running, 2: released by check */
static int thread_rc = -1;

static int install(struct sock_filter *f, unsigned short len, const char *name)
{
	struct sock_fprog prog = { .len = len, .filter = f };

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		return zdtm_err("install seccomp filter %s", name);
	return 0;
}

static int status_field(const char *who, const char *field, int want)
{
	char path[64], buf[8192], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", zdtm_gettid());
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read %s", who, path);
	p = strstr(buf, field);
	if (!p || p[strlen(field)] != ':')
		return zdtm_fail("%s: no %s line in %s", who, field, path);
	if (atoi(p + strlen(field) + 1) != want)
		return zdtm_fail("%s: %s is %d, expected %d", who, field,
				 atoi(p + strlen(field) + 1), want);
	return 0;
}

/* The calls as each filter set should answer them. err_prio: errno of getpriority (0: it
 * works); magic_filtered: getpgid(MAGIC_PGID) fails with ERR_B. */
static int verify(const char *who, int nfilters, int err_prio, bool magic_filtered)
{
	long r;

	if (status_field(who, "Seccomp", 2) || status_field(who, "Seccomp_filters", nfilters))
		return -1;
	errno = 0;
	r = syscall(SYS_getpriority, PRIO_PROCESS, 0);
	if (err_prio ? (r != -1 || errno != err_prio) : r < 0)
		return zdtm_fail("%s: getpriority gave %ld (%s), expected %s", who, r, strerror(errno),
				 err_prio ? strerror(err_prio) : "success");
	errno = 0;
	r = syscall(SYS_getpgid, MAGIC_PGID);
	if (magic_filtered ? (r != -1 || errno != ERR_B) : (r == -1 && errno == ERR_B))
		return zdtm_fail("%s: getpgid(%d) gave %ld (%s), filter B %s", who, MAGIC_PGID, r,
				 strerror(errno), magic_filtered ? "should refuse it" : "is not ours");
	r = syscall(SYS_getpgid, 0);
	if (r != getpgrp())
		return zdtm_fail("%s: getpgid(0) gave %ld (%s), expected %d", who, r, strerror(errno),
				 getpgrp());
	return 0;
}

static void *thread_fn(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);	/* SIGTERM is the main thread's */
	__atomic_store_n(&thread_state, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &thread_state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (__atomic_load_n(&thread_state, __ATOMIC_SEQ_CST) != 2)
		syscall(SYS_futex, &thread_state, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
	thread_rc = verify("thread (filter A)", 1, ERR_A, false);
	return NULL;
}

static int c_setup(void *arg)
{
	(void)arg;
	return install(filter_c, N(filter_c), "C");
}

static int c_check(void *arg)
{
	(void)arg;
	return verify("child (filter C)", 1, ERR_C, false);
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = c_setup, .check = c_check };
	int e;

	child = zdtm_child(&t);
	if (child <= 0)
		return -1;
	if (install(filter_a, N(filter_a), "A"))
		return -1;
	e = pthread_create(&thread, NULL, thread_fn, NULL);
	if (e) {
		errno = e;
		return zdtm_err("pthread_create");
	}
	while (__atomic_load_n(&thread_state, __ATOMIC_SEQ_CST) == 0)
		syscall(SYS_futex, &thread_state, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (install(filter_b, N(filter_b), "B"))
		return -1;
	main_set = true;
	return 0;
}

static int check(void)
{
	int rc = 0;

	if (!main_set)
		return zdtm_fail("no seccomp filters installed: setup did not run");
	if (verify("main thread (filters A+B)", 2, ERR_A, true))
		rc = -1;
	__atomic_store_n(&thread_state, 2, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &thread_state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(thread, NULL);
	if (thread_rc)
		rc = -1;
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
