/* Open file description locks (F_OFD_SETLK) survive C/R with their owners: the locks of
 * description A (also reached through its dup D) and of description C on the same file
 * conflict with a fresh description exactly, D sees only C's locks, and closing A keeps
 * them while D still holds the description. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "zdtm.h"

#define PATH "ofd-file"
#define NR 7

struct range {
	short type;		/* F_RDLCK, F_WRLCK; F_UNLCK for a gap */
	char owner;		/* 'A', 'C', or 0 for a gap */
	off_t start, len;
};

static const struct range ranges[NR] = {
	{ F_RDLCK, 'A', 0, 50 },
	{ F_WRLCK, 'A', 100, 50 },
	{ F_RDLCK, 'A', 4096, 0 },
	{ F_WRLCK, 'C', 200, 50 },
	{ F_RDLCK, 'C', 300, 1 },
	{ F_UNLCK, 0, 50, 50 },
	{ F_UNLCK, 0, 301, 3795 },
};

static int fd_a = -1, fd_c = -1, fd_d = -1;

static const char *tname(int t)
{
	return t == F_RDLCK ? "F_RDLCK" : t == F_WRLCK ? "F_WRLCK" : t == F_UNLCK ? "F_UNLCK" : "?";
}

static int setup(void)
{
	fd_a = open(PATH, O_RDWR | O_CREAT | O_EXCL, 0644);
	fd_c = open(PATH, O_RDWR);
	if (fd_a < 0 || fd_c < 0)
		return zdtm_err("open %s twice", PATH);
	for (int k = 0; k < NR; k++) {
		const struct range *r = &ranges[k];
		struct flock fl = { .l_type = r->type, .l_whence = SEEK_SET,
				    .l_start = r->start, .l_len = r->len };

		if (!r->owner)
			continue;
		if (fcntl(r->owner == 'A' ? fd_a : fd_c, F_OFD_SETLK, &fl))
			return zdtm_err("F_OFD_SETLK %s [%lld, +%lld) on %c", tname(r->type),
					(long long)r->start, (long long)r->len, r->owner);
	}
	fd_d = dup(fd_a);
	if (fd_d < 0)
		return zdtm_err("dup");
	return 0;
}

/* F_OFD_GETLK with both probe types on every range from fd, which is description `self`
 * (0: unrelated); held: which owners' locks still exist. */
static int probe(int fd, char self, const char *held)
{
	for (int k = 0; k < NR; k++) {
		const struct range *r = &ranges[k];
		bool live = r->owner && r->owner != self && strchr(held, r->owner);
		short want[2] = { live ? r->type : F_UNLCK,
				  live && r->type == F_WRLCK ? F_WRLCK : F_UNLCK };
		short type[2] = { F_WRLCK, F_RDLCK };

		for (int p = 0; p < 2; p++) {
			struct flock fl = { .l_type = type[p], .l_whence = SEEK_SET,
					    .l_start = r->start, .l_len = r->len };

			if (fcntl(fd, F_OFD_GETLK, &fl))
				return zdtm_err("F_OFD_GETLK on fd %d", fd);
			if (fl.l_type != want[p])
				return zdtm_fail("fd %d (%c) probing [%lld, +%lld) with %s finds %s, "
						 "expected %s (held by %s)", fd, self ? self : '-',
						 (long long)r->start, (long long)r->len,
						 tname(type[p]), tname(fl.l_type), tname(want[p]),
						 held);
			if (fl.l_type == F_UNLCK)
				continue;
			if (fl.l_start != r->start || fl.l_len != r->len || fl.l_pid != -1)
				return zdtm_fail("fd %d: conflicting %s lock is [%lld, +%lld) pid %d, "
						 "expected [%lld, +%lld) pid -1", fd,
						 tname(fl.l_type), (long long)fl.l_start,
						 (long long)fl.l_len, fl.l_pid, (long long)r->start,
						 (long long)r->len);
		}
	}
	return 0;
}

/* How many OFDLCK lock: lines the fdinfo of fd shows. */
static int fdinfo_locks(int fd)
{
	char path[64], buf[8192], *line, *save;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "lock:", 5) && strstr(line, " OFDLCK ") && strstr(line, " -1 "))
			n++;
	return n;
}

static int check(void)
{
	int fresh, n;

	if (fcntl(fd_a, F_GETFD) < 0 || fcntl(fd_c, F_GETFD) < 0 || fcntl(fd_d, F_GETFD) < 0)
		return zdtm_fail("fds A %d, C %d, D %d are not all open", fd_a, fd_c, fd_d);
	if ((n = fdinfo_locks(fd_a)) != 3)
		return zdtm_fail("fdinfo of A (fd %d) shows %d OFD locks, expected 3", fd_a, n);
	if ((n = fdinfo_locks(fd_d)) != 3)
		return zdtm_fail("fdinfo of D (fd %d, dup of A) shows %d OFD locks, expected 3",
				 fd_d, n);
	if ((n = fdinfo_locks(fd_c)) != 2)
		return zdtm_fail("fdinfo of C (fd %d) shows %d OFD locks, expected 2", fd_c, n);

	fresh = open(PATH, O_RDWR);
	if (fresh < 0)
		return zdtm_err("open %s", PATH);
	if (probe(fresh, 0, "AC") || probe(fd_d, 'A', "AC") || probe(fd_c, 'C', "AC"))
		return -1;

	/* The description, not the fd, owns the lock: A's locks live on through D. */
	close(fd_a);
	fd_a = -1;
	if (probe(fresh, 0, "AC"))
		return -1;
	close(fd_d);
	fd_d = -1;
	if (probe(fresh, 0, "C"))
		return -1;
	close(fd_c);
	fd_c = -1;
	if (probe(fresh, 0, ""))
		return -1;
	close(fresh);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
