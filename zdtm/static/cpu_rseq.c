/* rseq registrations survive C/R, per thread:
 *   main thread: glibc's own registration (the area at the thread pointer + __rseq_offset,
 *                signature RSEQ_SIG);
 *   thread R:    glibc's registration replaced by one of its own: another area, another
 *                signature;
 *   thread U:    unregistered.
 * Each checks its state with the rseq syscall itself: registering the same area, length
 * and signature again gives EBUSY, a wrong signature EPERM (for U, registering works).
 * Registered threads then prove the kernel still serves the area: they scribble over
 * cpu_id, spin inside a restartable critical section until a signal arrives, and
 * must come out at the abort handler (which only works when the signature before it
 * matches the registration) with cpu_id rewritten to a valid CPU. The signal comes from
 * another thread, sent only once the spinning thread is inside the critical section. */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define MY_SIG 0x0badc0de

/* int rseq_spin_*(struct rseq *rs, volatile uint32_t *in_cs, volatile uint32_t *stop):
 * arm the critical section, spin in it until *stop; 0 = left normally, 1 = aborted. */
int rseq_spin_glibc(struct rseq *rs, volatile uint32_t *in_cs, volatile uint32_t *stop);
int rseq_spin_mine(struct rseq *rs, volatile uint32_t *in_cs, volatile uint32_t *stop);

#define SPIN_FN(name, sig)							\
	".pushsection .data\n .p2align 5\n" name "_cs:\n"			\
	".long 0, 0\n .quad " name "_start\n"					\
	".quad " name "_end - " name "_start\n .quad " name "_abort\n"		\
	".popsection\n .pushsection .text\n .p2align 4\n"			\
	".type " name ", @function\n" name ":\n"				\
	"lea " name "_cs(%rip), %rax\n mov %rax, 8(%rdi)\n"			\
	name "_start:\n movl $1, (%rsi)\n"					\
	"1: pause\n cmpl $0, (%rdx)\n je 1b\n"					\
	name "_end:\n movq $0, 8(%rdi)\n xor %eax, %eax\n ret\n"		\
	".long " #sig "\n"							\
	name "_abort:\n movq $0, 8(%rdi)\n mov $1, %eax\n ret\n"		\
	".size " name ", .-" name "\n .popsection\n"

#define SPIN(name, sig) SPIN_FN(name, sig)
asm(SPIN("rseq_spin_glibc", 0x53053053) SPIN("rseq_spin_mine", 0x0badc0de));
_Static_assert(RSEQ_SIG == 0x53053053 && MY_SIG == 0x0badc0de, "signatures are hard-coded above");

struct tstate {
	struct rseq *area;	/* the registered (or, for U, glibc's unregistered) area */
	uint32_t len, sig;
	bool registered;
	pid_t tid;
	int rc;
};

static struct rseq my_area __attribute__((aligned(32)));
static struct tstate main_t, r_t, u_t;
static pthread_t r_th, u_th;
static uint32_t started, release;
static bool ready;
static long ncpus;
static volatile uint32_t sig_stop, sig_in_cs;

static long sys_rseq(void *area, uint32_t len, int flags, uint32_t sig)
{
	return syscall(__NR_rseq, area, len, flags, sig);
}

static struct rseq *glibc_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

static void on_usr1(int sig)
{
	(void)sig;
	sig_stop = 1;
}

/* Registered with (area, len, sig)? EBUSY says yes, EPERM for another signature. */
static int check_registered(const char *who, struct tstate *t)
{
	long r;

	errno = 0;
	r = sys_rseq(t->area, t->len, 0, t->sig);
	if (r == 0) {
		sys_rseq(t->area, t->len, RSEQ_FLAG_UNREGISTER, t->sig);
		return zdtm_fail("%s: area %p was not registered (a new registration worked)", who,
				 (void *)t->area);
	}
	if (errno != EBUSY)
		return zdtm_fail("%s: re-registering %p/%u/%#x gave %s, not EBUSY: registered "
				 "elsewhere or with another length", who, (void *)t->area, t->len,
				 t->sig, strerror(errno));
	r = sys_rseq(t->area, t->len, 0, t->sig ^ 1);
	if (r == 0 || errno != EPERM)
		return zdtm_fail("%s: a wrong signature gave %s, not EPERM: registered with another "
				 "signature", who, r == 0 ? "success" : strerror(errno));
	return 0;
}

/* Sends SIGUSR1 to the thread once it is inside its critical section. */
static void *kicker(void *arg)
{
	pid_t tid = (pid_t)(intptr_t)arg;

	for (int i = 0; i < 5000 && !sig_in_cs; i++)
		usleep(1000);
	syscall(SYS_tgkill, getpid(), tid, SIGUSR1);
	return NULL;
}

/* Scribble over cpu_id, spin in the critical section until a signal comes in. */
static int check_abort(const char *who, struct tstate *t)
{
	pthread_t k;
	uint32_t cpu;
	int aborted;

	sig_stop = 0;
	sig_in_cs = 0;
	t->area->cpu_id = 0xdead;
	errno = pthread_create(&k, NULL, kicker, (void *)(intptr_t)zdtm_gettid());
	if (errno)
		return zdtm_err("%s: start the signal sender", who);
	if (t->sig == RSEQ_SIG)
		aborted = rseq_spin_glibc(t->area, &sig_in_cs, &sig_stop);
	else
		aborted = rseq_spin_mine(t->area, &sig_in_cs, &sig_stop);
	pthread_join(k, NULL);	/* an abort by preemption may come before the signal */
	while (!sig_stop)
		sched_yield();
	if (!aborted)
		return zdtm_fail("%s: a signal inside the critical section did not abort it: the "
				 "kernel does not know the area %p", who, (void *)t->area);
	cpu = __atomic_load_n(&t->area->cpu_id, __ATOMIC_RELAXED);
	if (cpu >= (uint32_t)ncpus)
		return zdtm_fail("%s: cpu_id is %#x after the signal, not a CPU below %ld", who, cpu,
				 ncpus);
	return 0;
}

