/* Threads created and exiting during C/R: each step starts a few threads; each records its
 * tid, sets its own thread-local value, computes the CRC of a buffer derived from its
 * sequence number and returns its job. The main thread joins them and checks every result:
 * the returned pointer, distinct tids, the thread-local value, the CRC. */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "transition.h"

#define SEED 0x7e4d
#define PER_STEP 4
#define WORK_LEN 2048
#define MIN_STEPS 3
#define MAIN_TLS 0x5a5a5a5a5a5aULL

struct job {
	uint64_t seq;
	pid_t tid;
	uint32_t crc;
	uint64_t tls_seen;
};

static __thread uint64_t tls_val;
static unsigned long steps;
static uint64_t created, joined;
static pid_t main_tid;		/* 0 until setup */

static uint64_t tls_for(uint64_t seq)
{
	return seq * 3 + 1;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	unsigned char b[WORK_LEN];
	struct timespec ts = { 0, (long)(j->seq % 5) * 100000 };

	tls_val = tls_for(j->seq);
	j->tid = zdtm_gettid();
	zdtm_fill(b, sizeof(b), SEED, j->seq * WORK_LEN);
	nanosleep(&ts, NULL);	/* up to 0.4 ms alive: C/R may catch us */
	j->crc = zdtm_crc32(b, sizeof(b));
	j->tls_seen = tls_val;
	return j;
}

static int build(void)
{
	main_tid = zdtm_gettid();
	tls_val = MAIN_TLS;
	return 0;
}

static int step(void)
{
	struct job jobs[PER_STEP];
	pthread_t th[PER_STEP];
	unsigned char b[WORK_LEN];
	int i, k, err;

	for (i = 0; i < PER_STEP; i++) {
		jobs[i] = (struct job){ .seq = created };
		err = pthread_create(&th[i], NULL, worker, &jobs[i]);
		if (err) {
			errno = err;
			return zdtm_err("pthread_create of thread #%llu",
					(unsigned long long)created);
		}
		created++;
	}
	for (i = 0; i < PER_STEP; i++) {
		struct job *j = &jobs[i];
		void *ret;
		uint32_t want;

		err = pthread_join(th[i], &ret);
		if (err) {
			errno = err;
			return zdtm_err("pthread_join of thread #%llu", (unsigned long long)j->seq);
		}
		joined++;
		if (ret != j)
			return zdtm_fail("thread #%llu returned %p, expected %p",
					 (unsigned long long)j->seq, ret, (void *)j);
		if (j->tid <= 0 || j->tid == main_tid)
			return zdtm_fail("thread #%llu ran with tid %d (main is %d)",
					 (unsigned long long)j->seq, j->tid, main_tid);
		for (k = 0; k < i; k++)
			if (jobs[k].tid == j->tid)
				return zdtm_fail("threads #%llu and #%llu both ran as tid %d",
						 (unsigned long long)jobs[k].seq,
						 (unsigned long long)j->seq, j->tid);
		if (j->tls_seen != tls_for(j->seq))
			return zdtm_fail("thread #%llu saw thread-local value %llu, expected %llu",
					 (unsigned long long)j->seq,
					 (unsigned long long)j->tls_seen,
					 (unsigned long long)tls_for(j->seq));
		zdtm_fill(b, sizeof(b), SEED, j->seq * WORK_LEN);
		want = zdtm_crc32(b, sizeof(b));
		if (j->crc != want)
			return zdtm_fail("thread #%llu computed crc %08x, expected %08x",
					 (unsigned long long)j->seq, j->crc, want);
	}
	if (tls_val != MAIN_TLS)
		return zdtm_fail("main thread-local value is %llx, expected %llx",
				 (unsigned long long)tls_val, MAIN_TLS);
	steps++;
	return 0;
}

static int setup(void)
{
	return zdtm_warmup(build, step, &steps, MIN_STEPS, NULL);
}

static int check(void)
{
	char threads[32];

	if (!main_tid)
		return zdtm_fail("setup never ran: no thread loop state");
	if (steps < MIN_STEPS)
		return zdtm_fail("the thread loop ran %lu steps, expected at least %d", steps,
				 MIN_STEPS);
	if (main_tid != zdtm_gettid())
		return zdtm_fail("main thread tid changed from %d to %d", main_tid, zdtm_gettid());
	if (tls_val != MAIN_TLS)
		return zdtm_fail("main thread-local value is %llx, expected %llx",
				 (unsigned long long)tls_val, MAIN_TLS);
	if (created != steps * PER_STEP || joined != created)
		return zdtm_fail("%lu steps created %llu threads (expected %lu), joined %llu",
				 steps, (unsigned long long)created, steps * PER_STEP,
				 (unsigned long long)joined);
	/* A joined thread may still be on its way out of the kernel: give it a moment. */
	for (int i = 0;; i++) {
		struct timespec ts = { 0, 10000000 };

		if (zdtm_proc_status(0, "Threads", threads, sizeof(threads)))
			return zdtm_fail("no Threads: line in /proc/self/status");
		if (!strcmp(threads, "1"))
			break;
		if (i == 100)
			return zdtm_fail("%s threads are left 1 s after the last join, expected "
					 "only the main one", threads);
		nanosleep(&ts, NULL);
	}
	zdtm_msg("%lu steps, %llu threads created and joined", steps,
		 (unsigned long long)created);
	return 0;
}

ZDTM_TEST(.setup = setup, .step = step, .check = check);
