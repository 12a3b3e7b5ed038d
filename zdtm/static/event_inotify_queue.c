/* Queued, unread inotify events survive C/R: operations in setup on a watched directory
 * and file leave ten events in the queue (creations, a rename pair with its cookie, a
 * write, a deletion, a watch's IN_DELETE_SELF + IN_IGNORED); at check they are all still
 * there, in order, with their wds, masks, cookies and names, and new events follow them. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

enum { W_DIR, W_FILE, W_DOOMED, NW };

static const char *paths[NW] = { "iq_dir", "iq_file", "iq_dir/doomed" };
static const uint32_t masks[NW] = {
	IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO,
	IN_MODIFY | IN_CLOSE_WRITE,
	IN_DELETE_SELF,
};
static int wds[NW] = { -1, -1, -1 };
static int ifd = -1;

struct ev {
	int w;
	uint32_t mask;
	const char *name;
};

static const struct ev queued[] = {
	{ W_DIR, IN_CREATE, "one" },
	{ W_DIR, IN_CREATE, "two" },
	{ W_DIR, IN_MOVED_FROM, "one" },
	{ W_DIR, IN_MOVED_TO, "three" },
	{ W_FILE, IN_MODIFY, "" },
	{ W_FILE, IN_CLOSE_WRITE, "" },
	{ W_DOOMED, IN_DELETE_SELF, "" },
	{ W_DOOMED, IN_IGNORED, "" },
	{ W_DIR, IN_DELETE, "doomed" },
	{ W_DIR, IN_DELETE, "two" },
};
#define NQ (sizeof(queued) / sizeof(queued[0]))

static int setup(void)
{
	int fd;

	if (mkdir("iq_dir", 0755))
		return zdtm_err("mkdir");
	if (close(open("iq_file", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("iq_dir/doomed", O_CREAT | O_WRONLY, 0644)))
		return zdtm_err("create files");
	ifd = inotify_init1(IN_NONBLOCK);
	if (ifd < 0)
		return zdtm_err("inotify_init1");
	for (int i = 0; i < NW; i++) {
		wds[i] = inotify_add_watch(ifd, paths[i], masks[i]);
		if (wds[i] < 0)
			return zdtm_err("inotify_add_watch(%s)", paths[i]);
	}
	/* the operations behind the queued events, in order */
	if (close(open("iq_dir/one", O_CREAT | O_WRONLY, 0644)) ||
	    close(open("iq_dir/two", O_CREAT | O_WRONLY, 0644)) ||
	    rename("iq_dir/one", "iq_dir/three"))
		return zdtm_err("create/rename");
	fd = open("iq_file", O_WRONLY);
	if (fd < 0 || write(fd, "queued", 6) != 6 || close(fd))
		return zdtm_err("write iq_file");
	if (unlink("iq_dir/doomed") || unlink("iq_dir/two"))
		return zdtm_err("unlink");
	return 0;
}

static int check_events(const struct ev *evs, int n, const char *when)
{
	static char buf[8192] __attribute__((aligned(8)));
	ssize_t len = read(ifd, buf, sizeof(buf));
	uint32_t cookie = 0;
	int k = 0;

	if (len < 0 && errno != EAGAIN)
		return zdtm_err("read inotify %d", ifd);
	for (char *p = buf; len > 0 && p < buf + len; k++) {
		struct inotify_event *e = (struct inotify_event *)p;
		const char *name = e->len ? e->name : "";

		p += sizeof(*e) + e->len;
		if (k >= n)
			return zdtm_fail("%s: extra inotify event #%d: wd %d mask %#x name '%s'", when,
					 k, e->wd, e->mask, name);
		if (e->wd != wds[evs[k].w] || e->mask != evs[k].mask || strcmp(name, evs[k].name))
			return zdtm_fail("%s: inotify event #%d: wd %d mask %#x name '%s', expected "
					 "wd %d mask %#x name '%s'", when, k, e->wd, e->mask, name,
					 wds[evs[k].w], evs[k].mask, evs[k].name);
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
				 "%#x name '%s'", when, k, n, wds[evs[k].w], evs[k].mask,
				 evs[k].name);
	return 0;
}

static int check(void)
{
	static const struct ev later[] = { { W_DIR, IN_CREATE, "four" } };
	int avail = -1;

	if (ifd < 0)
		return zdtm_fail("setup never ran: no inotify");
	if (ioctl(ifd, FIONREAD, &avail) || avail <= 0)
		return zdtm_fail("inotify %d: %d bytes queued (FIONREAD), expected %zu events", ifd,
				 avail, NQ);
	if (check_events(queued, NQ, "queued before C/R"))
		return -1;
	if (close(open("iq_dir/four", O_CREAT | O_WRONLY, 0644)))
		return zdtm_err("create iq_dir/four");
	return check_events(later, 1, "after reading the queue");
}

ZDTM_TEST(.setup = setup, .check = check);
