/* zdtm test library: protocol, verdicts, options, data, task helpers (see zdtm.h). */
#include "zdtm.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_OPTS 64

struct shared_state {
	uint32_t failed;	/* set once by the first failing task */
	char reason[1024];	/* that task's reason, shown in the verdict line */
};

static struct {
	const char *names[MAX_OPTS];
	const char *values[MAX_OPTS];
	int count;
	bool check_only;
} opts;

static struct shared_state *shared;
static volatile uint32_t stop_flag;	/* futex word: 1 once SIGTERM arrived */
static bool local_failed;		/* this task recorded a failure */
static int ready_fd = -1;		/* the root's pipe to the starter, until ready */

static long futex(volatile uint32_t *uaddr, int op, uint32_t val)
{
	return syscall(SYS_futex, uaddr, op, val, NULL, NULL, 0);
}

pid_t zdtm_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* --- messages and verdicts ------------------------------------------------------------ */

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
	char line[1200];
	int n = snprintf(line, sizeof(line), "%d: %s", getpid(), prefix);

	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	dprintf(STDERR_FILENO, "%s\n", line);
}

void zdtm_msg(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog("", fmt, ap);
	va_end(ap);
}

int zdtm_fail_at(const char *file, int line, int err, const char *fmt, ...)
{
	char msg[900], reason[1024];
	const char *base = strrchr(file, '/');
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err)
		snprintf(reason, sizeof(reason), "%s: %s (%s:%d)", msg, strerror(err),
			 base ? base + 1 : file, line);
	else
		snprintf(reason, sizeof(reason), "%s (%s:%d)", msg, base ? base + 1 : file, line);
	dprintf(STDERR_FILENO, "%d: fail: %s\n", getpid(), reason);
	local_failed = true;
	if (shared && __sync_bool_compare_and_swap(&shared->failed, 0, 1))
		memcpy(shared->reason, reason, sizeof(reason));
	return -1;
}

bool zdtm_failed(void)
{
	return local_failed || (shared && shared->failed);
}

/* --- options -------------------------------------------------------------------------- */

const char *zdtm_opt(const char *name, const char *def)
{
	for (int i = 0; i < opts.count; i++)
		if (!strcmp(opts.names[i], name))
			return opts.values[i];
	return def;
}

long zdtm_opt_long(const char *name, long def)
{
	const char *v = zdtm_opt(name, NULL);
	char *end;
	long n;

	if (!v)
		return def;
	n = strtol(v, &end, 0);
	if (*v == '\0' || *end != '\0') {
		dprintf(STDERR_FILENO, "option --%s=%s: expected an integer\n", name, v);
		exit(2);
	}
	return n;
}

bool zdtm_check_only(void)
{
	return opts.check_only;
}

static void parse_options(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *arg = argv[i], *eq;

		if (strncmp(arg, "--", 2) || arg[2] == '\0') {
			dprintf(STDERR_FILENO, "%s: argument '%s': expected --name or --name=value\n",
				argv[0], arg);
			exit(2);
		}
		if (!strcmp(arg, "--check-only")) {
			opts.check_only = true;
			continue;
		}
		if (opts.count == MAX_OPTS) {
			dprintf(STDERR_FILENO, "%s: more than %d options\n", argv[0], MAX_OPTS);
			exit(2);
		}
		eq = strchr(arg, '=');
		if (eq)
			*eq = '\0';
		opts.names[opts.count] = arg + 2;
		opts.values[opts.count] = eq ? eq + 1 : "1";
		opts.count++;
	}
}

/* --- SIGTERM -------------------------------------------------------------------------- */

static void on_sigterm(int sig)
{
	int saved = errno;

	(void)sig;
	stop_flag = 1;
	/* Wake whichever thread sleeps on the flag: the signal may land on any thread. */
	futex(&stop_flag, FUTEX_WAKE_PRIVATE, INT_MAX);
	errno = saved;
}

bool zdtm_stopping(void)
{
	return stop_flag != 0;
}

void zdtm_wait_stop(void)
{
	sigset_t cur;

	sigprocmask(SIG_SETMASK, NULL, &cur);
	if (!sigismember(&cur, SIGTERM)) {
		/* A futex sleep leaves the blocked mask as the test set it, so checks of the
		 * mask see the restored value, not one the library put back from memory. */
		while (!stop_flag)
			futex(&stop_flag, FUTEX_WAIT_PRIVATE, 0);
		return;
	}
	sigdelset(&cur, SIGTERM);
	while (!stop_flag)
		sigsuspend(&cur);
}

static void install_sigterm(void)
{
	struct sigaction sa = { .sa_handler = on_sigterm };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL)) {
		dprintf(STDERR_FILENO, "sigaction(SIGTERM): %s\n", strerror(errno));
		exit(1);
	}
}

