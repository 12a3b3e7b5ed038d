/* Credentials survive C/R, per process. The root stays uid 0 (it must remain checkable)
 * but gets supplementary groups and a saved gid of its own. Child A drops to distinct
 * real/effective/saved uids and gids, with fsuid and fsgid set apart from the effective
 * ids and four supplementary groups. Child B only switches its effective uid (real and
 * saved stay 0). Each checks getres[ug]id, getgroups and the Uid/Gid/Groups/CapPrm/CapEff
 * lines of /proc/self/status; A creates a file and checks it is owned by fsuid:fsgid,
 * B switches its euid back to 0 and checks it gets its capabilities back. */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define MAXG 8

struct creds {
	const char *who;
	uid_t uid[4];		/* real, effective, saved, fs */
	gid_t gid[4];
	int ngroups;
	gid_t groups[MAXG];
	const char *cap_prm;	/* expected CapPrm/CapEff: "0" for none, "" for the inherited set */
	const char *cap_eff;
};

static struct creds root_c = {
	.who = "root", .uid = { 0, 0, 0, 0 }, .gid = { 0, 0, 4244, 0 },
	.ngroups = 3, .groups = { 0, 4242, 4243 }, .cap_prm = "", .cap_eff = "",
};
static struct creds a_c = {
	.who = "child A", .uid = { 3001, 3002, 3003, 3003 }, .gid = { 2001, 2002, 2003, 2001 },
	.ngroups = 4, .groups = { 1001, 1002, 5000, 65534 }, .cap_prm = "0", .cap_eff = "0",
};
static struct creds b_c = {
	.who = "child B", .uid = { 0, 5001, 0, 5001 }, .gid = { 0, 0, 0, 0 },
	.ngroups = 1, .groups = { 6000 }, .cap_prm = "", .cap_eff = "0",
};

static char full_caps[32];	/* the root's CapPrm before anything changed */
static int dirfd = -1;		/* a world-writable directory for child A's file */
static pid_t child_a, child_b;
static bool root_set;

static int caps_value(const char *line)
{
	/* "0000000000000000" counts as "0" */
	return strspn(line, "0") == strlen(line);
}

static int status_ids(const char *who, const char *field, const unsigned int *want)
{
	char buf[128];
	unsigned int v[4];

	if (zdtm_proc_status(0, field, buf, sizeof(buf)))
		return zdtm_fail("%s: no %s line in /proc/self/status", who, field);
	if (sscanf(buf, "%u %u %u %u", &v[0], &v[1], &v[2], &v[3]) != 4)
		return zdtm_fail("%s: bad %s line '%s'", who, field, buf);
	for (int i = 0; i < 4; i++)
		if (v[i] != want[i])
			return zdtm_fail("%s: %s is '%s', expected %u %u %u %u (real eff saved fs)",
					 who, field, buf, want[0], want[1], want[2], want[3]);
	return 0;
}

static int status_caps(const char *who, const char *field, const char *want)
{
	char buf[64];

	if (zdtm_proc_status(0, field, buf, sizeof(buf)))
		return zdtm_fail("%s: no %s line", who, field);
	if (!strcmp(want, "0") ? !caps_value(buf) : strcmp(buf, full_caps))
		return zdtm_fail("%s: %s is %s, expected %s", who, field, buf,
				 !strcmp(want, "0") ? "none" : full_caps);
	return 0;
}

static int verify(const struct creds *c)
{
	uid_t r, e, s;
	gid_t rg, eg, sg, groups[64];
	char buf[256], want[256];
	int n, off = 0;

	if (getresuid(&r, &e, &s) || getresgid(&rg, &eg, &sg))
		return zdtm_err("%s: getres[ug]id", c->who);
	if (r != c->uid[0] || e != c->uid[1] || s != c->uid[2])
		return zdtm_fail("%s: uids are %u/%u/%u, expected %u/%u/%u", c->who, r, e, s,
				 c->uid[0], c->uid[1], c->uid[2]);
	if (rg != c->gid[0] || eg != c->gid[1] || sg != c->gid[2])
		return zdtm_fail("%s: gids are %u/%u/%u, expected %u/%u/%u", c->who, rg, eg, sg,
				 c->gid[0], c->gid[1], c->gid[2]);
	if (status_ids(c->who, "Uid", c->uid) || status_ids(c->who, "Gid", c->gid))
		return -1;
	n = getgroups(64, groups);
	if (n != c->ngroups)
		return zdtm_fail("%s: %d supplementary groups, expected %d", c->who, n, c->ngroups);
	for (int i = 0; i < n; i++) {
		if (groups[i] != c->groups[i])
			return zdtm_fail("%s: group %d is %u, expected %u", c->who, i, groups[i],
					 c->groups[i]);
		off += snprintf(want + off, sizeof(want) - off, "%u ", c->groups[i]);
	}
	if (off)
		want[off - 1] = '\0';
	if (zdtm_proc_status(0, "Groups", buf, sizeof(buf)))
		return zdtm_fail("%s: no Groups line", c->who);
	for (n = strlen(buf); n > 0 && buf[n - 1] == ' '; n--)
		buf[n - 1] = '\0';
	if (strcmp(buf, want))
		return zdtm_fail("%s: Groups is '%s', expected '%s'", c->who, buf, want);
	if (status_caps(c->who, "CapPrm", c->cap_prm) || status_caps(c->who, "CapEff", c->cap_eff))
		return -1;
	return 0;
}

