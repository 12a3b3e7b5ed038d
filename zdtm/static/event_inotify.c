/* inotify watches survive C/R: two instances, watches on directories and files in the cwd
 * with their own masks (IN_EXCL_UNLINK, IN_ONESHOT too) and a gap in the wd numbers left by
 * a removed watch. Checked with fdinfo (wd, inode, device, mask) and with the exact events
 * (wd, mask, cookie, name) that file operations after C/R produce. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "zdtm.h"

struct watch {
	const char *path;
	int inst;		/* which inotify instance */
	uint32_t mask;
	int wd;
	bool gone;		/* removed (oneshot fired) at check time */
};

static struct watch ws[] = {
	{ "in_dir", 0, IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_EXCL_UNLINK |
		       IN_ONLYDIR, -1, false },
	{ "in_file", 0, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE, -1, false },
	{ "in_removed", 0, IN_ALL_EVENTS, -1, true },	/* removed in setup: a wd gap */
	{ "in_sub", 0, IN_CREATE | IN_ONESHOT, -1, false },
	{ "in_dir/a", 0, IN_ATTRIB | IN_DELETE_SELF, -1, false },
	{ "in_other", 1, IN_CREATE, -1, false },
};
#define NW (sizeof(ws) / sizeof(ws[0]))
#define REMOVED 2
#define ONESHOT 3

static int ifd[2] = { -1, -1 };

struct ev {
	int w;			/* index into ws */
	uint32_t mask;
	const char *name;	/* "" for none */
};

