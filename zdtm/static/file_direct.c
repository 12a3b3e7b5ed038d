/* A file open with O_DIRECT keeps the flag, its offset and its data across C/R. Where the
 * filesystem enforces O_DIRECT alignment (ext4, xfs...), an unaligned write must still be
 * refused at check exactly as it was at setup: the flag is in effect, not just reported. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "direct.dat"
#define SEED 0xd1ec
#define ALIGN 4096
#define LEN (16 * ALIGN)
#define POS (3 * ALIGN)

static int fd = -1;
static int fl;
static int unaligned_errno = -1;	/* errno of an unaligned pwrite at setup, 0 if accepted */
static unsigned char *buf;

/* Rewrite byte 1 with its own value through a misaligned buffer: the data stay the same
 * either way. Returns 0 if accepted, else the errno. */
static int unaligned_write(void)
{
	unsigned char b[2];

	b[0] = buf[1];
	if (pwrite(fd, b, 1, 1) == 1)
		return 0;
	return errno;
}

static int setup(void)
{
	if (posix_memalign((void **)&buf, ALIGN, LEN + ALIGN))
		return zdtm_fail("posix_memalign");
	fd = open(NAME, O_CREAT | O_TRUNC | O_RDWR | O_DIRECT, 0644);
	if (fd < 0)
		return zdtm_err("open %s with O_DIRECT (needs: o_direct)", NAME);
	zdtm_fill(buf, LEN, SEED, 0);
	if (pwrite(fd, buf, LEN, 0) != LEN)
		return zdtm_err("O_DIRECT pwrite of %d bytes", LEN);
	if (lseek(fd, POS, SEEK_SET) != POS)
		return zdtm_err("lseek");
	fl = fcntl(fd, F_GETFL);
	if (!(fl & O_DIRECT))
		return zdtm_fail("F_GETFL %#o lacks O_DIRECT right after open", fl);
	unaligned_errno = unaligned_write();
	zdtm_msg("an unaligned O_DIRECT write %s (errno %d)",
		 unaligned_errno ? "is refused" : "is accepted here", unaligned_errno);
	return 0;
}

static int check(void)
{
	ssize_t n, bad;
	off_t pos;
	int now;

	if (fd < 0 || !buf)
		return zdtm_fail("the O_DIRECT file was never opened");
	if (fcntl(fd, F_GETFL) != fl)
		return zdtm_fail("fd %d: F_GETFL %#o, expected %#o (O_DIRECT is %#o)", fd,
				 fcntl(fd, F_GETFL), fl, O_DIRECT);
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos != POS)
		return zdtm_fail("fd %d: offset %lld, expected %d", fd, (long long)pos, POS);

	/* An aligned read through the O_DIRECT fd, from its offset. */
	n = read(fd, buf, LEN);
	if (n != LEN - POS)
		return zdtm_fail("O_DIRECT read at %d gave %zd bytes, expected %d", POS, n, LEN - POS);
	bad = zdtm_verify(buf, n, SEED, POS);
	if (bad >= 0)
		return zdtm_fail("byte %lld differs", (long long)(POS + bad));
	n = pread(fd, buf, LEN, 0);
	if (n != LEN || zdtm_verify(buf, LEN, SEED, 0) >= 0)
		return zdtm_fail("O_DIRECT pread of the whole file: %zd bytes or data differ", n);

	now = unaligned_write();
	if (now != unaligned_errno)
		return zdtm_fail("unaligned write: errno %d at check, %d at setup (O_DIRECT lost?)",
				 now, unaligned_errno);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
