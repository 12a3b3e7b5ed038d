/* General-purpose registers survive C/R and signal delivery. Two threads run hand-written
 * assembly loops that load known 64-bit values into twelve registers and never write them
 * again until the loop ends:
 *   sleeper: blocks in futex(FUTEX_WAIT) (rdi/rsi/rdx/r10 are its arguments) and goes
 *            back to sleep after every return (EINTR, restart, spurious wake-up);
 *   spinner: spins on `pause` for a while, then nanosleep()s 1 ms (rdi/rsi its
 *            arguments; rdx and r10 hold values too), and again.
 * Setup interrupts both with SIGUSR1 several times; the handler trashes every
 * caller-saved register, so only a correct sigreturn gets the values back. The loops end
 * when the check sets the futex word; they then store rbx rbp r8 r9 r12-r15 rdi rsi rdx r10
 * and the stack pointer, and the check compares them with what was loaded. */
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define NREGS 12
#define SIGNALS 4

struct regs_out {
	uint64_t r[NREGS];	/* rbx rbp r8 r9 r12 r13 r14 r15 rdi rsi rdx r10 */
	uint64_t sp_before, sp_after;
};

static const char *const reg_names[NREGS] = {
	"rbx", "rbp", "r8", "r9", "r12", "r13", "r14", "r15", "rdi", "rsi", "rdx", "r10",
};

/* Shared with the assembly below (hence not static). */
uint32_t gp_word;			/* futex word: 1 ends both loops */
volatile uint32_t gp_sleeper_in, gp_spinner_in;
volatile uint64_t gp_wakes, gp_spins;
struct timespec gp_ts = { 0, 1000 * 1000 };

void gp_sleeper(struct regs_out *out);
void gp_spinner(struct regs_out *out);

#define SAVE_CALLEE	\
	"push %rbp\n push %rbx\n push %r12\n push %r13\n push %r14\n push %r15\n push %rdi\n"
#define RESTORE_CALLEE	\
	"pop %rdi\n pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbx\n pop %rbp\n ret\n"
/* at the end of a loop: out is at 0(%rsp) under one more push */
#define STORE_ALL							\
	"push %rax\n mov 8(%rsp), %rax\n"				\
	"mov %rbx, 0(%rax)\n mov %rbp, 8(%rax)\n mov %r8, 16(%rax)\n"	\
	"mov %r9, 24(%rax)\n mov %r12, 32(%rax)\n mov %r13, 40(%rax)\n"	\
	"mov %r14, 48(%rax)\n mov %r15, 56(%rax)\n mov %rdi, 64(%rax)\n"\
	"mov %rsi, 72(%rax)\n mov %rdx, 80(%rax)\n mov %r10, 88(%rax)\n"\
	"lea 8(%rsp), %rcx\n mov %rcx, 104(%rax)\n pop %rax\n"

asm(".pushsection .text\n"
    ".p2align 4\n"
    ".type gp_sleeper, @function\n"
    "gp_sleeper:\n"
    SAVE_CALLEE
    "mov %rsp, 96(%rdi)\n"
    "movabs $0x1111deadbeef0001, %rbx\n"
    "movabs $0x2222c0ffee000002, %rbp\n"
    "movabs $0x8888a5a5a5a50008, %r8\n"
    "movabs $0x99995a5a5a5a0009, %r9\n"
    "movabs $0xcccc123456780012, %r12\n"
    "movabs $0xdddd876543210013, %r13\n"
    "movabs $0xeeeefedcba980014, %r14\n"
    "movabs $0xffff0123456f0015, %r15\n"
    "lea gp_word(%rip), %rdi\n"
    "mov $128, %esi\n"			/* FUTEX_WAIT_PRIVATE */
    "xor %edx, %edx\n"			/* sleep while the word is 0 */
    "xor %r10d, %r10d\n"		/* no timeout */
    "movl $1, gp_sleeper_in(%rip)\n"
    "1: mov $202, %eax\n"		/* SYS_futex */
    "syscall\n"
    "lock incq gp_wakes(%rip)\n"
    "cmpl $0, (%rdi)\n"
    "je 1b\n"
    STORE_ALL
    RESTORE_CALLEE
    ".size gp_sleeper, .-gp_sleeper\n"

    ".p2align 4\n"
    ".type gp_spinner, @function\n"
    "gp_spinner:\n"
    SAVE_CALLEE
    "mov %rsp, 96(%rdi)\n"
    "movabs $0x0101010101010101, %rbx\n"
    "movabs $0x0202020202020202, %rbp\n"
    "movabs $0x0808080808080808, %r8\n"
    "movabs $0x0909090909090909, %r9\n"
    "movabs $0x1212121212121212, %r12\n"
    "movabs $0x1313131313131313, %r13\n"
    "movabs $0x1414141414141414, %r14\n"
    "movabs $0x1515151515151515, %r15\n"
    "movabs $0x0d0d0d0d0d0d0d0d, %rdx\n"
    "movabs $0x1010101010101010, %r10\n"
    "lea gp_ts(%rip), %rdi\n"
    "xor %esi, %esi\n"
    "movl $1, gp_spinner_in(%rip)\n"
    "2: mov $2000, %ecx\n"
    "3: pause\n"
    "dec %ecx\n"
    "jnz 3b\n"
    "lock incq gp_spins(%rip)\n"
    "cmpl $0, gp_word(%rip)\n"
    "jne 4f\n"
    "mov $35, %eax\n"			/* SYS_nanosleep */
    "syscall\n"
    "jmp 2b\n"
    "4:\n"
    STORE_ALL
    RESTORE_CALLEE
    ".size gp_spinner, .-gp_spinner\n"
    ".popsection\n");

