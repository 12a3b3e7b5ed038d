/* A parent and its child whose main thread exited with code 13 while two threads live on,
 * for tests/test_tree_engine.py. `zombie_main PREFIX`:
 *   the parent forks the child, waits until its main thread is a zombie and both threads
 *   sleep, writes the child's pid to PREFIX.ready, then waits for the child and writes
 *   "PID STATUS" to PREFIX.reaped (it cannot reap the child while a thread lives);
 *   each thread waits for PREFIX.go to exist, checks its tid and TLS (exit_group(1) if either
 *   changed) and exits alone with code 13, so the last one ends the process. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NTHREADS 2
#define CODE 13
#define SEED 0x2ead3a11

static const char *prefix;
static __thread uint64_t tls;
static volatile int started;

static void path(char *buf, size_t size, const char *suffix)
{
	snprintf(buf, size, "%s.%s", prefix, suffix);
}

static void *thread_fn(void *arg)
{
	uint64_t i = (uint64_t)(uintptr_t)arg;
	pid_t tid = (pid_t)syscall(SYS_gettid);
	char go[4096];

	tls = SEED + i;
	path(go, sizeof(go), "go");
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (access(go, F_OK))
		usleep(2000);
	if (tls != SEED + i || syscall(SYS_gettid) != tid)
		syscall(SYS_exit_group, 1);
	syscall(SYS_exit, CODE);	/* this thread only */
	return NULL;
}

static char state(pid_t pid, pid_t tid)
{
	char file[64], buf[512];
	FILE *f;
	char *p;

	snprintf(file, sizeof(file), "/proc/%d/task/%d/stat", pid, tid);
	f = fopen(file, "r");
	if (!f)
		return 0;
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	return p ? p[2] : 0;
}

static void child(void)
{
	pthread_t th;

	for (uintptr_t i = 0; i < NTHREADS; i++)
		if (pthread_create(&th, NULL, thread_fn, (void *)i))
			syscall(SYS_exit_group, 2);
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < NTHREADS)
		usleep(1000);
	syscall(SYS_exit, CODE);	/* the main thread only */
}

/* Whether the child's main thread is a zombie and every other thread sleeps. */
static int settled(pid_t pid)
{
	char dir[64];
	struct dirent *e;
	int n = 0;
	DIR *d;

	if (state(pid, pid) != 'Z')
		return 0;
	snprintf(dir, sizeof(dir), "/proc/%d/task", pid);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		pid_t tid = atoi(e->d_name);

		if (tid > 0 && tid != pid && state(pid, tid) == 'S')
			n++;
	}
	closedir(d);
	return n == NTHREADS;
}

int main(int argc, char **argv)
{
	char file[4096], tmp[4096];
	int status;
	pid_t pid;
	FILE *f;

	if (argc != 2)
		return 2;
	prefix = argv[1];
	pid = fork();
	if (pid < 0)
		return 3;
	if (pid == 0)
		child();
	while (!settled(pid))
		usleep(1000);
	path(tmp, sizeof(tmp), "ready.tmp");
	path(file, sizeof(file), "ready");
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d", pid) < 0 || fclose(f) || rename(tmp, file))
		return 4;
	if (waitpid(pid, &status, 0) != pid)
		return 5;
	path(tmp, sizeof(tmp), "reaped.tmp");
	path(file, sizeof(file), "reaped");
	f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d %d", pid, status) < 0 || fclose(f) || rename(tmp, file))
		return 6;
	for (;;)
		pause();
}
