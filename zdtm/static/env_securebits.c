/* Securebits and keep-caps survive C/R, per process, and still act afterwards.
 *   root:    NO_CAP_AMBIENT_RAISE (+locked): raising an ambient cap fails with EPERM
 *   child A: KEEP_CAPS (set with PR_SET_KEEPCAPS), NOROOT (+locked): after dropping
 *            all uids to 1000 its permitted set is kept, its effective set cleared
 *   child B: NO_SETUID_FIXUP (+locked), KEEP_CAPS_LOCKED with keep-caps off: keep-caps
 *            cannot be turned on, and dropping its uids leaves its capabilities alone */
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtm.h"

#define ROOT_BITS (SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)
#define A_BITS (SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED)
#define B_BITS (SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED)

static char full_caps[32];	/* CapPrm/CapEff of the unchanged root */
static bool root_set;
static pid_t child_a, child_b;

static int expect_bits(const char *who, int want)
{
	int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	int keep = prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0);

	if (bits != want)
		return zdtm_fail("%s: securebits are %#x, expected %#x", who, bits, want);
	if (keep != !!(want & SECBIT_KEEP_CAPS))
		return zdtm_fail("%s: PR_GET_KEEPCAPS is %d with securebits %#x", who, keep, bits);
	return 0;
}

/* want: "0" none, "full" the root's original set */
static int expect_caps(const char *who, const char *field, const char *want)
{
	char buf[32];
	bool none;

	if (zdtm_proc_status(0, field, buf, sizeof(buf)))
		return zdtm_fail("%s: no %s line", who, field);
	none = strspn(buf, "0") == strlen(buf);
	if (!strcmp(want, "0") ? !none : strcmp(buf, full_caps))
		return zdtm_fail("%s: %s is %s, expected %s", who, field, buf,
				 !strcmp(want, "0") ? "none" : full_caps);
	return 0;
}

static int a_setup(void *arg)
{
	(void)arg;
	if (prctl(PR_SET_SECUREBITS, A_BITS & ~SECBIT_KEEP_CAPS, 0, 0, 0))
		return zdtm_err("child A: PR_SET_SECUREBITS %#x", A_BITS & ~SECBIT_KEEP_CAPS);
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
		return zdtm_err("child A: PR_SET_KEEPCAPS");
	return 0;
}

static int a_check(void *arg)
{
	(void)arg;
	if (expect_bits("child A", A_BITS))
		return -1;
	if (setresuid(1000, 1000, 1000))
		return zdtm_err("child A: setresuid 1000");
	if (expect_caps("child A after setuid", "CapPrm", "full") ||
	    expect_caps("child A after setuid", "CapEff", "0"))
		return -1;
	return 0;
}

static int b_setup(void *arg)
{
	(void)arg;
	if (prctl(PR_SET_SECUREBITS, B_BITS, 0, 0, 0))
		return zdtm_err("child B: PR_SET_SECUREBITS %#x", B_BITS);
	return 0;
}

static int b_check(void *arg)
{
	(void)arg;
	if (expect_bits("child B", B_BITS))
		return -1;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) == 0 || errno != EPERM)
		return zdtm_fail("child B: PR_SET_KEEPCAPS 1 with KEEP_CAPS_LOCKED did not fail "
				 "with EPERM");
	if (setresuid(1000, 1000, 1000))
		return zdtm_err("child B: setresuid 1000");
	if (expect_caps("child B after setuid", "CapPrm", "full") ||
	    expect_caps("child B after setuid", "CapEff", "full"))
		return -1;
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task a = { .setup = a_setup, .check = a_check };
	static const struct zdtm_task b = { .setup = b_setup, .check = b_check };
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	char eff[32];

	if (zdtm_proc_status(0, "CapPrm", full_caps, sizeof(full_caps)) ||
	    zdtm_proc_status(0, "CapEff", eff, sizeof(eff)) || strcmp(eff, full_caps))
		return zdtm_fail("the test needs a root whose effective and permitted sets agree");
	child_a = zdtm_child(&a);
	if (child_a <= 0)
		return -1;
	child_b = zdtm_child(&b);
	if (child_b <= 0)
		return -1;

	/* CAP_KILL inheritable (and permitted): only the securebit stops it going ambient */
	if (syscall(SYS_capget, &h, d))
		return zdtm_err("capget");
	d[0].inheritable |= 1u << CAP_KILL;
	if (syscall(SYS_capset, &h, d))
		return zdtm_err("capset: CAP_KILL inheritable");
	if (prctl(PR_SET_SECUREBITS, ROOT_BITS, 0, 0, 0))
		return zdtm_err("PR_SET_SECUREBITS %#x", ROOT_BITS);
	root_set = true;
	return 0;
}

static int check(void)
{
	int rc = 0;

	if (!root_set)
		return zdtm_fail("securebits never set: setup did not run");
	if (expect_bits("root", ROOT_BITS))
		rc = -1;
	else if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0) == 0 || errno != EPERM)
		rc = zdtm_fail("root: raising ambient CAP_KILL with NO_CAP_AMBIENT_RAISE did not fail "
			       "with EPERM");
	if (zdtm_child_check(child_a))
		rc = -1;
	if (zdtm_child_check(child_b))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
