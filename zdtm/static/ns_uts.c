/* Private UTS namespaces survive C/R with their names, and tasks keep sharing them as they
 * did. The root unshares a UTS namespace and names it; child S is forked into it (shares
 * it); child O unshares again and names its own. Each checks uname() and gethostname()/
 * getdomainname(); the root checks through /proc/PID/ns/uts that S is in its namespace,
 * that O is not, and that its namespace is not the one of pid 1. */
#include <sched.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "zdtm.h"

struct names {
	char host[65], domain[65];
};

static struct names root_n, other_n;
static pid_t shared_child, other_child;

static int set_names(struct names *n, const char *tag)
{
	snprintf(n->host, sizeof(n->host), "zdtm-uts-%s-%d-", tag, getpid());
	/* 64 bytes is the limit: use it all for the root's host name */
	if (!strcmp(tag, "root")) {
		size_t len = strlen(n->host);

		for (int i = 0; len < 64; i++)
			n->host[len++] = "abcdefghijklmnopqrstuvwxyz0123456789"[i % 36];
		n->host[len] = '\0';
	}
	snprintf(n->domain, sizeof(n->domain), "%s.domain.%d.test", tag, getpid());
	if (sethostname(n->host, strlen(n->host)))
		return zdtm_err("sethostname %s", n->host);
	if (setdomainname(n->domain, strlen(n->domain)))
		return zdtm_err("setdomainname %s", n->domain);
	return 0;
}

static int check_names(const char *who, const struct names *n)
{
	struct utsname u;
	char buf[128];

	if (uname(&u))
		return zdtm_err("%s: uname", who);
	if (strcmp(u.nodename, n->host))
		return zdtm_fail("%s: nodename is '%s', expected '%s'", who, u.nodename, n->host);
	if (strcmp(u.domainname, n->domain))
		return zdtm_fail("%s: domainname is '%s', expected '%s'", who, u.domainname,
				 n->domain);
	if (gethostname(buf, sizeof(buf)) || strcmp(buf, n->host))
		return zdtm_fail("%s: gethostname gives '%s'", who, buf);
	if (getdomainname(buf, sizeof(buf)) || strcmp(buf, n->domain))
		return zdtm_fail("%s: getdomainname gives '%s'", who, buf);
	return 0;
}

static int shared_check(void *arg)
{
	(void)arg;
	return check_names("child S (root's namespace)", &root_n);
}

static int other_setup(void *arg)
{
	(void)arg;
	if (unshare(CLONE_NEWUTS))
		return zdtm_err("child O: unshare(CLONE_NEWUTS)");
	return set_names(&other_n, "other");
}

static int other_check(void *arg)
{
	(void)arg;
	return check_names("child O (own namespace)", &other_n);
}

static int ns_of(pid_t pid, struct stat *st)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/uts", pid);
	return stat(path, st);
}

static int setup(void)
{
	static const struct zdtm_task s = { .check = shared_check };
	static const struct zdtm_task o = { .setup = other_setup, .check = other_check };

	if (unshare(CLONE_NEWUTS))
		return zdtm_err("unshare(CLONE_NEWUTS)");
	if (set_names(&root_n, "root"))
		return -1;
	shared_child = zdtm_child(&s);
	if (shared_child <= 0)
		return -1;
	other_child = zdtm_child(&o);
	if (other_child <= 0)
		return -1;
	if (strlen(root_n.host) != 64)
		return zdtm_fail("root host name has %zu bytes, meant 64", strlen(root_n.host));
	return 0;
}

static int check(void)
{
	struct stat me, s, o, init;
	int rc = 0;

	if (!root_n.host[0])
		return zdtm_fail("no UTS namespace of our own: setup did not run");
	if (check_names("root", &root_n))
		rc = -1;
	if (ns_of(getpid(), &me) || ns_of(shared_child, &s) || ns_of(other_child, &o)) {
		rc = zdtm_err("stat /proc/PID/ns/uts");
	} else {
		if (me.st_ino != s.st_ino)
			rc = zdtm_fail("child S %d is in UTS namespace %lu, the root in %lu",
				       shared_child, (unsigned long)s.st_ino, (unsigned long)me.st_ino);
		if (me.st_ino == o.st_ino)
			rc = zdtm_fail("child O %d shares the root's UTS namespace %lu", other_child,
				       (unsigned long)me.st_ino);
		if (ns_of(1, &init) == 0 && init.st_ino == me.st_ino)
			rc = zdtm_fail("the root is in pid 1's UTS namespace %lu",
				       (unsigned long)me.st_ino);
	}
	if (zdtm_child_check(shared_child))
		rc = -1;
	if (zdtm_child_check(other_child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
