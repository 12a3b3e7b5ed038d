/* A mix of fds with and without FD_CLOEXEC, set every way the kernel offers (O_CLOEXEC,
 * F_SETFD on and off, dup2, dup3, F_DUPFD_CLOEXEC, pipe2, socket flags), at fixed fd
 * numbers: after C/R each fd number is the same object with exactly its F_GETFD. */
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define BASE 40
#define NFD 14

struct cfd {
	int fd;			/* fixed number, BASE + i */
	int want;		/* FD_CLOEXEC or 0 */
	mode_t type;
	ino_t ino;
};

/* 1: FD_CLOEXEC, as setup means to set it on BASE + i */
static const int pattern[NFD] = { 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0 };
static struct cfd fds[NFD];
static bool ready;

/* Move fd to number `to` without FD_CLOEXEC (dup2 always clears it). */
static int place(int fd, int to)
{
	if (fd < 0)
		return -1;
	if (fd != to) {
		if (dup2(fd, to) != to)
			return -1;
		close(fd);
	}
	return to;
}

static int setup(void)
{
	int p[2], s[2], fd, i;
	struct stat st;

	/* 0: O_CLOEXEC at open; 1: none; 2: O_CLOEXEC cleared with F_SETFD */
	fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fcntl(fd, F_DUPFD_CLOEXEC, BASE + 0) != BASE + 0)
		return zdtm_err("fd %d", BASE + 0);
	if (place(open("/dev/null", O_RDWR), BASE + 1) < 0)
		return zdtm_err("fd %d", BASE + 1);
	if (dup3(fd, BASE + 2, O_CLOEXEC) != BASE + 2 || fcntl(BASE + 2, F_SETFD, 0))
		return zdtm_err("fd %d", BASE + 2);
	close(fd);
	/* 3,4: pipe2(O_CLOEXEC) ends; 5: a plain dup of the read end */
	if (pipe2(p, O_CLOEXEC) || dup3(p[0], BASE + 3, O_CLOEXEC) != BASE + 3 ||
	    dup3(p[1], BASE + 4, O_CLOEXEC) != BASE + 4 || dup2(p[0], BASE + 5) != BASE + 5)
		return zdtm_err("pipe fds");
	close(p[0]);
	close(p[1]);
	/* 6,7: socketpair, one end SOCK_CLOEXEC, the other set with F_SETFD */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) ||
	    fcntl(s[0], F_DUPFD_CLOEXEC, BASE + 6) != BASE + 6 ||
	    place(dup(s[1]), BASE + 7) != BASE + 7 || fcntl(BASE + 7, F_SETFD, FD_CLOEXEC))
		return zdtm_err("socketpair fds");
	close(s[0]);
	close(s[1]);
	/* 8: eventfd EFD_CLOEXEC cleared; 9: eventfd plain, then set */
	fd = eventfd(3, EFD_CLOEXEC);
	if (fd < 0 || fcntl(fd, F_DUPFD_CLOEXEC, BASE + 8) != BASE + 8 ||
	    fcntl(BASE + 8, F_SETFD, 0))
		return zdtm_err("fd %d", BASE + 8);
	close(fd);
	if (place(eventfd(9, 0), BASE + 9) < 0 || fcntl(BASE + 9, F_SETFD, FD_CLOEXEC))
		return zdtm_err("fd %d", BASE + 9);
	/* 10..13: one file, alternating */
	fd = open("cloexec.dat", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
	if (fd < 0)
		return zdtm_err("open cloexec.dat");
	for (int k = 10; k < NFD; k++)
		if (dup3(fd, BASE + k, (k & 1) ? 0 : O_CLOEXEC) != BASE + k)
			return zdtm_err("dup3 to %d", BASE + k);
	close(fd);

	for (i = 0; i < NFD; i++) {
		fds[i].fd = BASE + i;
		fds[i].want = fcntl(BASE + i, F_GETFD);
		if (fstat(BASE + i, &st))
			return zdtm_err("fstat %d", BASE + i);
		fds[i].type = st.st_mode & S_IFMT;
		fds[i].ino = st.st_ino;
	}
	/* The pattern the code above means to build. */
	for (i = 0; i < NFD; i++)
		if (fds[i].want != (pattern[i] ? FD_CLOEXEC : 0))
			return zdtm_fail("fd %d: F_GETFD %d right after setup, meant %d", BASE + i,
					 fds[i].want, pattern[i]);
	ready = true;
	return 0;
}

static int check(void)
{
	struct stat st;
	int bad = 0;

	if (!ready)
		return zdtm_fail("the fds were never set up");
	for (int i = 0; i < NFD; i++) {
		int fl = fcntl(fds[i].fd, F_GETFD);

		if (fl < 0)
			return zdtm_err("fd %d is not open", fds[i].fd);
		if (fstat(fds[i].fd, &st))
			return zdtm_err("fstat %d", fds[i].fd);
		if ((st.st_mode & S_IFMT) != fds[i].type)
			return zdtm_fail("fd %d: file type %#o, expected %#o", fds[i].fd,
					 st.st_mode & S_IFMT, fds[i].type);
		/* Pipe and socket inodes are new after a restore; files are not. */
		if ((S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISCHR(st.st_mode)) &&
		    st.st_ino != fds[i].ino)
			return zdtm_fail("fd %d is inode %lu, expected %lu", fds[i].fd,
					 (unsigned long)st.st_ino, (unsigned long)fds[i].ino);
		if (fl != fds[i].want) {
			zdtm_msg("fd %d: F_GETFD %d, expected %d", fds[i].fd, fl, fds[i].want);
			bad++;
		}
	}
	if (bad)
		return zdtm_fail("%d of %d fds have the wrong FD_CLOEXEC (see above)", bad, NFD);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