static int setup(void)
{
	char buf[4096];

	if (mkdir("in_dir", 0755) || mkdir("in_sub", 0755) || mkdir("in_other", 0755))
		return zdtm_err("mkdir");
	if (close(open("in_dir/a", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("in_file", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("in_removed", O_CREAT | O_WRONLY, 0644)))
		return zdtm_err("create files");
	ifd[0] = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ifd[1] = inotify_init1(IN_NONBLOCK);
	if (ifd[0] < 0 || ifd[1] < 0)
		return zdtm_err("inotify_init1");
	for (size_t i = 0; i < NW; i++) {
		ws[i].wd = inotify_add_watch(ifd[ws[i].inst], ws[i].path, ws[i].mask);
		if (ws[i].wd < 0)
			return zdtm_err("inotify_add_watch(%s)", ws[i].path);
	}
	if (inotify_rm_watch(ifd[0], ws[REMOVED].wd))
		return zdtm_err("inotify_rm_watch");
	/* drain IN_IGNORED of the removed watch: the queues start empty */
	while (read(ifd[0], buf, sizeof(buf)) > 0)
		;
	return 0;
}

/* Every live watch of instance inst appears in its fdinfo with its inode, device, mask. */
static int check_fdinfo(int inst)
{
	static char buf[8192];
	char path[64], key[32], *p;
	int lines = 0, want = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ifd[inst]);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	for (p = strstr(buf, "inotify wd:"); p; p = strstr(p + 1, "inotify wd:"))
		lines++;
	for (size_t i = 0; i < NW; i++) {
		const struct watch *w = &ws[i];
		unsigned long ino;
		unsigned int sdev, mask, shown;
		struct stat st;

		if (w->inst != inst || w->gone)
			continue;
		want++;
		snprintf(key, sizeof(key), "inotify wd:%x ", w->wd);
		p = strstr(buf, key);
		if (!p)
			return zdtm_fail("inotify %d: watch %d on %s is not in fdinfo", ifd[inst],
					 w->wd, w->path);
		if (sscanf(p + strlen(key), "ino:%lx sdev:%x mask:%x", &ino, &sdev, &mask) != 3)
			return zdtm_fail("inotify %d: cannot parse '%.100s'", ifd[inst], p);
		if (stat(w->path, &st))
			return zdtm_err("stat %s", w->path);
		/* fdinfo shows the kernel's dev_t encoding: major << 20 | minor */
		if (ino != st.st_ino || sdev != (major(st.st_dev) << 20 | minor(st.st_dev)))
			return zdtm_fail("inotify watch %d: inode %lx dev %x, but %s is %lx %x", w->wd,
					 ino, sdev, w->path, (unsigned long)st.st_ino,
					 major(st.st_dev) << 20 | minor(st.st_dev));
		shown = w->mask & (IN_ALL_EVENTS | IN_ONESHOT | IN_EXCL_UNLINK);
		if (mask != shown)
			return zdtm_fail("inotify watch %d on %s: mask %#x, expected %#x", w->wd,
					 w->path, mask, shown);
	}
	if (lines != want)
		return zdtm_fail("inotify %d: %d watches in fdinfo, expected %d", ifd[inst], lines,
				 want);
	return 0;
}

/* Read instance inst's queue and compare it with the n expected events. */
static int check_events(int inst, const struct ev *evs, int n, const char *when)
{
	static char buf[8192] __attribute__((aligned(8)));
	ssize_t len = read(ifd[inst], buf, sizeof(buf));
	uint32_t cookie = 0;
	int k = 0;

	if (len < 0 && errno != EAGAIN)
		return zdtm_err("read inotify %d", ifd[inst]);
	for (char *p = buf; len > 0 && p < buf + len; k++) {
		struct inotify_event *e = (struct inotify_event *)p;
		const char *name = e->len ? e->name : "";
		int wd = k < n ? ws[evs[k].w].wd : -1;

		p += sizeof(*e) + e->len;
		if (k >= n)
			return zdtm_fail("%s: extra inotify event #%d: wd %d mask %#x name '%s'", when,
					 k, e->wd, e->mask, name);
		if (e->wd != wd || e->mask != evs[k].mask || strcmp(name, evs[k].name))
			return zdtm_fail("%s: inotify event #%d: wd %d mask %#x name '%s', expected "
					 "wd %d mask %#x name '%s'", when, k, e->wd, e->mask, name,
					 wd, evs[k].mask, evs[k].name);
		if (e->mask & (IN_MOVED_FROM | IN_MOVED_TO)) {
			if (!e->cookie || (cookie && e->cookie != cookie))
				return zdtm_fail("%s: rename cookies %u and %u", when, cookie,
						 e->cookie);
			cookie = e->cookie;
		} else if (e->cookie) {
			return zdtm_fail("%s: event #%d has cookie %u", when, k, e->cookie);
		}
	}
	if (k != n)
		return zdtm_fail("%s: %d inotify events, expected %d; first missing: wd %d mask "
				 "%#x name '%s'", when, k, n, ws[evs[k].w].wd, evs[k].mask,
				 evs[k].name);
	return 0;
}

static int check(void)
{
	static const struct ev evs0[] = {
		{ 0, IN_CREATE, "new" },
		{ 0, IN_MOVED_FROM, "new" },
		{ 0, IN_MOVED_TO, "new2" },
		{ 0, IN_DELETE, "new2" },
		{ 1, IN_MODIFY, "" },
		{ 1, IN_ATTRIB, "" },
		{ 1, IN_CLOSE_WRITE, "" },
		{ 4, IN_ATTRIB, "" },
		{ ONESHOT, IN_CREATE, "x" },
		{ ONESHOT, IN_IGNORED, "" },
	};
	static const struct ev evs1[] = { { 5, IN_CREATE, "t" } };
	int fd;

	if (ifd[0] < 0)
		return zdtm_fail("setup never ran: no inotify");
	if (check_fdinfo(0) || check_fdinfo(1))
		return -1;
	if (check_events(0, NULL, 0, "after restore") || check_events(1, NULL, 0, "after restore"))
		return -1;
	if (!(fcntl(ifd[0], F_GETFD) & FD_CLOEXEC) || (fcntl(ifd[1], F_GETFD) & FD_CLOEXEC))
		return zdtm_fail("inotify fd flags changed");

	/* Operations after C/R, one of each kind. */
	fd = open("in_dir/new", O_CREAT | O_WRONLY, 0644);
	if (fd < 0 || close(fd) || rename("in_dir/new", "in_dir/new2") || unlink("in_dir/new2"))
		return zdtm_err("create/rename/unlink in in_dir");
	fd = open("in_file", O_WRONLY);
	if (fd < 0 || write(fd, "x", 1) != 1 || fchmod(fd, 0600) || close(fd))
		return zdtm_err("write/chmod in_file");
	if (chmod("in_dir/a", 0600))
		return zdtm_err("chmod in_dir/a");
	if (close(open("in_sub/x", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("in_sub/y", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("in_other/t", O_CREAT | O_WRONLY, 0644)))
		return zdtm_err("create files");
	ws[ONESHOT].gone = true;
	if (check_events(0, evs0, sizeof(evs0) / sizeof(evs0[0]), "instance 1") ||
	    check_events(1, evs1, 1, "instance 2"))
		return -1;
	/* the oneshot watch is gone now */
	return check_fdinfo(0);
}

ZDTM_TEST(.setup = setup, .check = check);
