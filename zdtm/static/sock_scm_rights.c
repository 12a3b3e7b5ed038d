/* Files in flight: SCM_RIGHTS messages queued on a unix datagram socketpair and not
 * received. At check time they are received and must be the same objects: a pipe that
 * exists only in flight (with data, then EOF), a file description also held locally
 * (shared offset, flags), a pipe write end and a socketpair end whose partners are held. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define FILE_ "scm.dat"
#define FILE_LEN 4096
#define FILE_OFF 123
#define PIPE_A_LEN 3000
#define PIPE_B_LEN 100
#define SEED 0x5c3

static int sp[2] = { -1, -1 };
static int file_keep = -1;	/* shares its description with the file sent in M1 */
static int pipe_b_r = -1;	/* read end of the pipe whose write end is in M2 */
static int q0 = -1;		/* partner of the socket end in M2 */

static const char *const payload[] = { "m0-pipe-in-flight-only", "m1-file", "m2-pipe-and-sock",
				       "m3-no-fds" };
static const int nfds[] = { 1, 1, 2, 0 };
#define NMSG 4

static int send_fds(int i, const int *fds)
{
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { (void *)payload[i], strlen(payload[i]) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *ch;

	if (nfds[i]) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(nfds[i] * sizeof(int));
		ch = CMSG_FIRSTHDR(&mh);
		ch->cmsg_level = SOL_SOCKET;
		ch->cmsg_type = SCM_RIGHTS;
		ch->cmsg_len = CMSG_LEN(nfds[i] * sizeof(int));
		memcpy(CMSG_DATA(ch), fds, nfds[i] * sizeof(int));
	}
	if (sendmsg(sp[0], &mh, MSG_DONTWAIT) != (ssize_t)iov.iov_len)
		return zdtm_err("sendmsg %s", payload[i]);
	return 0;
}

static int setup(void)
{
	char buf[FILE_LEN];
	int pa[2], pb[2], q[2], f, fds[2];

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp))
		return zdtm_err("socketpair");

	/* M0: the read end of a pipe with data, both ends closed here */
	if (pipe(pa))
		return zdtm_err("pipe");
	zdtm_fill(buf, PIPE_A_LEN, SEED, 0);
	if (write(pa[1], buf, PIPE_A_LEN) != PIPE_A_LEN)
		return zdtm_err("write pipe A");
	if (send_fds(0, &pa[0]))
		return -1;
	close(pa[0]);
	close(pa[1]);

	/* M1: a file open O_RDWR|O_APPEND at offset FILE_OFF; a dup stays here */
	f = open(FILE_, O_RDWR | O_CREAT | O_EXCL | O_APPEND, 0600);
	if (f < 0)
		return zdtm_err("create %s", FILE_);
	zdtm_fill(buf, FILE_LEN, SEED, 1000000);
	if (write(f, buf, FILE_LEN) != FILE_LEN || lseek(f, FILE_OFF, SEEK_SET) != FILE_OFF)
		return zdtm_err("fill %s", FILE_);
	if (send_fds(1, &f))
		return -1;
	file_keep = fcntl(f, F_DUPFD, 100);
	close(f);
	if (file_keep < 0)
		return zdtm_err("dup");

	/* M2: a pipe write end (read end kept, data in it) and a socketpair end (partner kept,
	 * data queued both ways) */
	if (pipe(pb) || socketpair(AF_UNIX, SOCK_STREAM, 0, q))
		return zdtm_err("pipe/socketpair");
	zdtm_fill(buf, PIPE_B_LEN, SEED, 2000000);
	if (write(pb[1], buf, PIPE_B_LEN) != PIPE_B_LEN || write(q[0], "to-q1", 5) != 5 ||
	    write(q[1], "to-q0", 5) != 5)
		return zdtm_err("write");
	fds[0] = pb[1];
	fds[1] = q[1];
	if (send_fds(2, fds))
		return -1;
	close(pb[1]);
	close(q[1]);
	pipe_b_r = pb[0];
	q0 = q[0];
	if (fcntl(pipe_b_r, F_SETFL, O_NONBLOCK) || fcntl(q0, F_SETFL, O_NONBLOCK))
		return zdtm_err("O_NONBLOCK");

	return send_fds(3, NULL);
}

