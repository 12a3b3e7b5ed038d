/* A private mount namespace survives C/R with its mounts, options and propagation. Child M
 * unshares a mount namespace (made recursively private first) and, on directories of the
 * scratch dir, mounts:
 *   tmp_a   tmpfs (size=4m, mode=0710, nr_inodes=1000) holding files; M's cwd is there
 *   bind_ro read-only bind mount of tmp_a/sub
 *   sh_a    shared tmpfs, and sh_b a bind of it (same peer group)
 *   sl      a bind of sh_a made a slave of that peer group
 * M checks its mountinfo (types, options, bind roots, shared:N/master:N tags), the files
 * and the read-only flag, then propagation by effect: a mount under sh_a appears under
 * sh_b and sl, a mount under sl does not appear under sh_a. The root checks that M's
 * namespace is not its own and that, in its own, the directories are still empty. */
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define SEED 0x3e7
#define DATA_LEN 20000

static char base[PATH_MAX - 32];
static pid_t m_pid;
static int data_fd = -1;	/* M: tmp_a/data, open with its offset at 1234 */

static const char *const dirs[] = { "tmp_a", "bind_ro", "sh_a", "sh_b", "sl" };

struct mi {
	char root[PATH_MAX], opts[256], tags[128], fstype[32], super[256];
	unsigned int major, minor;
};

static void path_of(char *out, size_t len, const char *rel)
{
	snprintf(out, len, "%s/%s", base, rel);
}

/* mountinfo escapes space, tab, newline and backslash as octal */
static void escape(char *out, size_t len, const char *in)
{
	size_t o = 0;

	for (; *in && o + 5 < len; in++) {
		if (*in == ' ' || *in == '\t' || *in == '\n' || *in == '\\')
			o += snprintf(out + o, len - o, "\\%03o", (unsigned char)*in);
		else
			out[o++] = *in;
	}
	out[o] = '\0';
}

/* The mountinfo line of the topmost mount at base/rel. */
static int find_mount(const char *rel, struct mi *m)
{
	static char buf[1 << 17];
	char want[PATH_MAX], esc[PATH_MAX * 2], *line, *save = NULL;
	bool found = false;

	path_of(want, sizeof(want), rel);
	escape(esc, sizeof(esc), want);
	if (zdtm_read_file("/proc/self/mountinfo", buf, sizeof(buf)) < 0)
		return zdtm_err("M: read mountinfo");
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char root[PATH_MAX], mp[PATH_MAX * 2], opts[256], *sep;
		unsigned int maj, min;
		int end = 0;

		if (sscanf(line, "%*d %*d %u:%u %4095s %8191s %255s%n", &maj, &min, root, mp, opts,
			   &end) != 5 || !end)
			continue;
		if (strcmp(mp, esc))
			continue;
		sep = strstr(line, " - ");
		if (!sep)
			continue;
		found = true;	/* keep going: a later line is mounted on top */
		m->major = maj;
		m->minor = min;
		snprintf(m->root, sizeof(m->root), "%s", root);
		snprintf(m->opts, sizeof(m->opts), "%s", opts);
		/* optional fields: between the options and " - " */
		snprintf(m->tags, sizeof(m->tags), "%.*s", (int)(sep - (line + end)), line + end);
		if (sscanf(sep + 3, "%31s %*s %255s", m->fstype, m->super) != 2)
			return zdtm_fail("M: bad mountinfo line '%s'", line);
	}
	if (!found)
		return zdtm_fail("M: nothing mounted at %s", want);
	return 0;
}

/* The peer group (shared:N) or master (master:N) number in the optional fields, or -1. */
static long tag(const struct mi *m, const char *name)
{
	const char *p = strstr(m->tags, name);

	return p ? strtol(p + strlen(name), NULL, 10) : -1;
}

static int do_mount(const char *src, const char *rel, const char *type, unsigned long flags,
		    const char *data)
{
	char target[PATH_MAX], source[PATH_MAX];

	path_of(target, sizeof(target), rel);
	if (src && src[0] != '/' && strcmp(src, "none"))
		path_of(source, sizeof(source), src);
	else
		snprintf(source, sizeof(source), "%s", src ? src : "none");
	if (mount(source, target, type, flags, data))
		return zdtm_err("M: mount %s on %s (%s, flags %#lx, %s)", source, target,
				type ? type : "-", flags, data ? data : "");
	return 0;
}