struct worker {
	const char *name;
	void (*loop)(struct regs_out *);
	volatile uint32_t *in_loop;
	uint64_t want[NREGS];
	pthread_t th;
	pid_t tid;
	volatile uint32_t signals;
	struct regs_out out;
};

static struct worker workers[2] = {
	{ .name = "sleeper", .loop = gp_sleeper, .in_loop = &gp_sleeper_in, .want = {
		0x1111deadbeef0001, 0x2222c0ffee000002, 0x8888a5a5a5a50008, 0x99995a5a5a5a0009,
		0xcccc123456780012, 0xdddd876543210013, 0xeeeefedcba980014, 0xffff0123456f0015,
		0 /* &gp_word */, 128, 0, 0 } },
	{ .name = "spinner", .loop = gp_spinner, .in_loop = &gp_spinner_in, .want = {
		0x0101010101010101, 0x0202020202020202, 0x0808080808080808, 0x0909090909090909,
		0x1212121212121212, 0x1313131313131313, 0x1414141414141414, 0x1515151515151515,
		0 /* &gp_ts */, 0, 0x0d0d0d0d0d0d0d0d, 0x1010101010101010 } },
};
static bool started;

static void on_usr1(int sig)
{
	pid_t tid = zdtm_gettid();

	(void)sig;
	for (int i = 0; i < 2; i++)
		if (workers[i].tid == tid)
			workers[i].signals++;
	/* trash what the interrupted code may not expect to survive a call */
	asm volatile("mov $-1, %%rax\n mov $-1, %%rcx\n mov $-1, %%rdx\n mov $-1, %%rsi\n"
		     "mov $-1, %%rdi\n mov $-1, %%r8\n mov $-1, %%r9\n mov $-1, %%r10\n"
		     "mov $-1, %%r11\n"
		     ::: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	sigset_t set;

	sigfillset(&set);
	sigdelset(&set, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &set, NULL);	/* SIGTERM is the main thread's */
	w->tid = zdtm_gettid();
	w->loop(&w->out);
	return NULL;
}

static void pause_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };	/* no SA_RESTART: EINTR paths too */

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction");
	workers[0].want[8] = (uint64_t)(uintptr_t)&gp_word;
	workers[1].want[8] = (uint64_t)(uintptr_t)&gp_ts;
	for (int i = 0; i < 2; i++) {
		int e = pthread_create(&workers[i].th, NULL, worker_fn, &workers[i]);

		if (e) {
			errno = e;
			return zdtm_err("pthread_create");
		}
	}
	started = true;
	for (int i = 0; i < 2; i++) {
		struct worker *w = &workers[i];
		int waited = 0;

		while (!*w->in_loop || !w->tid) {
			if (++waited > 2000)
				return zdtm_fail("the %s did not enter its loop", w->name);
			pause_ms(1);
		}
		for (uint32_t n = 0; n < SIGNALS; n++) {
			if (syscall(SYS_tgkill, getpid(), w->tid, SIGUSR1))
				return zdtm_err("tgkill %s", w->name);
			for (waited = 0; w->signals <= n; pause_ms(1))
				if (++waited > 2000)
					return zdtm_fail("the %s did not handle signal %u", w->name,
							 n + 1);
		}
	}
	zdtm_msg("loops running: %llu futex returns, %llu spin rounds",
		 (unsigned long long)gp_wakes, (unsigned long long)gp_spins);
	return 0;
}

static int check(void)
{
	int rc = 0;

	if (!started)
		return zdtm_fail("no register loops: setup did not run");
	__atomic_store_n(&gp_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &gp_word, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
	for (int i = 0; i < 2; i++)
		pthread_join(workers[i].th, NULL);
	zdtm_msg("loops ended: %llu futex returns, %llu spin rounds",
		 (unsigned long long)gp_wakes, (unsigned long long)gp_spins);

	for (int i = 0; i < 2; i++) {
		struct worker *w = &workers[i];

		if (w->signals < SIGNALS)
			rc = zdtm_fail("%s: handled %u signals, sent %d", w->name, w->signals, SIGNALS);
		for (int r = 0; r < NREGS; r++)
			if (w->out.r[r] != w->want[r])
				rc = zdtm_fail("%s: %s is %#llx, expected %#llx", w->name, reg_names[r],
					       (unsigned long long)w->out.r[r],
					       (unsigned long long)w->want[r]);
		if (w->out.sp_after != w->out.sp_before)
			rc = zdtm_fail("%s: rsp is %#llx, expected %#llx", w->name,
				       (unsigned long long)w->out.sp_after,
				       (unsigned long long)w->out.sp_before);
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
