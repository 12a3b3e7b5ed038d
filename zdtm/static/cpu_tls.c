/* Thread-local storage survives C/R, per thread. The main thread and two threads each
 * write their own values into an initialized (.tdata) and a zeroed (.tbss) TLS variable
 * and point their GS base (ARCH_SET_GS, unused by glibc on x86-64) at a buffer of their
 * own. Each thread then checks that its FS base (ARCH_GET_FS, and rdfsbase when the CPU
 * allows it) is unchanged and is the thread pointer glibc uses (pthread_self(), the TCB
 * self-pointer at %fs:0), that its TLS variables are at the same addresses with the same
 * contents, and that its GS base is unchanged and %gs:0 reads its buffer. */
#include <asm/prctl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define NT 3		/* the main thread and two more */
#define BUF 512
#define HWCAP2_FSGSBASE (1 << 1)

static __thread uint64_t tls_init = 0x7d7d7d7d7d7d7d7dULL;	/* .tdata */
static __thread uint8_t tls_buf[BUF];				/* .tbss */

struct tinfo {
	pthread_t th;
	pid_t tid;
	unsigned long fs, gs;		/* bases after setup */
	void *addr_init, *addr_buf;	/* where the TLS variables were */
	uint64_t gs_area[8];		/* what GS points at */
	int rc;
};

static struct tinfo ti[NT];
static uint32_t started, release;
static bool ready;

static long arch_prctl(int code, unsigned long arg)
{
	return syscall(SYS_arch_prctl, code, arg);
}

static int tls_setup(int i)
{
	struct tinfo *t = &ti[i];

	t->tid = zdtm_gettid();
	tls_init ^= 0x1111111111111111ULL * (i + 1);
	zdtm_fill(tls_buf, BUF, 0x715 + i, 0);
	t->addr_init = &tls_init;
	t->addr_buf = tls_buf;
	zdtm_fill(t->gs_area, sizeof(t->gs_area), 0x65 + i, 0);
	if (arch_prctl(ARCH_SET_GS, (unsigned long)t->gs_area))
		return zdtm_err("thread %d: ARCH_SET_GS", i);
	if (arch_prctl(ARCH_GET_FS, (unsigned long)&t->fs) ||
	    arch_prctl(ARCH_GET_GS, (unsigned long)&t->gs))
		return zdtm_err("thread %d: ARCH_GET_FS/GS", i);
	if (t->gs != (unsigned long)t->gs_area)
		return zdtm_fail("thread %d: GS base %#lx right after setting %p", i, t->gs,
				 (void *)t->gs_area);
	return 0;
}

static int tls_check(int i)
{
	struct tinfo *t = &ti[i];
	unsigned long fs = 0, gs = 0, self, g0;
	uint64_t want = 0x7d7d7d7d7d7d7d7dULL ^ 0x1111111111111111ULL * (i + 1);
	ssize_t bad;

	if (arch_prctl(ARCH_GET_FS, (unsigned long)&fs) ||
	    arch_prctl(ARCH_GET_GS, (unsigned long)&gs))
		return zdtm_err("thread %d: ARCH_GET_FS/GS", i);
	if (fs != t->fs)
		return zdtm_fail("thread %d: FS base is %#lx, expected %#lx", i, fs, t->fs);
	if (gs != t->gs)
		return zdtm_fail("thread %d: GS base is %#lx, expected %#lx", i, gs, t->gs);
	if (getauxval(AT_HWCAP2) & HWCAP2_FSGSBASE) {
		unsigned long rfs, rgs;

		asm volatile("rdfsbase %0\n rdgsbase %1" : "=r"(rfs), "=r"(rgs));
		if (rfs != t->fs || rgs != t->gs)
			return zdtm_fail("thread %d: rdfsbase/rdgsbase give %#lx/%#lx, expected "
					 "%#lx/%#lx", i, rfs, rgs, t->fs, t->gs);
	}
	asm volatile("mov %%fs:0, %0" : "=r"(self));
	if (self != fs || (unsigned long)pthread_self() != fs)
		return zdtm_fail("thread %d: TCB self-pointer %#lx, pthread_self %#lx, FS base %#lx",
				 i, self, (unsigned long)pthread_self(), fs);
	asm volatile("mov %%gs:0, %0" : "=r"(g0));
	if (g0 != t->gs_area[0])
		return zdtm_fail("thread %d: %%gs:0 reads %#lx, its buffer starts with %#llx", i, g0,
				 (unsigned long long)t->gs_area[0]);
	if ((void *)&tls_init != t->addr_init || (void *)tls_buf != t->addr_buf)
		return zdtm_fail("thread %d: TLS variables moved: %p/%p, were %p/%p", i,
				 (void *)&tls_init, (void *)tls_buf, t->addr_init, t->addr_buf);
	if (tls_init != want)
		return zdtm_fail("thread %d: .tdata variable is %#llx, expected %#llx", i,
				 (unsigned long long)tls_init, (unsigned long long)want);
	bad = zdtm_verify(tls_buf, BUF, 0x715 + i, 0);
	if (bad >= 0)
		return zdtm_fail("thread %d: .tbss buffer differs at byte %zd", i, bad);
	return 0;
}

static void *thread_fn(void *arg)
{
	int i = (int)(intptr_t)arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);	/* SIGTERM is the main thread's */
	ti[i].rc = tls_setup(i);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &started, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (!__atomic_load_n(&release, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &release, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (!ti[i].rc)
		ti[i].rc = tls_check(i);
	return NULL;
}

static int setup(void)
{
	uint32_t n;

	if (tls_setup(0))
		return -1;
	for (int i = 1; i < NT; i++) {
		int e = pthread_create(&ti[i].th, NULL, thread_fn, (void *)(intptr_t)i);

		if (e) {
			errno = e;
			return zdtm_err("pthread_create");
		}
	}
	while ((n = __atomic_load_n(&started, __ATOMIC_SEQ_CST)) < NT - 1)
		syscall(SYS_futex, &started, FUTEX_WAIT_PRIVATE, n, NULL, NULL, 0);
	for (int i = 1; i < NT; i++)
		if (ti[i].rc)
			return -1;
	zdtm_msg("FS bases %#lx %#lx %#lx", ti[0].fs, ti[1].fs, ti[2].fs);
	ready = true;
	return 0;
}

static int check(void)
{
	int rc;

	if (!ready)
		return zdtm_fail("no TLS state: setup did not run");
	rc = tls_check(0);
	__atomic_store_n(&release, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &release, FUTEX_WAKE_PRIVATE, NT, NULL, NULL, 0);
	for (int i = 1; i < NT; i++) {
		pthread_join(ti[i].th, NULL);
		if (ti[i].rc)
			rc = -1;
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
