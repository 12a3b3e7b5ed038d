/* fanotify groups and their marks survive C/R: a non-blocking group with a directory mark
 * (FAN_MODIFY | FAN_CLOSE_WRITE on children), an ignored mask that survives modify on one
 * child and a file mark for FAN_OPEN | FAN_CLOSE_NOWRITE; a second, blocking group with an
 * unlimited queue and its own file mark. Checked with fdinfo (group flags, every mark's
 * inode, device, flags, masks) and with the events file operations after C/R produce. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "zdtm.h"

#define KERNEL_O_LARGEFILE 0100000

struct mark {
	const char *path;
	int group;
	unsigned int flags;	/* FAN_MARK_* besides FAN_MARK_ADD */
	uint64_t mask;
	unsigned int mflags;	/* as fdinfo shows them */
	unsigned int shown_mask, shown_ignored;
};

static const struct mark marks[] = {
	{ "fa_dir", 0, 0, FAN_MODIFY | FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, 0,
	  FAN_MODIFY | FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, 0 },
	{ "fa_dir/quiet", 0, FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
	  FAN_MODIFY | FAN_CLOSE_WRITE, FAN_MARK_IGNORED_SURV_MODIFY, 0,
	  FAN_MODIFY | FAN_CLOSE_WRITE },
	{ "fa_file", 0, 0, FAN_OPEN | FAN_CLOSE_NOWRITE, 0, FAN_OPEN | FAN_CLOSE_NOWRITE, 0 },
	{ "fa_file2", 1, 0, FAN_MODIFY, 0, FAN_MODIFY, 0 },
};
#define NMARKS (sizeof(marks) / sizeof(marks[0]))

static const struct {
	unsigned int flags, event_flags;
} groups[2] = {
	{ FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE },
	{ FAN_CLASS_NOTIF | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE },
};
static int gfd[2] = { -1, -1 };

static int touch(const char *path)
{
	int fd = open(path, O_CREAT | O_WRONLY, 0644);

	return fd < 0 ? -1 : close(fd);
}

static int setup(void)
{
	if (mkdir("fa_dir", 0755) || touch("fa_dir/quiet") || touch("fa_dir/loud") ||
	    touch("fa_file") || touch("fa_file2"))
		return zdtm_err("create files");
	for (int g = 0; g < 2; g++) {
		gfd[g] = fanotify_init(groups[g].flags, groups[g].event_flags);
		if (gfd[g] < 0)
			return zdtm_err("fanotify_init(%#x)", groups[g].flags);
	}
	for (size_t i = 0; i < NMARKS; i++)
		if (fanotify_mark(gfd[marks[i].group], FAN_MARK_ADD | marks[i].flags,
				  marks[i].mask, AT_FDCWD, marks[i].path))
			return zdtm_err("fanotify_mark(%s)", marks[i].path);
	return 0;
}

static int check_fdinfo(int g)
{
	static char buf[8192];
	char path[64], key[64], *p;
	unsigned int flags, eflags;
	int lines = 0, want = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", gfd[g]);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read %s", path);
	p = strstr(buf, "fanotify flags:");
	if (!p || sscanf(p, "fanotify flags:%x event-flags:%x", &flags, &eflags) != 2)
		return zdtm_fail("fd %d is not a fanotify group: '%s'", gfd[g], buf);
	/* a 64-bit kernel adds its O_LARGEFILE (0100000) to the event flags */
	if (flags != groups[g].flags || (eflags & ~KERNEL_O_LARGEFILE) != groups[g].event_flags)
		return zdtm_fail("fanotify group %d: flags %#x event-flags %#x, expected %#x %#x",
				 g, flags, eflags, groups[g].flags, groups[g].event_flags);
	for (p = strstr(buf, "fanotify ino:"); p; p = strstr(p + 1, "fanotify ino:"))
		lines++;
	if (strstr(buf, "fanotify mnt_id:") || strstr(buf, "fanotify sdev:"))
		return zdtm_fail("fanotify group %d gained a mount or filesystem mark", g);
	for (size_t i = 0; i < NMARKS; i++) {
		const struct mark *m = &marks[i];
		unsigned int sdev, mflags, mask, ign;
		struct stat st;

		if (m->group != g)
			continue;
		want++;
		if (stat(m->path, &st))
			return zdtm_err("stat %s", m->path);
		snprintf(key, sizeof(key), "fanotify ino:%lx sdev:", (unsigned long)st.st_ino);
		p = strstr(buf, key);
		if (!p)
			return zdtm_fail("fanotify group %d: no mark on %s (inode %lx) in fdinfo", g,
					 m->path, (unsigned long)st.st_ino);
		if (sscanf(p + strlen(key), "%x mflags:%x mask:%x ignored_mask:%x", &sdev, &mflags,
			   &mask, &ign) != 4)
			return zdtm_fail("fanotify group %d: cannot parse '%.120s'", g, p);
		if (sdev != (major(st.st_dev) << 20 | minor(st.st_dev)) || mflags != m->mflags ||
		    mask != m->shown_mask || ign != m->shown_ignored)
			return zdtm_fail("fanotify mark on %s: sdev %x mflags %#x mask %#x ignored %#x, "
					 "expected %x %#x %#x %#x", m->path, sdev, mflags, mask, ign,
					 major(st.st_dev) << 20 | minor(st.st_dev), m->mflags,
					 m->shown_mask, m->shown_ignored);
	}
	if (lines != want)
		return zdtm_fail("fanotify group %d: %d inode marks, expected %d", g, lines, want);
	return 0;
}