/* --- data ----------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint8_t data_byte(uint64_t seed, uint64_t pos)
{
	return (uint8_t)(mix64(seed * 0x100000001b3ULL ^ (pos >> 3)) >> ((pos & 7) * 8));
}

void zdtm_fill(void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = data_byte(seed, pos + i);
}

ssize_t zdtm_verify(const void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	const uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != data_byte(seed, pos + i))
			return (ssize_t)i;
	return -1;
}

uint32_t zdtm_crc32(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

/* --- tasks ---------------------------------------------------------------------------- */

void *zdtm_shmem(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void zdtm_sync_set(struct zdtm_sync *s, uint32_t value)
{
	__atomic_store_n(&s->value, value, __ATOMIC_SEQ_CST);
	futex(&s->value, FUTEX_WAKE, INT_MAX);
}

void zdtm_sync_add(struct zdtm_sync *s, uint32_t n)
{
	__atomic_add_fetch(&s->value, n, __ATOMIC_SEQ_CST);
	futex(&s->value, FUTEX_WAKE, INT_MAX);
}

int zdtm_sync_wait(struct zdtm_sync *s, uint32_t want)
{
	for (;;) {
		uint32_t v = __atomic_load_n(&s->value, __ATOMIC_SEQ_CST);

		if (v >= want)
			return 0;
		if (stop_flag)
			return -1;
		futex(&s->value, FUTEX_WAIT, v);
	}
}

static void child_run(const struct zdtm_task *t, int pipe_fd)
{
	int rc = 0;

	stop_flag = 0;
	local_failed = false;
	/* Inherited from a root still in its setup: only the root may answer the starter. */
	if (ready_fd >= 0) {
		close(ready_fd);
		ready_fd = -1;
	}
	if (t->setup && t->setup(t->arg)) {
		if (!local_failed)
			zdtm_fail("child setup failed");
		_exit(1);
	}
	if (write(pipe_fd, "R", 1) != 1)
		_exit(1);
	close(pipe_fd);
	if (t->step) {
		while (!stop_flag)
			if (t->step(t->arg)) {
				if (!local_failed)
					zdtm_fail("child step failed");
				break;
			}
	}
	zdtm_wait_stop();
	if (t->check)
		rc = t->check(t->arg);
	_exit(rc || local_failed ? 1 : 0);
}

pid_t zdtm_child(const struct zdtm_task *t)
{
	int p[2], status;
	pid_t pid;
	char c;

	if (pipe2(p, O_CLOEXEC))
		return zdtm_err("pipe"), -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return zdtm_err("fork"), -1;
	}
	if (pid == 0) {
		close(p[0]);
		child_run(t, p[1]);
	}
	close(p[1]);
	if (zdtm_read_all(p[0], &c, 1) == 1) {
		close(p[0]);
		return pid;
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	zdtm_fail("child %d failed its setup", pid);
	return -1;
}

int zdtm_child_check(pid_t pid)
{
	int status;

	if (pid <= 0)
		return zdtm_fail("child was never started");
	if (kill(pid, SIGTERM))
		return zdtm_err("child %d is gone", pid);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return zdtm_err("waitpid(%d)", pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFSIGNALED(status))
		return zdtm_fail("child %d was killed by signal %d", pid, WTERMSIG(status));
	return zdtm_fail("child %d failed its check (exit %d)", pid, WEXITSTATUS(status));
}

/* --- helpers -------------------------------------------------------------------------- */

ssize_t zdtm_read_all(int fd, void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && done)
			break;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		done += n;
	}
	return (ssize_t)done;
}

ssize_t zdtm_write_all(int fd, const void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		done += n;
	}
	return (ssize_t)done;
}

ssize_t zdtm_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0 || len == 0)
		return -1;
	n = zdtm_read_all(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = '\0';
	return n;
}

int zdtm_settled(int (*probe)(void *arg, char *why, size_t len), void *arg, const char *what)
{
	char why[2048] = "";

	for (int i = 0; i < 40; i++) {
		int rc = probe(arg, why, sizeof(why));

		if (rc < 0)
			return zdtm_err("read %s", what);
		if (!rc)
			return 0;
		usleep(20000);
	}
	return zdtm_fail("%s: %s", what, why);
}

int zdtm_proc_status(pid_t pid, const char *name, char *out, size_t outlen)
{
	char path[64], buf[8192], *line;
	size_t nlen = strlen(name);

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, name, nlen) || line[nlen] != ':')
			continue;
		line += nlen + 1;
		while (*line == ' ' || *line == '\t')
			line++;
		size_t n = strcspn(line, "\n");
		if (n >= outlen)
			n = outlen - 1;
		memcpy(out, line, n);
		out[n] = '\0';
		return 0;
	}
	return -1;
}

/* --- the protocol --------------------------------------------------------------------- */

