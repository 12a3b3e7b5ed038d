/* A user namespace survives C/R with its id maps, its setgroups policy, the credentials
 * of a task inside it and the namespaces it owns. Child U unshares a user namespace; a
 * helper still outside writes "deny" to its setgroups and maps inner uids 0-999 to
 * 100000-100999 and gids 0-999 to 200000-200999; U becomes root inside and unshares a UTS
 * namespace (owned by the new user namespace) with a hostname of its own. U checks its
 * inner ids, the maps, setgroups ("deny", and setgroups() fails), its full capability set,
 * the UTS namespace's owner (NS_GET_USERNS) and hostname, and creates a file that it sees
 * owned by 0:0. The root checks U from outside: Uid/Gid lines 100000/200000, the maps,
 * a user namespace other than its own, and the file owned by 100000:200000. */
#include <fcntl.h>
#include <grp.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtm.h"

#define UID_MAP "0 100000 1000"
#define GID_MAP "0 200000 1000"
#define OUT_UID 100000
#define OUT_GID 200000

static int dirfd = -1;		/* a world-writable directory for U's file */
static char hostname[64];
static pid_t u_pid;

/* "0 100000 1000" from a map file, whitespace normalized */
static int read_map(const char *path, char *out, size_t len)
{
	char buf[256];
	unsigned long a, b, c;

	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	if (sscanf(buf, "%lu %lu %lu", &a, &b, &c) != 3 ||
	    strchr(buf, '\n') != buf + strlen(buf) - 1)
		snprintf(out, len, "unexpected '%s'", buf);
	else
		snprintf(out, len, "%lu %lu %lu", a, b, c);
	return 0;
}

static int write_str(pid_t pid, const char *file, const char *s)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || zdtm_write_all(fd, s, strlen(s)) < 0 || close(fd))
		return -1;
	return 0;
}

static int u_setup(void *arg)
{
	int to_w[2], to_u[2], status;
	pid_t w, me = getpid();
	char c = 0;

	(void)arg;
	if (pipe(to_w) || pipe(to_u))
		return zdtm_err("U: pipe");
	w = fork();
	if (w < 0)
		return zdtm_err("U: fork helper");
	if (w == 0) {
		/* the helper stays in the parent user namespace, where it may write any map */
		if (read(to_w[0], &c, 1) != 1 || write_str(me, "setgroups", "deny") ||
		    write_str(me, "uid_map", UID_MAP "\n") ||
		    write_str(me, "gid_map", GID_MAP "\n"))
			_exit(1);
		_exit(write(to_u[1], "M", 1) == 1 ? 0 : 1);
	}
	if (unshare(CLONE_NEWUSER))
		return zdtm_err("U: unshare(CLONE_NEWUSER)");
	if (write(to_w[1], "U", 1) != 1 || read(to_u[0], &c, 1) != 1 ||
	    waitpid(w, &status, 0) != w || status)
		return zdtm_fail("U: the helper could not write the id maps (status %#x)", status);
	close(to_w[0]);
	close(to_w[1]);
	close(to_u[0]);
	close(to_u[1]);
	if (setresgid(0, 0, 0) || setresuid(0, 0, 0))
		return zdtm_err("U: become root in the user namespace");
	if (unshare(CLONE_NEWUTS))
		return zdtm_err("U: unshare(CLONE_NEWUTS) in the user namespace");
	if (sethostname(hostname, strlen(hostname)))
		return zdtm_err("U: sethostname");
	return 0;
}