/* Read group g's events; OR each file's masks into got[] by matching inodes of paths[]. */
static int collect(int g, const char *const *paths, uint64_t *got, int n)
{
	static char buf[8192] __attribute__((aligned(8)));
	struct pollfd pfd = { .fd = gfd[g], .events = POLLIN };
	ino_t inos[8];
	struct stat st;
	ssize_t len;

	for (int i = 0; i < n; i++) {
		if (stat(paths[i], &st))
			return zdtm_err("stat %s", paths[i]);
		inos[i] = st.st_ino;
		got[i] = 0;
	}
	if (poll(&pfd, 1, 0) != 1)
		return 0;
	len = read(gfd[g], buf, sizeof(buf));
	if (len < 0)
		return errno == EAGAIN ? 0 : zdtm_err("read fanotify group %d", g);
	for (struct fanotify_event_metadata *md = (void *)buf; FAN_EVENT_OK(md, len);
	     md = FAN_EVENT_NEXT(md, len)) {
		int i;

		if (md->vers != FANOTIFY_METADATA_VERSION || md->fd < 0)
			return zdtm_fail("fanotify group %d: event version %d fd %d", g, md->vers,
					 md->fd);
		if (fstat(md->fd, &st))
			return zdtm_err("fstat fanotify event fd %d", md->fd);
		close(md->fd);
		if (md->pid != getpid())
			return zdtm_fail("fanotify group %d: event mask %#llx from pid %d, not %d", g,
					 (unsigned long long)md->mask, md->pid, getpid());
		for (i = 0; i < n && inos[i] != st.st_ino; i++)
			;
		if (i == n)
			return zdtm_fail("fanotify group %d: event mask %#llx on unexpected inode %lu",
					 g, (unsigned long long)md->mask, (unsigned long)st.st_ino);
		got[i] |= md->mask;
	}
	return 0;
}

static int check(void)
{
	static const char *const paths0[] = { "fa_dir/loud", "fa_dir/quiet", "fa_file" };
	static const uint64_t want0[] = { FAN_MODIFY | FAN_CLOSE_WRITE, 0,
					  FAN_OPEN | FAN_CLOSE_NOWRITE };
	static const char *const paths1[] = { "fa_file2" };
	uint64_t got[3];
	int fd;

	if (gfd[0] < 0)
		return zdtm_fail("setup never ran: no fanotify groups");
	if (check_fdinfo(0) || check_fdinfo(1))
		return -1;
	if (!(fcntl(gfd[0], F_GETFL) & O_NONBLOCK) || (fcntl(gfd[1], F_GETFL) & O_NONBLOCK) ||
	    !(fcntl(gfd[0], F_GETFD) & FD_CLOEXEC) || (fcntl(gfd[1], F_GETFD) & FD_CLOEXEC))
		return zdtm_fail("fanotify fd flags changed");
	if (collect(0, paths0, got, 3) || collect(1, paths1, got, 1))
		return -1;
	if (got[0] | got[1] | got[2])
		return zdtm_fail("fanotify events queued before any operation");

	/* Operations after C/R */
	if ((fd = open("fa_dir/loud", O_WRONLY)) < 0 || write(fd, "x", 1) != 1 || close(fd) ||
	    (fd = open("fa_dir/quiet", O_WRONLY)) < 0 || write(fd, "x", 1) != 1 || close(fd) ||
	    (fd = open("fa_file", O_RDONLY)) < 0 || close(fd) ||
	    (fd = open("fa_file2", O_WRONLY)) < 0 || write(fd, "x", 1) != 1 || close(fd))
		return zdtm_err("file operations");

	if (collect(0, paths0, got, 3))
		return -1;
	for (int i = 0; i < 3; i++)
		if (got[i] != want0[i])
			return zdtm_fail("fanotify group 0: %s got events %#llx, expected %#llx",
					 paths0[i], (unsigned long long)got[i],
					 (unsigned long long)want0[i]);
	if (collect(1, paths1, got, 1))
		return -1;
	if (got[0] != FAN_MODIFY)
		return zdtm_fail("fanotify group 1: fa_file2 got events %#llx, expected %#x",
				 (unsigned long long)got[0], FAN_MODIFY);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