static void write_pidfile(const char *path, pid_t pid)
{
	char tmp[PATH_MAX];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || dprintf(fd, "%d\n", pid) < 0 || close(fd) || rename(tmp, path)) {
		dprintf(STDERR_FILENO, "pidfile %s: %s\n", path, strerror(errno));
		kill(pid, SIGKILL);
		exit(1);
	}
}

/* Whether the root still holds the ready pipe: it closes it right after writing 'R', and the
 * harness must not see that fd come and go (its snapshot follows the pidfile). */
static bool root_holds_pipe(pid_t root, int pipe_fd)
{
	char dir[64], path[320], want[64], link[64];
	struct dirent *d;
	struct stat st;
	bool found = false;
	DIR *fds;
	ssize_t n;

	if (fstat(pipe_fd, &st))
		return false;
	snprintf(want, sizeof(want), "pipe:[%lu]", (unsigned long)st.st_ino);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)root);
	fds = opendir(dir);
	if (!fds)
		return false;
	while (!found && (d = readdir(fds))) {
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = 0;
			found = !strcmp(link, want);
		}
	}
	closedir(fds);
	return found;
}

/* The starter: wait for the root's ready byte, publish its pid, exit. */
static void starter(pid_t root, int pipe_fd, const char *pidfile)
{
	struct timespec ms = { 0, 1000000 };
	int status, i;
	char c;

	/* 'R': ready; 'F' or EOF: the setup failed (tasks it forked may still hold the pipe). */
	if (zdtm_read_all(pipe_fd, &c, 1) == 1 && c == 'R') {
		for (i = 0; i < 2000 && root_holds_pipe(root, pipe_fd); i++)
			nanosleep(&ms, NULL);
		write_pidfile(pidfile, root);
		_exit(0);
	}
	while (waitpid(root, &status, 0) < 0 && errno == EINTR)
		;
	_exit(1);
}

static void redirect_stdio(int outfd)
{
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	if (null < 0 || dup2(null, STDIN_FILENO) < 0 || dup2(outfd, STDOUT_FILENO) < 0 ||
	    dup2(outfd, STDERR_FILENO) < 0) {
		dprintf(outfd, "FAIL: cannot set up stdio: %s\n", strerror(errno));
		exit(1);
	}
	if (null > STDERR_FILENO)
		close(null);
	if (outfd > STDERR_FILENO)
		close(outfd);
}

static int verdict(int rc)
{
	if (rc == 0 && !zdtm_failed()) {
		dprintf(STDOUT_FILENO, "PASS\n");
		return 0;
	}
	if (shared && shared->failed)
		dprintf(STDOUT_FILENO, "FAIL: %s\n", shared->reason);
	else
		dprintf(STDOUT_FILENO, "FAIL: check returned %d without a reason\n", rc);
	return 1;
}

int zdtm_main(int argc, char **argv, const struct zdtm_test *test)
{
	const char *pidfile, *outfile;
	int p[2], outfd, rc;
	pid_t pid;

	parse_options(argc, argv);
	pidfile = zdtm_opt("pidfile", NULL);
	outfile = zdtm_opt("outfile", NULL);
	if (!pidfile || !outfile || !test->check) {
		dprintf(STDERR_FILENO, "usage: %s --pidfile=FILE --outfile=FILE [--check-only] "
			"[--name=value...]\n", argv[0]);
		return 2;
	}
	outfd = open(outfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (outfd < 0) {
		dprintf(STDERR_FILENO, "outfile %s: %s\n", outfile, strerror(errno));
		return 1;
	}
	if (pipe2(p, O_CLOEXEC)) {
		dprintf(STDERR_FILENO, "pipe: %s\n", strerror(errno));
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		dprintf(STDERR_FILENO, "fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		close(p[1]);
		starter(pid, p[0], pidfile);
	}
	close(p[0]);
	ready_fd = p[1];
	if (setsid() < 0) {
		dprintf(outfd, "FAIL: setsid: %s\n", strerror(errno));
		return 1;
	}
	redirect_stdio(outfd);
	shared = zdtm_shmem(sizeof(*shared));
	if (!shared) {
		dprintf(STDOUT_FILENO, "FAIL: shared page: %s\n", strerror(errno));
		return 1;
	}
	install_sigterm();

	if (!opts.check_only && test->setup && test->setup()) {
		if (!zdtm_failed())
			zdtm_fail("setup failed");
		rc = verdict(1);
		if (write(ready_fd, "F", 1) != 1)
			return 1;
		return rc;
	}
	if (write(ready_fd, "R", 1) != 1)
		return 1;
	close(ready_fd);
	ready_fd = -1;

	if (test->step && !opts.check_only) {
		while (!stop_flag)
			if (test->step()) {
				if (!zdtm_failed())
					zdtm_fail("step failed");
				break;
			}
	}
	zdtm_wait_stop();
	rc = test->check();
	return verdict(rc);
}