/* Receive message i: its payload and exactly nfds[i] descriptors into fds. */
static int recv_msg(int i, int *fds)
{
	char buf[64], cbuf[CMSG_SPACE(8 * sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *ch;
	int n = 0;
	ssize_t len;

	len = recvmsg(sp[1], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (len < 0)
		return zdtm_err("message %d ('%s') is gone", i, payload[i]);
	if ((size_t)len != strlen(payload[i]) || memcmp(buf, payload[i], len))
		return zdtm_fail("message %d is '%.*s', expected '%s'", i, (int)len, buf,
				 payload[i]);
	if (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC))
		return zdtm_fail("message %d: flags %#x", i, mh.msg_flags);
	for (ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
		int k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
			return zdtm_fail("message %d: unexpected cmsg %d/%d", i, ch->cmsg_level,
					 ch->cmsg_type);
		if (n + k > nfds[i])
			return zdtm_fail("message %d carries more than %d fds", i, nfds[i]);
		memcpy(fds + n, CMSG_DATA(ch), k * sizeof(int));
		n += k;
	}
	if (n != nfds[i])
		return zdtm_fail("message %d ('%s') carries %d fds, expected %d", i, payload[i], n,
				 nfds[i]);
	return 0;
}

static int check_pipe_a(int fd)
{
	char buf[PIPE_A_LEN + 1];
	struct stat st;
	ssize_t n, bad;

	if (fstat(fd, &st) || !S_ISFIFO(st.st_mode) || (fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return zdtm_fail("M0: fd %d is not a pipe read end (mode %o)", fd, st.st_mode);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	n = zdtm_read_all(fd, buf, sizeof(buf));
	if (n != PIPE_A_LEN)
		return zdtm_fail("M0: the in-flight pipe holds %zd bytes, expected %d (then EOF)", n,
				 PIPE_A_LEN);
	bad = zdtm_verify(buf, n, SEED, 0);
	if (bad >= 0)
		return zdtm_fail("M0: pipe byte %zd differs", bad);
	n = read(fd, buf, 1);
	if (n != 0)
		return zdtm_fail("M0: the pipe has no writer left, but read gave %zd (%s), not EOF",
				 n, n < 0 ? strerror(errno) : "data");
	return 0;
}

static int check_file(int fd)
{
	char buf[FILE_LEN];
	struct stat a, b;
	int fl = fcntl(fd, F_GETFL);
	off_t off;
	ssize_t bad;

	if (fstat(fd, &a) || stat(FILE_, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
		return zdtm_fail("M1: fd %d is not %s", fd, FILE_);
	if ((fl & O_ACCMODE) != O_RDWR || !(fl & O_APPEND))
		return zdtm_fail("M1: file flags are %#o, expected O_RDWR|O_APPEND", fl);
	off = lseek(fd, 0, SEEK_CUR);
	if (off != FILE_OFF)
		return zdtm_fail("M1: file offset is %lld, expected %d", (long long)off, FILE_OFF);
	if (pread(fd, buf, FILE_LEN, 0) != FILE_LEN)
		return zdtm_err("M1: read %s", FILE_);
	bad = zdtm_verify(buf, FILE_LEN, SEED, 1000000);
	if (bad >= 0)
		return zdtm_fail("M1: byte %zd of %s differs", bad, FILE_);
	/* one open file description with the fd kept here */
	if (lseek(fd, 777, SEEK_SET) != 777 || lseek(file_keep, 0, SEEK_CUR) != 777)
		return zdtm_fail("M1: the received file does not share its offset with fd %d: "
				 "not the same open file", file_keep);
	return 0;
}

static int check_m2(int pw, int q1)
{
	char buf[PIPE_B_LEN + 1], c[8];
	struct stat st;
	ssize_t n, bad;

	if (fstat(pw, &st) || !S_ISFIFO(st.st_mode) || (fcntl(pw, F_GETFL) & O_ACCMODE) != O_WRONLY)
		return zdtm_fail("M2: fd %d is not a pipe write end", pw);
	if (write(pw, "via-b", 5) != 5)
		return zdtm_err("M2: write to the received pipe end");
	n = zdtm_read_all(pipe_b_r, buf, PIPE_B_LEN);
	if (n != PIPE_B_LEN || (bad = zdtm_verify(buf, n, SEED, 2000000)) >= 0)
		return zdtm_fail("M2: pipe B's old data is wrong (%zd bytes)", n);
	if (read(pipe_b_r, c, sizeof(c)) != 5 || memcmp(c, "via-b", 5))
		return zdtm_fail("M2: bytes written to the received write end did not come out of "
				 "the pipe read end %d kept here", pipe_b_r);

	if (recv(q1, c, sizeof(c), MSG_DONTWAIT) != 5 || memcmp(c, "to-q1", 5))
		return zdtm_fail("M2: the received socket lost the bytes queued to it");
	if (recv(q0, c, sizeof(c), MSG_DONTWAIT) != 5 || memcmp(c, "to-q0", 5))
		return zdtm_fail("M2: the kept socket %d lost the bytes its in-flight partner sent",
				 q0);
	if (send(q1, "ping", 4, MSG_DONTWAIT) != 4 || recv(q0, c, sizeof(c), MSG_DONTWAIT) != 4 ||
	    memcmp(c, "ping", 4))
		return zdtm_fail("M2: the received socket is not connected to fd %d", q0);
	return 0;
}

static int check(void)
{
	struct pollfd pf = { .fd = pipe_b_r, .events = POLLIN };
	int fds[NMSG][2], i, bsz;
	char c;
	ssize_t n;

	if (sp[0] < 0 || sp[1] < 0 || file_keep < 0 || pipe_b_r < 0 || q0 < 0)
		return zdtm_fail("the sockets and kept fds do not exist (setup did not run)");
	/* before anything is received, the in-flight write end keeps pipe B open */
	bsz = -1;
	if (ioctl(pipe_b_r, FIONREAD, &bsz) || bsz != PIPE_B_LEN)
		return zdtm_fail("pipe B holds %d bytes before M2 is received, expected %d", bsz,
				 PIPE_B_LEN);
	if (poll(&pf, 1, 0) != 1 || (pf.revents & POLLHUP))
		return zdtm_fail("pipe B read end %d: revents %#x: its writer in flight is gone",
				 pipe_b_r, pf.revents);
	for (i = 0; i < NMSG; i++)
		if (recv_msg(i, fds[i]))
			return -1;
	if (recv(sp[1], &c, 1, MSG_DONTWAIT) >= 0 || errno != EAGAIN)
		return zdtm_fail("more than %d messages were queued", NMSG);
	if (check_pipe_a(fds[0][0]) || check_file(fds[1][0]) || check_m2(fds[2][0], fds[2][1]))
		return -1;
	for (i = 0; i < NMSG - 1; i++) {
		close(fds[i][0]);
		if (nfds[i] > 1)
			close(fds[i][1]);
	}
	/* with the in-flight write end closed, pipe B is at EOF */
	n = read(pipe_b_r, &c, 1);
	if (n != 0)
		return zdtm_fail("pipe B: read gave %zd (%s) after its only write end was closed, "
				 "expected EOF", n, n < 0 ? strerror(errno) : "data");
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
