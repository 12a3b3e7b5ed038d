/* SO_PASSCRED and credentials in flight: datagrams queued on a unix socketpair whose receiver
 * has SO_PASSCRED keep the SCM_CREDENTIALS they were sent with: the kernel-attached ones of
 * this task, explicit ones with other uid/gid, and those of a child task (its pid). */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtm.h"

#define FAKE_UID 1234
#define FAKE_GID 5678

static int sp[2] = { -1, -1 };
static pid_t child;
static struct ucred want[3];	/* what each message must carry */
static const char *const payload[3] = { "implicit-creds", "explicit-creds", "from-child" };

static int send_creds(int i, const struct ucred *uc)
{
	char cbuf[CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { (void *)payload[i], strlen(payload[i]) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *ch;

	if (uc) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		ch = CMSG_FIRSTHDR(&mh);
		ch->cmsg_level = SOL_SOCKET;
		ch->cmsg_type = SCM_CREDENTIALS;
		ch->cmsg_len = CMSG_LEN(sizeof(*uc));
		memcpy(CMSG_DATA(ch), uc, sizeof(*uc));
	}
	return sendmsg(sp[0], &mh, MSG_DONTWAIT) == (ssize_t)iov.iov_len ? 0 : -1;
}

static int child_send(void *arg)
{
	(void)arg;
	if (send_creds(2, NULL))
		return zdtm_err("child: send");
	return 0;
}

static int setup(void)
{
	static const struct zdtm_task t = { .setup = child_send };
	struct ucred uc;
	int one = 1;

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp))
		return zdtm_err("socketpair");
	if (setsockopt(sp[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)))
		return zdtm_err("SO_PASSCRED");

	want[0] = (struct ucred){ getpid(), getuid(), getgid() };
	if (send_creds(0, NULL))
		return zdtm_err("send implicit");

	/* other ids need CAP_SETUID/CAP_SETGID and a mapping: else our own, explicitly */
	uc = (struct ucred){ getpid(), FAKE_UID, FAKE_GID };
	if (send_creds(1, &uc)) {
		zdtm_msg("explicit uid %d/gid %d refused (%s): sending our own ids", FAKE_UID,
			 FAKE_GID, strerror(errno));
		uc = (struct ucred){ getpid(), getuid(), getgid() };
		if (send_creds(1, &uc))
			return zdtm_err("send explicit creds");
	}
	want[1] = uc;

	child = zdtm_child(&t);
	if (child < 0)
		return -1;
	want[2] = (struct ucred){ child, getuid(), getgid() };
	return 0;
}

static int check_msg(int i)
{
	char buf[64], cbuf[CMSG_SPACE(sizeof(struct ucred)) + 64];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *ch;
	struct ucred uc;
	bool got = false;
	ssize_t n;

	n = recvmsg(sp[1], &mh, MSG_DONTWAIT);
	if (n < 0)
		return zdtm_err("message %d ('%s') is gone", i, payload[i]);
	if ((size_t)n != strlen(payload[i]) || memcmp(buf, payload[i], n))
		return zdtm_fail("message %d is '%.*s', expected '%s'", i, (int)n, buf, payload[i]);
	for (ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
		if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_CREDENTIALS)
			continue;
		memcpy(&uc, CMSG_DATA(ch), sizeof(uc));
		got = true;
	}
	if (!got)
		return zdtm_fail("message %d ('%s') came without SCM_CREDENTIALS", i, payload[i]);
	if (uc.pid != want[i].pid || uc.uid != want[i].uid || uc.gid != want[i].gid)
		return zdtm_fail("message %d ('%s'): credentials pid %d uid %u gid %u, expected "
				 "pid %d uid %u gid %u", i, payload[i], uc.pid, uc.uid, uc.gid,
				 want[i].pid, want[i].uid, want[i].gid);
	return 0;
}

static int check(void)
{
	int v, i, rc = 0;
	socklen_t l;
	char c;

	if (sp[0] < 0 || sp[1] < 0)
		return zdtm_fail("the socketpair does not exist (setup did not run)");
	for (i = 0; i < 2; i++) {
		l = sizeof(v);
		if (getsockopt(sp[i], SOL_SOCKET, SO_PASSCRED, &v, &l))
			return zdtm_err("SO_PASSCRED");
		if (v != i)
			return zdtm_fail("end %d: SO_PASSCRED is %d, expected %d", i, v, i);
	}
	for (i = 0; i < 3 && !rc; i++)
		rc = check_msg(i);
	if (!rc && (recv(sp[1], &c, 1, MSG_DONTWAIT) >= 0 || errno != EAGAIN))
		rc = zdtm_fail("more than 3 messages were queued");
	if (zdtm_child_check(child))
		rc = -1;
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
