/* A large sparse file unlinked while open survives C/R: its size, the data at scattered
 * offsets, zeros everywhere else, and its holes (it must not come back fully allocated). */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zdtm.h"

#define NAME "ghost_large.dat"
#define SEED 0x61a7
#define NCHUNK 16
#define BLK (1 << 20)

struct chunk {
	off_t off;
	size_t len;
};

static int fd = -1;
static off_t size;
static off_t pos;
static struct chunk chunks[NCHUNK];
static bool sparse;	/* the file had holes at setup */
static char gone[PATH_MAX + 64];

static void plan(void)
{
	off_t stride = size / NCHUNK;

	for (int i = 0; i < NCHUNK; i++) {
		chunks[i].off = stride * i + (i * 40961) % (stride / 2);
		chunks[i].len = 1 + (i * 7919) % 65536;
	}
	chunks[0].off = 0;
	chunks[NCHUNK - 1].len = 3001;
	chunks[NCHUNK - 1].off = size - 3001;	/* data up to the last byte */
}

static int setup(void)
{
	static char buf[65536];
	char cwd[PATH_MAX];
	struct stat st;

	size = zdtm_opt_long("size", 64L << 20);
	if (size < (off_t)NCHUNK * 2 * 65536)
		return zdtm_fail("--size=%lld is too small", (long long)size);
	if (!getcwd(cwd, sizeof(cwd)))
		return zdtm_err("getcwd");
	snprintf(gone, sizeof(gone), "%s/%s (deleted)", cwd, NAME);
	fd = open(NAME, O_CREAT | O_TRUNC | O_RDWR, 0600);
	if (fd < 0 || ftruncate(fd, size))
		return zdtm_err("create %s of %lld bytes", NAME, (long long)size);
	plan();
	for (int i = 0; i < NCHUNK; i++) {
		zdtm_fill(buf, chunks[i].len, SEED, chunks[i].off);
		if (pwrite(fd, buf, chunks[i].len, chunks[i].off) != (ssize_t)chunks[i].len)
			return zdtm_err("pwrite %zu bytes at %lld", chunks[i].len,
					(long long)chunks[i].off);
	}
	if (unlink(NAME) || fstat(fd, &st))
		return zdtm_err("unlink %s", NAME);
	pos = size / 3 + 5;
	if (lseek(fd, pos, SEEK_SET) != pos)
		return zdtm_err("lseek");
	sparse = (off_t)st.st_blocks * 512 < size / 2;
	zdtm_msg("ghost of %lld bytes, %lld allocated%s", (long long)size,
		 (long long)st.st_blocks * 512, sparse ? "" : " (this filesystem is not sparse)");
	return 0;
}

/* Check [off, off + len) of buf against the chunks: data inside them, zeros elsewhere. */
static int verify_block(const unsigned char *buf, off_t off, size_t len)
{
	for (size_t i = 0; i < len;) {
		off_t at = off + i;
		size_t run = len - i;
		int in = -1;

		for (int c = 0; c < NCHUNK; c++) {
			if (at >= chunks[c].off && at < chunks[c].off + (off_t)chunks[c].len) {
				in = c;
				run = chunks[c].off + chunks[c].len - at;
				break;
			}
			if (chunks[c].off > at && (size_t)(chunks[c].off - at) < run)
				run = chunks[c].off - at;
		}
		if (run > len - i)
			run = len - i;
		if (in >= 0) {
			ssize_t bad = zdtm_verify(buf + i, run, SEED, at);

			if (bad >= 0)
				return zdtm_fail("chunk %d: byte at %lld differs", in,
						 (long long)(at + bad));
		} else {
			for (size_t k = 0; k < run; k++)
				if (buf[i + k])
					return zdtm_fail("byte at %lld is %#x, expected 0 (a hole)",
							 (long long)(at + k), buf[i + k]);
		}
		i += run;
	}
	return 0;
}

static int check(void)
{
	char link[64], target[PATH_MAX + 64];
	unsigned char *buf;
	struct stat st;
	off_t cur;
	ssize_t n;

	if (fd < 0)
		return zdtm_fail("the large ghost file was never opened");
	if (fstat(fd, &st))
		return zdtm_err("fd %d is not open", fd);
	if (st.st_size != size)
		return zdtm_fail("size %lld, expected %lld", (long long)st.st_size, (long long)size);
	if (st.st_nlink != 0)
		return zdtm_fail("nlink %lu, expected 0", (unsigned long)st.st_nlink);
	if (sparse && (off_t)st.st_blocks * 512 >= size / 2)
		return zdtm_fail("%lld of %lld bytes allocated: the holes were filled",
				 (long long)st.st_blocks * 512, (long long)size);
	cur = lseek(fd, 0, SEEK_CUR);
	if (cur != pos)
		return zdtm_fail("offset %lld, expected %lld", (long long)cur, (long long)pos);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	if (strcmp(target, gone))
		return zdtm_fail("fd %d points to '%s', expected '%s'", fd, target, gone);

	buf = malloc(BLK);
	if (!buf)
		return zdtm_fail("malloc");
	for (off_t off = 0; off < size; off += BLK) {
		size_t len = size - off < BLK ? (size_t)(size - off) : BLK;

		n = pread(fd, buf, len, off);
		if (n != (ssize_t)len) {
			free(buf);
			return zdtm_fail("pread at %lld gave %zd of %zu bytes", (long long)off, n, len);
		}
		if (verify_block(buf, off, len)) {
			free(buf);
			return -1;
		}
	}
	free(buf);
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
