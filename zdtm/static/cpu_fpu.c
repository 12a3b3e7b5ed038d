/* FPU/SSE/AVX register state survives C/R and signal delivery. Two threads, each with its
 * own values, load the x87 control word, eight x87 registers (normal numbers, a zero and
 * an infinity, so the tag word has all kinds), MXCSR (round up, flush-to-zero, DAZ) and
 * xmm0-15, or with --avx=1 the full ymm0-15, then sleep in futex(FUTEX_WAIT) from
 * assembly without touching them. Setup interrupts both with SIGUSR1 several times; the
 * handler resets the x87 unit and overwrites every vector register. When the check wakes
 * them, they store everything back (and the x87 environment: control, status and tag
 * words) and the check compares it with what was loaded.
 * --avx=1 needs a CPU and kernel with AVX enabled (the spec says needs: [avx]); with the
 * default --avx=0 only x87 and SSE state is held. */
#include <cpuid.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "zdtm.h"

#define FCW 0x067f	/* all exceptions masked, double precision, round down */
#define MXCSR 0xdfc0	/* all masked, round up, flush-to-zero, denormals-are-zero */

/* Offsets are used by the assembly below. */
struct fpu_area {
	uint8_t x87_in[8][16];		/*    0: 80-bit values, loaded in this order */
	uint8_t x87_out[8][16];		/*  128: popped: out[i] is in[7 - i] */
	uint8_t vec_in[16][32];		/*  256: ymm (or xmm: first 16 bytes) i */
	uint8_t vec_out[16][32];	/*  768 */
	uint32_t mxcsr_in;		/* 1280 */
	uint32_t mxcsr_out;		/* 1284 */
	uint16_t fcw_in;		/* 1288 */
	uint16_t env_before[14];	/* 1290: fnstenv after loading (28 bytes) */
	uint16_t env_after[14];		/* 1318: fnstenv after the sleep */
	uint32_t ready;			/* 1348 */
} __attribute__((aligned(64)));

_Static_assert(offsetof(struct fpu_area, vec_out) == 768, "layout");
_Static_assert(offsetof(struct fpu_area, mxcsr_in) == 1280, "layout");
_Static_assert(offsetof(struct fpu_area, env_before) == 1290, "layout");
_Static_assert(offsetof(struct fpu_area, env_after) == 1318, "layout");
_Static_assert(offsetof(struct fpu_area, ready) == 1348, "layout");

uint32_t fpu_word;		/* futex word: 1 ends the sleep; shared with the assembly */
uint32_t fpu_mxcsr_default = 0x1f80;

void fpu_hold_sse(struct fpu_area *a);
void fpu_hold_avx(struct fpu_area *a);

#define X87_LOAD							\
	"fldcw 1288(%rbx)\n ldmxcsr 1280(%rbx)\n"			\
	"fldt 0(%rbx)\n fldt 16(%rbx)\n fldt 32(%rbx)\n fldt 48(%rbx)\n"\
	"fldt 64(%rbx)\n fldt 80(%rbx)\n fldt 96(%rbx)\n fldt 112(%rbx)\n" \
	"fnstenv 1290(%rbx)\n"
#define SLEEP								\
	"movl $1, 1348(%rbx)\n"						\
	"lea fpu_word(%rip), %rdi\n mov $128, %esi\n"			\
	"xor %edx, %edx\n xor %r10d, %r10d\n"				\
	"1: mov $202, %eax\n syscall\n cmpl $0, (%rdi)\n je 1b\n"
#define X87_STORE							\
	"fnstenv 1318(%rbx)\n stmxcsr 1284(%rbx)\n"			\
	"fstpt 128(%rbx)\n fstpt 144(%rbx)\n fstpt 160(%rbx)\n fstpt 176(%rbx)\n" \
	"fstpt 192(%rbx)\n fstpt 208(%rbx)\n fstpt 224(%rbx)\n fstpt 240(%rbx)\n" \
	"fninit\n ldmxcsr fpu_mxcsr_default(%rip)\n"
#define VEC(op, r, i, o) op " " #o "(%rbx), %" r #i "\n"
#define VEC_ALL(op, r, base)						\
	VEC(op, r, 0, base + 0) VEC(op, r, 1, base + 32) VEC(op, r, 2, base + 64) \
	VEC(op, r, 3, base + 96) VEC(op, r, 4, base + 128) VEC(op, r, 5, base + 160) \
	VEC(op, r, 6, base + 192) VEC(op, r, 7, base + 224) VEC(op, r, 8, base + 256) \
	VEC(op, r, 9, base + 288) VEC(op, r, 10, base + 320) VEC(op, r, 11, base + 352) \
	VEC(op, r, 12, base + 384) VEC(op, r, 13, base + 416) VEC(op, r, 14, base + 448) \
	VEC(op, r, 15, base + 480)
