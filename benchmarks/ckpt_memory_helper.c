/* Helper of benchmarks/ckpt_memory.py, compiled at run time.
 *
 *   touch SIZE        mmap SIZE bytes of fresh anonymous private memory, write one byte per
 *                     4 KiB page, print the seconds the touching took (CLOCK_MONOTONIC).
 *   victim SIZE SEED  mmap SIZE bytes, fill them from a PRNG seeded by SEED, checksum them,
 *                     print "PID ready CHECKSUM", wait for SIGUSR1, checksum the whole area
 *                     again: exit 0 if it matches, 1 if not.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static void *area(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* splitmix64: fast, and every word depends on the seed and its position. */
static void fill(uint64_t *w, size_t n, uint64_t seed)
{
	uint64_t x = seed;
	for (size_t i = 0; i < n; i++) {
		uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
		w[i] = z ^ (z >> 31);
	}
}

/* Order-dependent: a page restored at the wrong address changes the sum. */
static uint64_t checksum(const uint64_t *w, size_t n)
{
	uint64_t h = 0xCBF29CE484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = ((h << 7 | h >> 57) ^ w[i]) * 0x100000001B3ULL;
	return h;
}

static int touch(size_t size)
{
	char *p = area(size);
	double t0 = now();
	for (size_t off = 0; off < size; off += 4096)
		p[off] = 1;
	printf("%.6f\n", now() - t0);
	return 0;
}

static int victim(size_t size, uint64_t seed)
{
	sigset_t usr1, none;
	struct sigaction sa = {.sa_handler = on_usr1};

	/* Blocked until sigsuspend: a SIGUSR1 sent early waits instead of being lost. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	size_t n = size / sizeof(uint64_t);
	uint64_t *w = area(size);
	fill(w, n, seed);
	uint64_t sum = checksum(w, n);
	printf("%d ready %016llx\n", (int)getpid(), (unsigned long long)sum);
	fflush(stdout);

	sigemptyset(&none);
	while (!go)
		sigsuspend(&none);
	uint64_t again = checksum(w, n);
	if (again != sum) {
		printf("%d MISMATCH %016llx != %016llx\n", (int)getpid(), (unsigned long long)again,
		       (unsigned long long)sum);
		fflush(stdout);
		return 1;
	}
	printf("%d verified\n", (int)getpid());
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && argv[1][0] == 't')
		return touch(strtoull(argv[2], NULL, 0));
	if (argc == 4 && argv[1][0] == 'v')
		return victim(strtoull(argv[2], NULL, 0), strtoull(argv[3], NULL, 0));
	fprintf(stderr, "usage: %s touch SIZE | victim SIZE SEED\n", argv[0]);
	return 2;
}