static int u_check(void *arg)
{
	char buf[256], last[16], want[32];
	uid_t r, e, s;
	gid_t rg, eg, sg, g = 0;
	struct stat a, b;
	int fd, nsfd;

	(void)arg;
	if (getresuid(&r, &e, &s) || getresgid(&rg, &eg, &sg) || r || e || s || rg || eg || sg)
		return zdtm_fail("U: ids inside are %u/%u/%u and %u/%u/%u, expected all 0", r, e, s,
				 rg, eg, sg);
	if (read_map("/proc/self/uid_map", buf, sizeof(buf)) || strcmp(buf, UID_MAP))
		return zdtm_fail("U: uid_map is '%s', expected '%s'", buf, UID_MAP);
	if (read_map("/proc/self/gid_map", buf, sizeof(buf)) || strcmp(buf, GID_MAP))
		return zdtm_fail("U: gid_map is '%s', expected '%s'", buf, GID_MAP);
	if (zdtm_read_file("/proc/self/setgroups", buf, sizeof(buf)) < 0 || strcmp(buf, "deny\n"))
		return zdtm_fail("U: setgroups is '%s', expected deny", buf);
	if (setgroups(1, &g) == 0 || errno != EPERM)
		return zdtm_fail("U: setgroups() did not fail with EPERM under 'deny'");

	/* full capabilities inside: CapEff is the mask of all caps up to cap_last_cap */
	if (zdtm_read_file("/proc/sys/kernel/cap_last_cap", last, sizeof(last)) < 0)
		return zdtm_err("U: read cap_last_cap");
	snprintf(want, sizeof(want), "%016llx", (2ULL << atoi(last)) - 1);
	if (zdtm_proc_status(0, "CapEff", buf, sizeof(buf)) || strcmp(buf, want))
		return zdtm_fail("U: CapEff is %s, expected %s", buf, want);

	nsfd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
	fd = nsfd < 0 ? -1 : ioctl(nsfd, NS_GET_USERNS);
	if (fd < 0 || fstat(fd, &a) || stat("/proc/self/ns/user", &b))
		return zdtm_err("U: owner of the UTS namespace");
	close(fd);
	close(nsfd);
	if (a.st_ino != b.st_ino)
		return zdtm_fail("U: the UTS namespace is owned by user namespace %lu, not U's %lu",
				 (unsigned long)a.st_ino, (unsigned long)b.st_ino);
	if (gethostname(buf, sizeof(buf)) || strcmp(buf, hostname))
		return zdtm_fail("U: hostname is '%s', expected '%s'", buf, hostname);

	fd = openat(dirfd, "by-u", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0 || fstat(fd, &a))
		return zdtm_err("U: create shared/by-u");
	close(fd);
	if (a.st_uid != 0 || a.st_gid != 0)
		return zdtm_fail("U: its new file is owned by %u:%u inside, expected 0:0", a.st_uid,
				 a.st_gid);
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task u = { .setup = u_setup, .check = u_check };

	if (mkdir("shared", 0777) || chmod("shared", 0777))
		return zdtm_err("mkdir shared");
	dirfd = open("shared", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dirfd < 0)
		return zdtm_err("open shared");
	snprintf(hostname, sizeof(hostname), "zdtm-userns-%d", getpid());
	u_pid = zdtm_child(&u);
	return u_pid > 0 ? 0 : -1;
}

static int check(void)
{
	char path[64], buf[128];
	unsigned int v[4];
	struct stat me, un, st;
	int rc = 0;

	if (u_pid <= 0)
		return zdtm_fail("no user namespace: setup did not run");
	if (zdtm_proc_status(u_pid, "Uid", buf, sizeof(buf)) ||
	    sscanf(buf, "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) != 4 ||
	    v[0] != OUT_UID || v[1] != OUT_UID || v[2] != OUT_UID || v[3] != OUT_UID)
		rc = zdtm_fail("U %d: Uid seen from outside is '%s', expected %d everywhere", u_pid,
			       buf, OUT_UID);
	if (zdtm_proc_status(u_pid, "Gid", buf, sizeof(buf)) ||
	    sscanf(buf, "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) != 4 ||
	    v[0] != OUT_GID || v[1] != OUT_GID || v[2] != OUT_GID || v[3] != OUT_GID)
		rc = zdtm_fail("U %d: Gid seen from outside is '%s', expected %d everywhere", u_pid,
			       buf, OUT_GID);
	snprintf(path, sizeof(path), "/proc/%d/uid_map", u_pid);
	if (read_map(path, buf, sizeof(buf)) || strcmp(buf, UID_MAP))
		rc = zdtm_fail("%s is '%s' from outside, expected '%s'", path, buf, UID_MAP);
	snprintf(path, sizeof(path), "/proc/%d/ns/user", u_pid);
	if (stat("/proc/self/ns/user", &me) || stat(path, &un))
		rc = zdtm_err("stat ns/user");
	else if (me.st_ino == un.st_ino)
		rc = zdtm_fail("U %d shares the root's user namespace", u_pid);
	if (zdtm_child_check(u_pid))
		return -1;
	if (fstatat(dirfd, "by-u", &st, 0))
		return zdtm_err("stat shared/by-u");
	if (st.st_uid != OUT_UID || st.st_gid != OUT_GID)
		return zdtm_fail("U's file is owned by %u:%u outside, expected %d:%d", st.st_uid,
				 st.st_gid, OUT_UID, OUT_GID);
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
