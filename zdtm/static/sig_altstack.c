/* Alternate signal stacks survive C/R per thread: the main thread's (flags 0), a second
 * thread's (SS_AUTODISARM) and a third thread without one. Each thread checks its
 * sigaltstack() settings and that an SA_ONSTACK handler runs on the right stack. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

#define MAIN_SZ (64 * 1024)
#define W_SZ (48 * 1024)

struct stk {
	const char *who;
	void *sp;		/* NULL: this thread has no alternate stack */
	size_t size;
	int flags;
	char err[300];
};

static struct stk stks[3] = {
	{ "main thread", NULL, MAIN_SZ, 0, "" },
	{ "thread 1", NULL, W_SZ, (int)SS_AUTODISARM, "" },
	{ "thread 2", NULL, 0, SS_DISABLE, "" },
};
static bool set_up;
static pthread_t th[2];
static volatile uint32_t ready, go, done;

/* What the handler saw, in the thread it ran on. */
static __thread volatile uintptr_t h_addr;
static __thread stack_t h_ss;
static __thread volatile int h_hits;

static void futex_wait(volatile uint32_t *w, uint32_t v)
{
	struct timespec ts = { .tv_nsec = 100000000 };

	syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, &ts, NULL, 0);
}

static void futex_wake(volatile uint32_t *w)
{
	syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 0x7fffffff, NULL, NULL, 0);
}

static void handler(int sig)
{
	volatile char here;

	(void)sig;
	h_addr = (uintptr_t)&here;
	sigaltstack(NULL, &h_ss);
	h_hits++;
}

static int on(uintptr_t a, const struct stk *s)
{
	return s->sp && a >= (uintptr_t)s->sp && a < (uintptr_t)s->sp + s->size;
}

/* Run in the thread owning s; the reason goes to s->err. */
static void check_stk(struct stk *s)
{
	stack_t ss;

	if (sigaltstack(NULL, &ss)) {
		snprintf(s->err, sizeof(s->err), "%s: sigaltstack: %s", s->who, strerror(errno));
		return;
	}
	if (s->flags == SS_DISABLE) {
		if (!(ss.ss_flags & SS_DISABLE)) {
			snprintf(s->err, sizeof(s->err), "%s: has an alternate stack %p size %zu "
				 "flags %#x, expected none", s->who, ss.ss_sp, ss.ss_size,
				 ss.ss_flags);
			return;
		}
	} else if (ss.ss_sp != s->sp || ss.ss_size != s->size || ss.ss_flags != s->flags) {
		snprintf(s->err, sizeof(s->err), "%s: alternate stack %p size %zu flags %#x, "
			 "expected %p size %zu flags %#x", s->who, ss.ss_sp, ss.ss_size,
			 ss.ss_flags, s->sp, s->size, s->flags);
		return;
	}

	h_hits = 0;
	if (syscall(SYS_tgkill, getpid(), zdtm_gettid(), SIGUSR1)) {
		snprintf(s->err, sizeof(s->err), "%s: tgkill: %s", s->who, strerror(errno));
		return;
	}
	if (h_hits != 1) {
		snprintf(s->err, sizeof(s->err), "%s: the handler ran %d times", s->who, h_hits);
		return;
	}
	for (int i = 0; i < 3; i++)
		if (&stks[i] != s && on(h_addr, &stks[i])) {
			snprintf(s->err, sizeof(s->err), "%s: the handler ran at %#lx, on the "
				 "alternate stack of %s", s->who, (unsigned long)h_addr,
				 stks[i].who);
			return;
		}
	if (s->flags == SS_DISABLE)
		return;
	if (!on(h_addr, s)) {
		snprintf(s->err, sizeof(s->err), "%s: the SA_ONSTACK handler ran at %#lx, not on "
			 "the alternate stack %p-%#lx", s->who, (unsigned long)h_addr, s->sp,
			 (unsigned long)s->sp + s->size);
		return;
	}
	/* In the handler: SS_ONSTACK, or, with SS_AUTODISARM, a disarmed stack. */
	if (s->flags == (int)SS_AUTODISARM ? !(h_ss.ss_flags & SS_DISABLE) :
					h_ss.ss_flags != SS_ONSTACK) {
		snprintf(s->err, sizeof(s->err), "%s: in the handler sigaltstack flags are %#x",
			 s->who, h_ss.ss_flags);
		return;
	}
	/* After the handler returned, the stack is armed again as it was. */
	sigaltstack(NULL, &ss);
	if (ss.ss_sp != s->sp || ss.ss_size != s->size || ss.ss_flags != s->flags)
		snprintf(s->err, sizeof(s->err), "%s: after the handler: stack %p size %zu "
			 "flags %#x", s->who, ss.ss_sp, ss.ss_size, ss.ss_flags);
}

static int set_stack(struct stk *s)
{
	stack_t ss = { .ss_sp = s->sp, .ss_size = s->size, .ss_flags = s->flags };

	if (s->flags == SS_DISABLE)
		return 0;
	return sigaltstack(&ss, NULL);
}

static void *worker(void *arg)
{
	struct stk *s = arg;

	if (set_stack(s))
		snprintf(s->err, sizeof(s->err), "%s: sigaltstack: %s", s->who, strerror(errno));
	__atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
	futex_wake(&ready);
	while (!__atomic_load_n(&go, __ATOMIC_SEQ_CST))
		futex_wait(&go, 0);
	check_stk(s);
	__atomic_add_fetch(&done, 1, __ATOMIC_SEQ_CST);
	futex_wake(&done);
	return NULL;
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_ONSTACK };

	for (int i = 0; i < 2; i++) {
		stks[i].sp = mmap(NULL, stks[i].size, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (stks[i].sp == MAP_FAILED)
			return zdtm_err("mmap %zu bytes", stks[i].size);
	}
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction");
	if (set_stack(&stks[0]))
		return zdtm_err("sigaltstack");
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, worker, &stks[i + 1]))
			return zdtm_fail("pthread_create");
	while (__atomic_load_n(&ready, __ATOMIC_SEQ_CST) < 2)
		futex_wait(&ready, __atomic_load_n(&ready, __ATOMIC_SEQ_CST));
	for (int i = 1; i < 3; i++)
		if (stks[i].err[0])
			return zdtm_fail("%s", stks[i].err);
	set_up = true;
	return 0;
}

static int check(void)
{
	stack_t ss;

	if (!set_up) {
		sigaltstack(NULL, &ss);
		return zdtm_fail("setup never ran: main thread alternate stack %p size %zu "
				 "flags %#x", ss.ss_sp, ss.ss_size, ss.ss_flags);
	}
	check_stk(&stks[0]);
	if (stks[0].err[0])
		return zdtm_fail("%s", stks[0].err);
	__atomic_store_n(&go, 1, __ATOMIC_SEQ_CST);
	futex_wake(&go);
	for (int i = 0; i < 15 && __atomic_load_n(&done, __ATOMIC_SEQ_CST) < 2; i++)
		futex_wait(&done, __atomic_load_n(&done, __ATOMIC_SEQ_CST));
	if (__atomic_load_n(&done, __ATOMIC_SEQ_CST) < 2)
		return zdtm_fail("only %u of 2 threads reported", done);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 1; i < 3; i++)
		if (stks[i].err[0])
			return zdtm_fail("%s", stks[i].err);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