static int write_file(const char *rel, const void *buf, size_t len)
{
	char path[PATH_MAX];
	int fd;

	path_of(path, sizeof(path), rel);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || zdtm_write_all(fd, buf, len) != (ssize_t)len || close(fd))
		return zdtm_err("M: write %s", path);
	return 0;
}

static int m_setup(void *arg)
{
	static char data[DATA_LEN];
	char path[PATH_MAX];

	(void)arg;
	if (unshare(CLONE_NEWNS))
		return zdtm_err("M: unshare(CLONE_NEWNS)");
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return zdtm_err("M: make / recursively private");
	if (do_mount("none", "tmp_a", "tmpfs", 0, "size=4m,mode=0710,nr_inodes=1000"))
		return -1;
	path_of(path, sizeof(path), "tmp_a/sub");
	if (mkdir(path, 0755))
		return zdtm_err("M: mkdir %s", path);
	zdtm_fill(data, DATA_LEN, SEED, 0);
	if (write_file("tmp_a/data", data, DATA_LEN) || write_file("tmp_a/sub/inner", "inner", 5))
		return -1;
	if (do_mount("tmp_a/sub", "bind_ro", NULL, MS_BIND, NULL) ||
	    do_mount("none", "bind_ro", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL))
		return -1;

	if (do_mount("none", "sh_a", "tmpfs", 0, "size=1m") ||
	    do_mount("none", "sh_a", NULL, MS_SHARED, NULL))
		return -1;
	path_of(path, sizeof(path), "sh_a/x");
	if (mkdir(path, 0755))
		return zdtm_err("M: mkdir %s", path);
	path_of(path, sizeof(path), "sh_a/y");
	if (mkdir(path, 0755))
		return zdtm_err("M: mkdir %s", path);
	if (do_mount("sh_a", "sh_b", NULL, MS_BIND, NULL) ||
	    do_mount("sh_a", "sl", NULL, MS_BIND, NULL) ||
	    do_mount("none", "sl", NULL, MS_SLAVE, NULL))
		return -1;

	path_of(path, sizeof(path), "tmp_a/data");
	data_fd = open(path, O_RDWR | O_CLOEXEC);
	if (data_fd < 0 || lseek(data_fd, 1234, SEEK_SET) != 1234)
		return zdtm_err("M: open %s", path);
	path_of(path, sizeof(path), "tmp_a");
	if (chdir(path))
		return zdtm_err("M: chdir %s", path);
	return 0;
}

static dev_t dev_of(const char *rel)
{
	char path[PATH_MAX];
	struct stat st;

	path_of(path, sizeof(path), rel);
	return stat(path, &st) ? (dev_t)-1 : st.st_dev;
}

static int m_check_mounts(void)
{
	struct mi a, b, sa, sb, sl;
	long peer;

	if (find_mount("tmp_a", &a) || find_mount("bind_ro", &b) || find_mount("sh_a", &sa) ||
	    find_mount("sh_b", &sb) || find_mount("sl", &sl))
		return -1;
	if (strcmp(a.fstype, "tmpfs") || !strstr(a.super, "size=4096k") ||
	    !strstr(a.super, "mode=710") || !strstr(a.super, "nr_inodes=1000"))
		return zdtm_fail("M: tmp_a is '%s' with '%s', expected tmpfs size=4096k,mode=710,"
				 "nr_inodes=1000", a.fstype, a.super);
	if (strcmp(a.root, "/") || strncmp(a.opts, "rw", 2))
		return zdtm_fail("M: tmp_a has root %s, options %s", a.root, a.opts);
	if (b.major != a.major || b.minor != a.minor || strcmp(b.root, "/sub") ||
	    strncmp(b.opts, "ro", 2))
		return zdtm_fail("M: bind_ro is %u:%u root %s options %s, expected %u:%u root /sub, ro",
				 b.major, b.minor, b.root, b.opts, a.major, a.minor);
	peer = tag(&sa, "shared:");
	if (peer < 0 || tag(&sb, "shared:") != peer)
		return zdtm_fail("M: sh_a ('%s') and sh_b ('%s') are not in one peer group", sa.tags,
				 sb.tags);
	if (tag(&sl, "master:") != peer || tag(&sl, "shared:") >= 0)
		return zdtm_fail("M: sl ('%s') is not a plain slave of peer group %ld", sl.tags, peer);
	if (tag(&a, "shared:") >= 0 || tag(&a, "master:") >= 0)
		return zdtm_fail("M: tmp_a ('%s') is not private", a.tags);
	return 0;
}

