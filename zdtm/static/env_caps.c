/* Capability sets survive C/R, per thread. The main thread drops CAP_SYS_MODULE,
 * CAP_SYS_BOOT, CAP_MKNOD and CAP_WAKE_ALARM from its bounding set and permitted set,
 * CAP_SYS_TIME from permitted only, keeps CAP_NET_RAW and CAP_SYS_NICE permitted but not
 * effective, makes CAP_CHOWN, CAP_KILL and CAP_NET_BIND_SERVICE inheritable and the last
 * two ambient. A second thread has its own effective set without CAP_DAC_OVERRIDE and
 * CAP_DAC_READ_SEARCH. Checked with capget(), PR_CAPBSET_READ, PR_CAP_AMBIENT_IS_SET and
 * the Cap* lines of /proc/self/task/TID/status, and by effect: mknod fails, a raw socket
 * fails until CAP_NET_RAW is raised from the permitted set, and only the main thread may
 * open a mode-0000 file. */
#include <linux/capability.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

#include "zdtm.h"

#define BIT(c) (1ULL << (c))

#define BSET_DROP (BIT(CAP_SYS_MODULE) | BIT(CAP_SYS_BOOT) | BIT(CAP_MKNOD) | BIT(CAP_WAKE_ALARM))
#define PRM_DROP (BSET_DROP | BIT(CAP_SYS_TIME))
#define EFF_DROP (PRM_DROP | BIT(CAP_NET_RAW) | BIT(CAP_SYS_NICE))
#define INH_SET (BIT(CAP_CHOWN) | BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE))
#define AMB_SET (BIT(CAP_KILL) | BIT(CAP_NET_BIND_SERVICE))
#define THREAD_EFF_DROP (EFF_DROP | BIT(CAP_DAC_OVERRIDE) | BIT(CAP_DAC_READ_SEARCH))

struct capsets {
	uint64_t inh, prm, eff, bnd, amb;
};

static struct capsets main_want, thread_want;
static bool main_set;
static pid_t thread_tid;
static pthread_t thread;
static uint32_t thread_state;	/* 1: caps set, 2: released by check */
static int thread_rc = -1;

static int capget2(pid_t tid, uint64_t *inh, uint64_t *prm, uint64_t *eff)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = tid };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	*inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	*prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	*eff = d[0].effective | (uint64_t)d[1].effective << 32;
	return 0;
}

/* capset for the calling thread only (the raw syscall, not a process-wide wrapper) */
static int capset2(uint64_t inh, uint64_t prm, uint64_t eff)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2] = {
		{ .effective = (uint32_t)eff, .permitted = (uint32_t)prm,
		  .inheritable = (uint32_t)inh },
		{ .effective = eff >> 32, .permitted = prm >> 32, .inheritable = inh >> 32 },
	};

	return syscall(SYS_capset, &h, d);
}

static int status_caps(pid_t tid, const char *field, uint64_t want, const char *who)
{
	char path[64], buf[8192], *p;
	unsigned long long v;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("%s: read %s", who, path);
	p = strstr(buf, field);
	if (!p || sscanf(p + strlen(field), ":%llx", &v) != 1)
		return zdtm_fail("%s: no %s line in %s", who, field, path);
	if (v != want)
		return zdtm_fail("%s: %s is %016llx, expected %016llx (differs in %#llx)", who, field,
				 v, (unsigned long long)want, v ^ (unsigned long long)want);
	return 0;
}

/* Everything visible about one thread's capabilities, from the thread itself. */
static int verify_self(const struct capsets *w, const char *who)
{
	uint64_t inh, prm, eff;
	pid_t tid = zdtm_gettid();
	int last = 0;
	char buf[16];

	if (capget2(tid, &inh, &prm, &eff))
		return zdtm_err("%s: capget", who);
	if (inh != w->inh || prm != w->prm || eff != w->eff)
		return zdtm_fail("%s: capget gives inh %#llx prm %#llx eff %#llx, expected "
				 "%#llx %#llx %#llx", who, (unsigned long long)inh,
				 (unsigned long long)prm, (unsigned long long)eff,
				 (unsigned long long)w->inh, (unsigned long long)w->prm,
				 (unsigned long long)w->eff);
	if (status_caps(tid, "CapInh", w->inh, who) || status_caps(tid, "CapPrm", w->prm, who) ||
	    status_caps(tid, "CapEff", w->eff, who) || status_caps(tid, "CapBnd", w->bnd, who) ||
	    status_caps(tid, "CapAmb", w->amb, who))
		return -1;
	if (zdtm_read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof(buf)) > 0)
		last = atoi(buf);
	for (int c = 0; c <= last && c < 64; c++) {
		int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		int a = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);

		if (b != !!(w->bnd & BIT(c)))
			return zdtm_fail("%s: PR_CAPBSET_READ(%d) is %d", who, c, b);
		if (a != !!(w->amb & BIT(c)))
			return zdtm_fail("%s: PR_CAP_AMBIENT_IS_SET(%d) is %d", who, c, a);
	}
	return 0;
}