static int a_setup(void *arg)
{
	(void)arg;
	if (setgroups(a_c.ngroups, a_c.groups))
		return zdtm_err("child A: setgroups");
	if (setresgid(a_c.gid[0], a_c.gid[1], a_c.gid[2]))
		return zdtm_err("child A: setresgid");
	if (setresuid(a_c.uid[0], a_c.uid[1], a_c.uid[2]))
		return zdtm_err("child A: setresuid");
	/* unprivileged now: fsuid/fsgid may still move to one of the real/eff/saved ids */
	setfsuid(a_c.uid[3]);
	setfsgid(a_c.gid[3]);
	if ((uid_t)setfsuid(-1) != a_c.uid[3] || (gid_t)setfsgid(-1) != a_c.gid[3])
		return zdtm_fail("child A: setfsuid/setfsgid did not stick");
	return 0;
}

static int a_check(void *arg)
{
	struct stat st;
	int fd;

	(void)arg;
	if (verify(&a_c))
		return -1;
	fd = openat(dirfd, "made-by-a", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return zdtm_err("child A: create a file in the shared directory");
	if (fstat(fd, &st))
		return zdtm_err("fstat");
	close(fd);
	if (st.st_uid != a_c.uid[3] || st.st_gid != a_c.gid[3])
		return zdtm_fail("child A: new file owned by %u:%u, expected fsuid:fsgid %u:%u",
				 st.st_uid, st.st_gid, a_c.uid[3], a_c.gid[3]);
	return 0;
}

static int b_setup(void *arg)
{
	(void)arg;
	if (setgroups(b_c.ngroups, b_c.groups))
		return zdtm_err("child B: setgroups");
	if (setresuid(-1, b_c.uid[1], -1))
		return zdtm_err("child B: setresuid");
	return 0;
}

static int b_check(void *arg)
{
	(void)arg;
	if (verify(&b_c))
		return -1;
	/* the saved uid 0 and the permitted set let it become root again */
	if (seteuid(0))
		return zdtm_err("child B: seteuid(0) with saved uid 0");
	b_c.uid[1] = b_c.uid[3] = 0;
	b_c.cap_eff = "";
	b_c.who = "child B after seteuid(0)";
	return verify(&b_c);
}

static int setup(void)
{
	static const struct zdtm_task a = { .setup = a_setup, .check = a_check };
	static const struct zdtm_task b = { .setup = b_setup, .check = b_check };

	if (zdtm_proc_status(0, "CapPrm", full_caps, sizeof(full_caps)) || caps_value(full_caps))
		return zdtm_fail("the test needs a privileged root (CapPrm %s)", full_caps);
	if (mkdir("shared", 0777) || chmod("shared", 0777))
		return zdtm_err("mkdir shared");
	dirfd = open("shared", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dirfd < 0)
		return zdtm_err("open shared");
	child_a = zdtm_child(&a);
	if (child_a <= 0)
		return -1;
	child_b = zdtm_child(&b);
	if (child_b <= 0)
		return -1;
	if (setgroups(root_c.ngroups, root_c.groups))
		return zdtm_err("setgroups");
	if (setresgid(-1, -1, root_c.gid[2]))
		return zdtm_err("setresgid");
	root_set = true;
	return 0;
}

static int check(void)
{
	int rc = 0;

	if (!root_set)
		return zdtm_fail("credentials never changed: setup did not run");
	if (verify(&root_c))
		rc = -1;
	if (zdtm_child_check(child_a))
		rc = -1;
	if (zdtm_child_check(child_b))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