static int check_state(const char *who, struct tstate *t)
{
	int32_t cpu;

	if (t->registered) {
		cpu = (int32_t)t->area->cpu_id;
		if (cpu < 0 || cpu >= ncpus)
			return zdtm_fail("%s: cpu_id is %d", who, cpu);
		if (check_registered(who, t) || check_abort(who, t))
			return -1;
		return 0;
	}
	/* unregistered: the kernel left RSEQ_CPU_ID_UNINITIALIZED, and a registration works */
	cpu = (int32_t)t->area->cpu_id;
	if (cpu != RSEQ_CPU_ID_UNINITIALIZED)
		return zdtm_fail("%s: cpu_id of the unregistered area is %d, expected %d: the kernel "
				 "updates it", who, cpu, RSEQ_CPU_ID_UNINITIALIZED);
	if (sys_rseq(t->area, t->len, 0, t->sig))
		return zdtm_err("%s: registering the unregistered area %p", who, (void *)t->area);
	sys_rseq(t->area, t->len, RSEQ_FLAG_UNREGISTER, t->sig);
	return 0;
}

static int thread_setup(struct tstate *t, bool own)
{
	t->tid = zdtm_gettid();
	t->area = glibc_area();
	t->len = main_t.len;
	t->sig = RSEQ_SIG;
	if (sys_rseq(t->area, t->len, RSEQ_FLAG_UNREGISTER, t->sig))
		return zdtm_err("unregister glibc's rseq area in thread %d", t->tid);
	if (!own)
		return 0;
	t->area = &my_area;
	t->len = sizeof(my_area);
	t->sig = MY_SIG;
	my_area.cpu_id = RSEQ_CPU_ID_UNINITIALIZED;
	if (sys_rseq(t->area, t->len, 0, t->sig))
		return zdtm_err("register an own rseq area in thread %d", t->tid);
	t->registered = true;
	return 0;
}

static void *thread_fn(void *arg)
{
	struct tstate *t = arg;
	bool own = t == &r_t;
	sigset_t set;

	sigfillset(&set);
	sigdelset(&set, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &set, NULL);	/* SIGTERM is the main thread's */
	t->rc = thread_setup(t, own);
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &started, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	while (!__atomic_load_n(&release, __ATOMIC_SEQ_CST))
		syscall(SYS_futex, &release, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	if (!t->rc)
		t->rc = check_state(own ? "thread R (own area)" : "thread U (unregistered)", t);
	return NULL;
}

static int setup(void)
{
	static const uint32_t lens[] = { 32, 0 };
	struct sigaction sa = { .sa_handler = on_usr1 };
	uint32_t n;

	ncpus = sysconf(_SC_NPROCESSORS_CONF);
	if (__rseq_size == 0 || (int32_t)glibc_area()->cpu_id < 0)
		return zdtm_fail("glibc did not register rseq (size %u, cpu_id %d): disabled by "
				 "GLIBC_TUNABLES?", __rseq_size, (int32_t)glibc_area()->cpu_id);
	main_t.area = glibc_area();
	main_t.sig = RSEQ_SIG;
	main_t.registered = true;
	main_t.tid = zdtm_gettid();
	for (int i = 0; i < 2 && !main_t.len; i++) {
		uint32_t len = lens[i] ? lens[i] : __rseq_size;

		if (sys_rseq(main_t.area, len, 0, RSEQ_SIG) < 0 && errno == EBUSY)
			main_t.len = len;
	}
	if (!main_t.len)
		return zdtm_fail("cannot tell the length glibc registered (__rseq_size %u)",
				 __rseq_size);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction");
	if ((errno = pthread_create(&r_th, NULL, thread_fn, &r_t)) ||
	    (errno = pthread_create(&u_th, NULL, thread_fn, &u_t)))
		return zdtm_err("pthread_create");
	while ((n = __atomic_load_n(&started, __ATOMIC_SEQ_CST)) < 2)
		syscall(SYS_futex, &started, FUTEX_WAIT_PRIVATE, n, NULL, NULL, 0);
	if (r_t.rc || u_t.rc)
		return -1;
	zdtm_msg("main: glibc area %p len %u; R: %p sig %#x; U: unregistered %p",
		 (void *)main_t.area, main_t.len, (void *)r_t.area, r_t.sig, (void *)u_t.area);
	ready = true;
	return 0;
}

static int check(void)
{
	int rc;

	if (!ready)
		return zdtm_fail("no rseq state: setup did not run");
	rc = check_state("main thread (glibc area)", &main_t);
	__atomic_store_n(&release, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &release, FUTEX_WAKE_PRIVATE, 2, NULL, NULL, 0);
	pthread_join(r_th, NULL);
	pthread_join(u_th, NULL);
	if (r_t.rc || u_t.rc)
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