static int can_open_noperm(void)
{
	int fd = open("noperm", O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

static void *thread_fn(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);	/* SIGTERM is the main thread's */
	thread_tid = zdtm_gettid();
	if (capset2(thread_want.inh, thread_want.prm, thread_want.eff))
		zdtm_err("thread: capset");
	__atomic_store_n(&thread_state, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &thread_state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (__atomic_load_n(&thread_state, __ATOMIC_SEQ_CST) != 2)
		syscall(SYS_futex, &thread_state, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
	if (verify_self(&thread_want, "thread"))
		return NULL;
	if (can_open_noperm())
		zdtm_fail("thread: opened a mode-0000 file without CAP_DAC_OVERRIDE");
	else
		thread_rc = 0;
	return NULL;
}

static int setup(void)
{
	uint64_t inh, prm, eff, need;
	int fd, e;

	if (capget2(0, &inh, &prm, &eff))
		return zdtm_err("capget");
	need = PRM_DROP | INH_SET | BIT(CAP_SETPCAP);
	if ((prm & need) != need)
		return zdtm_fail("the test needs CAP_SETPCAP and the caps it drops (CapPrm %#llx)",
				 (unsigned long long)prm);
	for (int c = 0; c < 64; c++)
		if ((BSET_DROP & BIT(c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0))
			return zdtm_err("PR_CAPBSET_DROP %d", c);
	main_want.inh = INH_SET;
	main_want.prm = prm & ~PRM_DROP;
	main_want.eff = prm & ~EFF_DROP;
	if (capset2(main_want.inh, main_want.prm, main_want.eff))
		return zdtm_err("capset");
	for (int c = 0; c < 64; c++)
		if ((AMB_SET & BIT(c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0))
			return zdtm_err("PR_CAP_AMBIENT_RAISE %d", c);
	main_want.amb = AMB_SET;
	main_want.bnd = 0;
	for (int c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)
			main_want.bnd |= BIT(c);
	if (main_want.bnd & BSET_DROP)
		return zdtm_fail("bounding set %#llx still has dropped caps",
				 (unsigned long long)main_want.bnd);

	fd = open("noperm", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return zdtm_err("create noperm");
	close(fd);

	thread_want = main_want;
	thread_want.eff = prm & ~THREAD_EFF_DROP;
	e = pthread_create(&thread, NULL, thread_fn, NULL);
	if (e) {
		errno = e;
		return zdtm_err("pthread_create");
	}
	while (__atomic_load_n(&thread_state, __ATOMIC_SEQ_CST) == 0)
		syscall(SYS_futex, &thread_state, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (zdtm_failed())
		return -1;
	main_set = true;
	return 0;
}

static int check(void)
{
	int rc = 0, s;

	if (!main_set)
		return zdtm_fail("capabilities never changed: setup did not run");
	if (status_caps(thread_tid, "CapEff", thread_want.eff, "thread seen by main"))
		rc = -1;
	/* the thread checks itself */
	__atomic_store_n(&thread_state, 2, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &thread_state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	pthread_join(thread, NULL);
	if (thread_rc)
		rc = -1;
	if (verify_self(&main_want, "main thread"))
		return -1;

	if (!can_open_noperm())
		rc = zdtm_err("main thread: cannot open a mode-0000 file with CAP_DAC_OVERRIDE");
	if (mknod("node", S_IFCHR | 0600, makedev(1, 3)) == 0 || errno != EPERM)
		rc = zdtm_fail("mknod without CAP_MKNOD did not fail with EPERM (%s)",
			       strerror(errno));
	s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (s >= 0 || errno != EPERM)
		rc = zdtm_fail("a raw socket with CAP_NET_RAW not effective gave %d (%s)", s,
			       strerror(errno));
	if (s >= 0)
		close(s);
	/* CAP_NET_RAW is still permitted: raising it makes raw sockets work */
	if (capset2(main_want.inh, main_want.prm, main_want.eff | BIT(CAP_NET_RAW)))
		return zdtm_err("capset: raise CAP_NET_RAW from the permitted set");
	s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (s < 0)
		rc = zdtm_err("a raw socket after raising CAP_NET_RAW");
	else
		close(s);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