#define VSTORE(op, r, i, o) op " %" r #i ", " #o "(%rbx)\n"
#define VSTORE_ALL(op, r, base)						\
	VSTORE(op, r, 0, base + 0) VSTORE(op, r, 1, base + 32) VSTORE(op, r, 2, base + 64) \
	VSTORE(op, r, 3, base + 96) VSTORE(op, r, 4, base + 128) VSTORE(op, r, 5, base + 160) \
	VSTORE(op, r, 6, base + 192) VSTORE(op, r, 7, base + 224) VSTORE(op, r, 8, base + 256) \
	VSTORE(op, r, 9, base + 288) VSTORE(op, r, 10, base + 320) VSTORE(op, r, 11, base + 352) \
	VSTORE(op, r, 12, base + 384) VSTORE(op, r, 13, base + 416) VSTORE(op, r, 14, base + 448) \
	VSTORE(op, r, 15, base + 480)

asm(".pushsection .text\n"
    ".p2align 4\n"
    ".type fpu_hold_sse, @function\n"
    "fpu_hold_sse:\n"
    "push %rbx\n mov %rdi, %rbx\n"
    X87_LOAD
    VEC_ALL("movdqu", "xmm", 256)
    SLEEP
    VSTORE_ALL("movdqu", "xmm", 768)
    X87_STORE
    "pop %rbx\n ret\n"
    ".size fpu_hold_sse, .-fpu_hold_sse\n"

    ".p2align 4\n"
    ".type fpu_hold_avx, @function\n"
    "fpu_hold_avx:\n"
    "push %rbx\n mov %rdi, %rbx\n"
    X87_LOAD
    VEC_ALL("vmovdqu", "ymm", 256)
    SLEEP
    VSTORE_ALL("vmovdqu", "ymm", 768)
    X87_STORE
    "vzeroupper\n"
    "pop %rbx\n ret\n"
    ".size fpu_hold_avx, .-fpu_hold_avx\n"
    ".popsection\n");

struct worker {
	struct fpu_area a;
	pthread_t th;
	pid_t tid;
	volatile uint32_t signals;
};

#define NW 2
#define SIGNALS 3

static struct worker workers[NW];
static bool use_avx, started;
static size_t vec_len = 16;

static bool cpu_has_avx(void)
{
	unsigned int a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_AVX) || !(c & bit_OSXSAVE))
		return false;
	asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 6) == 6;	/* the OS saves SSE and AVX state */
}

static void on_usr1(int sig)
{
	pid_t tid = zdtm_gettid();
	volatile double x = 1.0;

	(void)sig;
	for (int i = 0; i < NW; i++)
		if (workers[i].tid == tid)
			workers[i].signals++;
	for (int i = 0; i < 10; i++)
		x = x * 1.0000001 + 0.5;
	asm volatile("fninit\n fld1\n fldpi\n fldz\n"
		     "pcmpeqd %%xmm0, %%xmm0\n movdqa %%xmm0, %%xmm1\n movdqa %%xmm0, %%xmm2\n"
		     "movdqa %%xmm0, %%xmm3\n movdqa %%xmm0, %%xmm4\n movdqa %%xmm0, %%xmm5\n"
		     "movdqa %%xmm0, %%xmm6\n movdqa %%xmm0, %%xmm7\n movdqa %%xmm0, %%xmm8\n"
		     "movdqa %%xmm0, %%xmm9\n movdqa %%xmm0, %%xmm10\n movdqa %%xmm0, %%xmm11\n"
		     "movdqa %%xmm0, %%xmm12\n movdqa %%xmm0, %%xmm13\n movdqa %%xmm0, %%xmm14\n"
		     "movdqa %%xmm0, %%xmm15\n fninit\n"
		     ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
		     "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory");
	if (use_avx)	/* the upper halves too */
		asm volatile("vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n vmovdqa %%ymm0, %%ymm7\n"
			     "vmovdqa %%ymm0, %%ymm15\n vzeroupper\n"
			     ::: "xmm0", "xmm7", "xmm15", "memory");
	(void)x;
}

/* An 80-bit extended value: sign, 15-bit exponent, 64-bit mantissa with the integer bit. */
static void make_x87(uint8_t *out, uint64_t mant, uint16_t sign_exp)
{
	memset(out, 0, 16);
	memcpy(out, &mant, 8);
	memcpy(out + 8, &sign_exp, 2);
}

