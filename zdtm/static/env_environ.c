/* The environment and argv survive C/R: the glibc environ array (with variables set,
 * replaced and removed by setenv/putenv/unsetenv), the original argument and environment
 * areas the kernel shows in /proc/self/cmdline and /proc/self/environ, and argv[0]
 * rewritten in place (setproctitle style), which /proc/self/cmdline must reflect. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "zdtm.h"

#define AREA_MAX 65536
#define ENV_MAX 512

extern char **environ;

static int start_argc;
static char **start_argv;

static char cmdline[AREA_MAX], environ_area[AREA_MAX];
static ssize_t cmdline_len = -1, environ_area_len = -1;
static char *saved_env[ENV_MAX];	/* copies of the environ strings after setup */
static int saved_envc = -1;
static char set_value[128], put_string[128], argv0[4096];

/* glibc passes (argc, argv, envp) to ELF constructors: the only way to see the real argv. */
__attribute__((constructor)) static void grab_argv(int argc, char **argv, char **envp)
{
	(void)envp;
	start_argc = argc;
	start_argv = argv;
}

static ssize_t read_area(const char *path, char *buf)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = zdtm_read_all(fd, buf, AREA_MAX);
	close(fd);
	return n;
}

/* The argument area is contiguous: argv[i] sits at a fixed offset from argv[0]. (The library
 * cut "--name=value" at '=' in place, so the strings are not what strlen would join.) */
static long argv_offset[64];

static void save_offsets(void)
{
	for (int i = 0; i < start_argc && i < 64; i++)
		argv_offset[i] = start_argv[i] - start_argv[0];
}

static int setup(void)
{
	char name[64], *base;
	int i;

	if (!start_argv || start_argc < 1)
		return zdtm_fail("the constructor did not see argv");

	/* Rewrite argv[0] in place: the basename in upper case, the rest of the path kept. */
	base = strrchr(start_argv[0], '/');
	base = base ? base + 1 : start_argv[0];
	for (char *p = base; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = *p - 'a' + 'A';
	snprintf(argv0, sizeof(argv0), "%s", start_argv[0]);

	snprintf(name, sizeof(name), "ZDTM_ENV_SET_%d", getpid());
	snprintf(set_value, sizeof(set_value), "value with spaces=and=equals %d", getpid());
	if (setenv(name, set_value, 1))
		return zdtm_err("setenv %s", name);
	if (setenv("ZDTM_ENV_EMPTY", "", 1))
		return zdtm_err("setenv ZDTM_ENV_EMPTY");
	snprintf(put_string, sizeof(put_string), "ZDTM_ENV_PUT=%x", 0xc0ffee ^ getpid());
	if (putenv(put_string))	/* the string itself becomes part of the environment */
		return zdtm_err("putenv");
	if (setenv("ZDTM_ENV_GONE", "x", 1) || unsetenv("ZDTM_ENV_GONE"))
		return zdtm_err("setenv/unsetenv ZDTM_ENV_GONE");
	/* Replace the first inherited variable, if any, so an original slot changes too. */
	if (environ[0] && strncmp(environ[0], "ZDTM_", 5)) {
		char *eq = strchr(environ[0], '=');

		if (eq && eq - environ[0] < 60) {
			char var[64];

			memcpy(var, environ[0], eq - environ[0]);
			var[eq - environ[0]] = '\0';
			if (setenv(var, "replaced by env_environ", 1))
				return zdtm_err("setenv %s", var);
		}
	}

	for (i = 0; environ[i]; i++) {
		if (i == ENV_MAX)
			return zdtm_fail("more than %d environment variables", ENV_MAX);
		saved_env[i] = strdup(environ[i]);
		if (!saved_env[i])
			return zdtm_err("strdup");
	}
	saved_envc = i;

	save_offsets();
	cmdline_len = read_area("/proc/self/cmdline", cmdline);
	if (cmdline_len <= 0)
		return zdtm_err("read /proc/self/cmdline");
	environ_area_len = read_area("/proc/self/environ", environ_area);
	if (environ_area_len < 0)
		return zdtm_err("read /proc/self/environ");
	zdtm_msg("%d variables, cmdline %zd bytes, environ area %zd bytes, argv[0] %s",
		 saved_envc, cmdline_len, environ_area_len, argv0);
	return 0;
}

static int check(void)
{
	static char buf[AREA_MAX];
	char name[64];
	const char *v;
	ssize_t n;
	int i;

	if (saved_envc < 0 || cmdline_len < 0 || environ_area_len < 0)
		return zdtm_fail("no saved environment: setup did not run");

	for (i = 0; environ[i] && i < saved_envc; i++)
		if (strcmp(environ[i], saved_env[i]))
			return zdtm_fail("environ[%d] is '%.80s', expected '%.80s'", i, environ[i],
					 saved_env[i]);
	if (i != saved_envc || environ[i])
		return zdtm_fail("environ has %s%d entries, expected %d", environ[i] ? "more than " : "",
				 i, saved_envc);

	snprintf(name, sizeof(name), "ZDTM_ENV_SET_%d", getpid());
	v = getenv(name);
	if (!v || strcmp(v, set_value))
		return zdtm_fail("getenv(%s) is '%s', expected '%s'", name, v ? v : "(null)", set_value);
	v = getenv("ZDTM_ENV_EMPTY");
	if (!v || *v)
		return zdtm_fail("ZDTM_ENV_EMPTY is %s, expected set and empty", v ? v : "unset");
	if (getenv("ZDTM_ENV_GONE"))
		return zdtm_fail("ZDTM_ENV_GONE is set again after unsetenv");
	v = getenv("ZDTM_ENV_PUT");
	if (!v || v != strchr(put_string, '=') + 1)
		return zdtm_fail("ZDTM_ENV_PUT is not the putenv'd string any more (%s)",
				 v ? v : "unset");

	if (strcmp(start_argv[0], argv0))
		return zdtm_fail("argv[0] is '%s', expected '%s'", start_argv[0], argv0);
	n = read_area("/proc/self/cmdline", buf);
	if (n != cmdline_len || memcmp(buf, cmdline, n))
		return zdtm_fail("/proc/self/cmdline: %zd bytes, expected the %zd bytes seen in setup "
				 "(first: '%.60s')", n, cmdline_len, n > 0 ? buf : "");
	/* /proc/self/cmdline reads the argument area; argv must still point into it. */
	if (memcmp(start_argv[0], cmdline, cmdline_len))
		return zdtm_fail("the argument area at argv[0] (%p) differs from /proc/self/cmdline",
				 (void *)start_argv[0]);
	for (i = 0; i < start_argc && i < 64; i++)
		if (start_argv[i] - start_argv[0] != argv_offset[i])
			return zdtm_fail("argv[%d] is at offset %ld from argv[0], was %ld", i,
					 (long)(start_argv[i] - start_argv[0]), argv_offset[i]);
	n = read_area("/proc/self/environ", buf);
	if (n != environ_area_len || memcmp(buf, environ_area, n))
		return zdtm_fail("/proc/self/environ: %zd bytes, expected the %zd bytes seen in setup",
				 n, environ_area_len);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
