/* A 4-ary tree of N sleeping tasks for benchmarks/ckpt_tree.py.
 *
 *   ckpt_tree_helper N THREADS ZOMBIES
 *
 * Task i forks tasks 4i+1..4i+4 (below N); each waits until its children's subtrees are
 * built (one pipe per child, closed after), starts THREADS extra threads, and sleeps. With
 * ZOMBIES=1 every leaf of odd index exits at once and stays a zombie. When the whole tree
 * stands, the root prints "ready" on stdout. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int n, nthreads, zombies;

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void node(int i, int up)
{
	char c = 1;
	int k;

	for (k = 1; k <= 4 && 4 * i + k < n; k++) {
		int p[2];

		if (pipe(p))
			exit(1);
		if (fork() == 0) {
			close(p[0]);
			node(4 * i + k, p[1]);
		}
		close(p[1]);
		if (read(p[0], &c, 1) != 1)
			exit(1);
		close(p[0]);
	}
	for (k = 0; k < nthreads; k++) {
		pthread_t t;

		if (pthread_create(&t, NULL, sleeper, NULL))
			exit(1);
	}
	if (up >= 0) {
		if (write(up, &c, 1) != 1)
			exit(1);
		close(up);
		if (zombies && 4 * i + 1 >= n && i % 2)
			_exit(0);
	} else {
		printf("ready\n");
		fflush(stdout);
	}
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	n = atoi(argv[1]);
	nthreads = atoi(argv[2]);
	zombies = atoi(argv[3]);
	setsid();
	node(0, -1);
	return 0;
}