static void fill(struct fpu_area *a, int seed)
{
	uint64_t r[8];

	zdtm_fill(r, sizeof(r), 0xf9 + seed, 0);
	for (int i = 0; i < 8; i++) {
		uint16_t exp = 0x3fff + (int)(r[i] >> 56) - 128;

		make_x87(a->x87_in[i], r[i] | (1ULL << 63), exp | (i & 1) << 15);
	}
	make_x87(a->x87_in[2], 0, 0);			/* +0 */
	make_x87(a->x87_in[5], 1ULL << 63, 0xffff);	/* -inf */
	zdtm_fill(a->vec_in, sizeof(a->vec_in), 0x5e + seed, 0);
	a->mxcsr_in = MXCSR;
	a->fcw_in = FCW;
}

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	sigset_t set;

	sigfillset(&set);
	sigdelset(&set, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &set, NULL);	/* SIGTERM is the main thread's */
	w->tid = zdtm_gettid();
	if (use_avx)
		fpu_hold_avx(&w->a);
	else
		fpu_hold_sse(&w->a);
	return NULL;
}

static void pause_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

static int setup(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };
	long avx = zdtm_opt_long("avx", 0);

	if (avx && !cpu_has_avx())
		return zdtm_fail("--avx=1 but the CPU or kernel has no AVX (the spec needs [avx])");
	use_avx = avx;
	vec_len = use_avx ? 32 : 16;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL))
		return zdtm_err("sigaction");
	for (int i = 0; i < NW; i++) {
		int e;

		fill(&workers[i].a, i);
		e = pthread_create(&workers[i].th, NULL, worker_fn, &workers[i]);
		if (e) {
			errno = e;
			return zdtm_err("pthread_create");
		}
	}
	started = true;
	for (int i = 0; i < NW; i++) {
		struct worker *w = &workers[i];
		int waited = 0;

		while (!__atomic_load_n(&w->a.ready, __ATOMIC_SEQ_CST) || !w->tid) {
			if (++waited > 2000)
				return zdtm_fail("thread %d did not start holding its registers", i);
			pause_ms(1);
		}
		for (uint32_t n = 0; n < SIGNALS; n++) {
			if (syscall(SYS_tgkill, getpid(), w->tid, SIGUSR1))
				return zdtm_err("tgkill");
			for (waited = 0; w->signals <= n; pause_ms(1))
				if (++waited > 2000)
					return zdtm_fail("thread %d did not handle signal %u", i, n + 1);
		}
	}
	zdtm_msg("%d threads hold x87, MXCSR and %s state", NW, use_avx ? "ymm0-15" : "xmm0-15");
	return 0;
}

static int check_worker(int i)
{
	struct fpu_area *a = &workers[i].a;
	static const char *const env_names[] = { "control", "status", "tag" };

	for (int r = 0; r < 8; r++)
		if (memcmp(a->x87_out[r], a->x87_in[7 - r], 10))
			return zdtm_fail("thread %d: st(%d) changed (%016llx:%04x, expected "
					 "%016llx:%04x)", i, r,
					 *(unsigned long long *)a->x87_out[r],
					 *(uint16_t *)(a->x87_out[r] + 8),
					 *(unsigned long long *)a->x87_in[7 - r],
					 *(uint16_t *)(a->x87_in[7 - r] + 8));
	/* fnstenv: words 0, 2 and 4 are the control, status and tag words */
	for (int k = 0; k < 3; k++)
		if (a->env_after[2 * k] != a->env_before[2 * k])
			return zdtm_fail("thread %d: x87 %s word is %#06x, expected %#06x", i,
					 env_names[k], a->env_after[2 * k], a->env_before[2 * k]);
	if (a->env_before[0] != FCW)
		return zdtm_fail("thread %d: x87 control word was %#06x when loaded, not %#06x", i,
				 a->env_before[0], FCW);
	if (a->mxcsr_out != a->mxcsr_in)
		return zdtm_fail("thread %d: MXCSR is %#x, expected %#x", i, a->mxcsr_out,
				 a->mxcsr_in);
	for (int r = 0; r < 16; r++) {
		ssize_t bad = -1;

		for (size_t b = 0; b < vec_len && bad < 0; b++)
			if (a->vec_out[r][b] != a->vec_in[r][b])
				bad = b;
		if (bad >= 0)
			return zdtm_fail("thread %d: %s%d byte %zd is %#04x, expected %#04x", i,
					 use_avx ? "ymm" : "xmm", r, bad, a->vec_out[r][bad],
					 a->vec_in[r][bad]);
	}
	if (workers[i].signals < SIGNALS)
		return zdtm_fail("thread %d handled %u signals, sent %d", i, workers[i].signals,
				 SIGNALS);
	return 0;
}

static int check(void)
{
	int rc = 0;

	if (!started)
		return zdtm_fail("no threads hold FPU state: setup did not run");
	__atomic_store_n(&fpu_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &fpu_word, FUTEX_WAKE_PRIVATE, NW, NULL, NULL, 0);
	for (int i = 0; i < NW; i++)
		pthread_join(workers[i].th, NULL);
	for (int i = 0; i < NW; i++)
		if (check_worker(i))
			rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