static int m_check_files(void)
{
	static char buf[DATA_LEN];
	char cwd[PATH_MAX], want[PATH_MAX];
	struct stat st;
	ssize_t n, bad;
	int fd;

	if (data_fd < 0 || lseek(data_fd, 0, SEEK_CUR) != 1234)
		return zdtm_fail("M: tmp_a/data fd %d lost its offset 1234", data_fd);
	n = pread(data_fd, buf, DATA_LEN, 0);
	if (n != DATA_LEN)
		return zdtm_fail("M: tmp_a/data has %zd bytes, expected %d", n, DATA_LEN);
	bad = zdtm_verify(buf, DATA_LEN, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("M: tmp_a/data differs at byte %zd", bad);
	if (zdtm_read_file("sub/inner", buf, sizeof(buf)) != 5 || strcmp(buf, "inner"))
		return zdtm_fail("M: ./sub/inner (from cwd tmp_a) is missing or wrong");
	path_of(want, sizeof(want), "bind_ro/inner");
	if (zdtm_read_file(want, buf, sizeof(buf)) != 5 || strcmp(buf, "inner"))
		return zdtm_fail("M: %s is missing or wrong", want);
	path_of(want, sizeof(want), "bind_ro/new");
	fd = open(want, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0 || errno != EROFS)
		return zdtm_fail("M: creating %s gave %d (%s), expected EROFS", want, fd,
				 strerror(errno));
	path_of(want, sizeof(want), "tmp_a");
	if (!getcwd(cwd, sizeof(cwd)) || strcmp(cwd, want))
		return zdtm_fail("M: cwd is not %s", want);
	if (stat(".", &st) || st.st_dev != dev_of("tmp_a"))
		return zdtm_fail("M: cwd is not on the tmp_a tmpfs");
	return 0;
}

static int m_check_propagation(void)
{
	int rc = 0;

	if (do_mount("none", "sh_a/x", "tmpfs", 0, "size=64k"))
		return -1;
	if (dev_of("sh_b/x") != dev_of("sh_a/x") || dev_of("sl/x") != dev_of("sh_a/x"))
		rc = zdtm_fail("M: a mount on sh_a/x did not propagate to the peer sh_b and the slave "
			       "sl");
	if (!rc && do_mount("none", "sl/y", "tmpfs", 0, "size=64k"))
		rc = -1;
	if (!rc && dev_of("sh_a/y") == dev_of("sl/y"))
		rc = zdtm_fail("M: a mount on the slave sl/y propagated back to its master sh_a");
	return rc;
}

static int m_check(void *arg)
{
	(void)arg;
	if (m_check_mounts() || m_check_files() || m_check_propagation())
		return -1;
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task m = { .setup = m_setup, .check = m_check };

	if (!getcwd(base, sizeof(base)))
		return zdtm_err("getcwd");
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (mkdir(dirs[i], 0755))
			return zdtm_err("mkdir %s", dirs[i]);
	m_pid = zdtm_child(&m);
	return m_pid > 0 ? 0 : -1;
}

static int check(void)
{
	char path[64];
	struct stat me, m, scratch;
	int rc = 0;

	if (m_pid <= 0)
		return zdtm_fail("no mount namespace holder: setup did not run");
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", m_pid);
	if (stat("/proc/self/ns/mnt", &me) || stat(path, &m))
		rc = zdtm_err("stat ns/mnt");
	else if (me.st_ino == m.st_ino)
		rc = zdtm_fail("M %d shares the root's mount namespace", m_pid);
	if (stat(".", &scratch))
		return zdtm_err("stat .");
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (dev_of(dirs[i]) != scratch.st_dev)
			rc = zdtm_fail("%s is a mount point in the root's namespace", dirs[i]);
	if (access("tmp_a/data", F_OK) == 0)
		rc = zdtm_fail("tmp_a/data is visible in the root's namespace");
	if (zdtm_child_check(m_pid))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
