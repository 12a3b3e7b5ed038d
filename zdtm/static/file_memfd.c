/* memfds held as fds survive C/R with their seals, MFD_* flags, mode, holes and fd state:
 *  A: sealable (F_SEAL_SHRINK|F_SEAL_GROW), sparse (data pages 0-1 and 20, a partial last
 *     page), held by fd a (O_NONBLOCK, offset), its dup and a read-only reopen (its own
 *     offset, close-on-exec); a child maps page 20 shared and stores to it at check time:
 *     the parent reads the store through fd a (one memfd across tasks);
 *  B: mapped shared writable, then sealed F_SEAL_FUTURE_WRITE|F_SEAL_SEAL: the old mapping
 *     stays writable, write() and a new writable mapping are refused;
 *  C: no MFD_ALLOW_SEALING (seals: F_SEAL_SEAL), mode 0640, held only by the child;
 *  D: MFD_NOEXEC_SEAL (F_SEAL_EXEC, mode 0666, chmod +x refused). */
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

#define BASE 0x1c0000000000UL
#define B_ADDR BASE			/* memfd B, shared, 4 pages */
#define KID_ADDR (BASE + 0x100000UL)	/* the child: memfd A page 20, shared */
#define A_PAGES 64UL
#define A_TAIL 100UL			/* A is A_PAGES pages minus this */
#define A_LATE 20UL			/* the page the child maps */
#define B_PAGES 4UL
#define C_LEN 5000UL
#define POS_A 12345
#define POS_RO 777
#define SEED_A 0x7a01
#define SEED_B 0x7a02
#define SEED_C 0x7a03
#define SEED_KID 0x7a04
#define SEED_BLATE 0x7a05

static size_t pg;
static int fa = -1, fa_dup = -1, fa_ro = -1, fb = -1, fc = -1, fdd = -1;
static int fl_a, fl_ro;
static char *bmap;
static pid_t kid;
static char name_a[64], name_c[64];

static unsigned long a_size(void)
{
	return A_PAGES * pg - A_TAIL;
}

static int seals_are(int fd, int want, const char *what)
{
	int got = fcntl(fd, F_GET_SEALS);

	if (got != want)
		return zdtm_fail("%s: F_GET_SEALS %#x, expected %#x", what, got, want);
	return 0;
}

static int link_is(int fd, const char *name)
{
	char link[64], target[256], want[256];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return zdtm_err("readlink %s", link);
	target[n] = '\0';
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
	if (strcmp(target, want))
		return zdtm_fail("fd %d is '%s', expected '%s'", fd, target, want);
	return 0;
}

static int pos_is(int fd, off_t want, const char *what)
{
	off_t pos = lseek(fd, 0, SEEK_CUR);

	if (pos != want)
		return zdtm_fail("%s: offset %lld, expected %lld", what, (long long)pos, (long long)want);
	return 0;
}

/* A's data: pages 0-1 and A_LATE, and the bytes of its partial last page. */
static bool a_data(unsigned long k)
{
	return k < 2 || k == A_LATE || k == A_PAGES - 1;
}

static int kid_setup(void *arg)
{
	(void)arg;
	if (!zdtm_map_fixed(KID_ADDR, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fa, A_LATE * pg))
		return -1;
	return 0;
}

static int kid_check(void *arg)
{
	static char buf[C_LEN];
	struct stat st;

	(void)arg;
	if (link_is(fc, name_c) || seals_are(fc, F_SEAL_SEAL, "memfd C (no MFD_ALLOW_SEALING)"))
		return 1;
	if (fstat(fc, &st))
		return zdtm_err("fstat memfd C"), 1;
	if ((st.st_mode & 07777) != 0640 || st.st_size != (off_t)C_LEN)
		return zdtm_fail("memfd C: mode %o size %lld, expected 640 and %lu", st.st_mode & 07777,
				 (long long)st.st_size, C_LEN), 1;
	if (pread(fc, buf, C_LEN, 0) != (ssize_t)C_LEN || zdtm_verify(buf, C_LEN, SEED_C, 0) >= 0)
		return zdtm_fail("memfd C: data differs"), 1;
	if (zdtm_verify((char *)KID_ADDR, pg, SEED_A, A_LATE * pg) >= 0)
		return zdtm_fail("child: its mapping of memfd A page %lu differs", A_LATE), 1;
	zdtm_fill((char *)KID_ADDR, pg, SEED_KID, 0);
	return 0;
}

static int setup(void)
{
	static char buf[65536];
	pg = sysconf(_SC_PAGESIZE);
	snprintf(name_a, sizeof(name_a), "file_memfd_a_%d", getpid());
	snprintf(name_c, sizeof(name_c), "file_memfd_c_%d", getpid());

	fa = memfd_create(name_a, MFD_ALLOW_SEALING);
	if (fa < 0 || ftruncate(fa, a_size()))
		return zdtm_err("memfd A");
	for (unsigned long k = 0; k < A_PAGES; k++) {
		unsigned long len = k == A_PAGES - 1 ? pg - A_TAIL : pg;

		if (!a_data(k))
			continue;
		zdtm_fill(buf, len, SEED_A, k * pg);
		if (pwrite(fa, buf, len, k * pg) != (ssize_t)len)
			return zdtm_err("write memfd A page %lu", k);
	}
	if (fcntl(fa, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		return zdtm_err("seal memfd A");
	fl_a = fcntl(fa, F_GETFL) | O_NONBLOCK;
	if (fcntl(fa, F_SETFL, fl_a) || lseek(fa, POS_A, SEEK_SET) != POS_A)
		return zdtm_err("memfd A flags and offset");
	fl_a = fcntl(fa, F_GETFL);
	fa_dup = dup(fa);
	snprintf(buf, 64, "/proc/self/fd/%d", fa);
	fa_ro = open(buf, O_RDONLY | O_CLOEXEC);
	if (fa_dup < 0 || fa_ro < 0 || lseek(fa_ro, POS_RO, SEEK_SET) != POS_RO)
		return zdtm_err("dup and reopen memfd A");
	fl_ro = fcntl(fa_ro, F_GETFL);

	fb = memfd_create("file_memfd_b", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (fb < 0 || ftruncate(fb, B_PAGES * pg))
		return zdtm_err("memfd B");
	bmap = zdtm_map_fixed(B_ADDR, B_PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	if (!bmap)
		return -1;
	zdtm_fill(bmap, B_PAGES * pg, SEED_B, 0);
	if (fcntl(fb, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL))
		return zdtm_err("seal memfd B");

	/* C goes with the child: the parent closes its fd once the child has it. */
	fc = memfd_create(name_c, 0);
	zdtm_fill(buf, C_LEN, SEED_C, 0);
	if (fc < 0 || zdtm_write_all(fc, buf, C_LEN) != (ssize_t)C_LEN || fchmod(fc, 0640))
		return zdtm_err("memfd C");
	kid = zdtm_child(&(struct zdtm_task){ .setup = kid_setup, .check = kid_check });
	close(fc);
	if (kid < 0)
		return -1;
	fdd = memfd_create("file_memfd_d", MFD_NOEXEC_SEAL);
	if (fdd < 0)
		return zdtm_err("memfd_create(MFD_NOEXEC_SEAL)");
	return 0;
}

static int check_a(void)
{
	static char buf[65536], zero[65536];
	struct stat st;
	int f;

	if (link_is(fa, name_a) || link_is(fa_ro, name_a) || link_is(fa_dup, name_a))
		return -1;
	if (fcntl(fa, F_GETFL) != fl_a || fcntl(fa_ro, F_GETFL) != fl_ro)
		return zdtm_fail("memfd A fds: F_GETFL %#o and %#o, expected %#o and %#o", fcntl(fa, F_GETFL),
				 fcntl(fa_ro, F_GETFL), fl_a, fl_ro);
	if (fcntl(fa, F_GETFD) != 0 || fcntl(fa_ro, F_GETFD) != FD_CLOEXEC)
		return zdtm_fail("memfd A fds: F_GETFD %d and %d", fcntl(fa, F_GETFD), fcntl(fa_ro, F_GETFD));
	if (pos_is(fa, POS_A, "memfd A fd") || pos_is(fa_ro, POS_RO, "memfd A read-only fd"))
		return -1;
	if (syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, fa, fa_dup) != 0 ||
	    syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, fa, fa_ro) == 0)
		return zdtm_fail("memfd A: its dup is not one description with it, or its reopen is");
	if (seals_are(fa, F_SEAL_SHRINK | F_SEAL_GROW, "memfd A"))
		return -1;
	if (fstat(fa, &st))
		return zdtm_err("fstat memfd A");
	if (st.st_size != (off_t)a_size())
		return zdtm_fail("memfd A is %lld bytes, expected %lu", (long long)st.st_size, a_size());
	if (st.st_blocks * 512 > (blkcnt_t)(8 * pg))
		return zdtm_fail("memfd A has %lld blocks: its holes were filled",
				 (long long)st.st_blocks);
	for (unsigned long k = 0; k < A_PAGES; k++) {
		unsigned long len = k == A_PAGES - 1 ? pg - A_TAIL : pg;

		if (pread(fa_ro, buf, len, k * pg) != (ssize_t)len)
			return zdtm_err("read memfd A page %lu", k);
		if (a_data(k) ? zdtm_verify(buf, len, SEED_A, k * pg) >= 0 : memcmp(buf, zero, len) != 0)
			return zdtm_fail("memfd A page %lu differs", k);
	}
	snprintf(buf, 64, "/proc/self/fd/%d", fa);
	f = open(buf, O_RDONLY);
	if (f < 0)
		return zdtm_err("reopen memfd A");
	if (lseek(f, 0, SEEK_HOLE) != (off_t)(2 * pg) || lseek(f, 2 * pg, SEEK_DATA) != (off_t)(A_LATE * pg)) {
		close(f);
		return zdtm_fail("memfd A: its holes moved (SEEK_HOLE/SEEK_DATA)");
	}
	close(f);
	if (ftruncate(fa, pg) == 0 || errno != EPERM || pwrite(fa, "x", 1, a_size()) >= 0 || errno != EPERM)
		return zdtm_fail("memfd A: shrinking or growing it is not refused");
	return 0;
}

static int check_b(void)
{
	static char buf[4096];

	if (seals_are(fb, F_SEAL_FUTURE_WRITE | F_SEAL_SEAL, "memfd B") ||
	    fcntl(fb, F_GETFD) != FD_CLOEXEC)
		return zdtm_fail("memfd B: seals or close-on-exec lost");
	if (zdtm_verify(bmap, B_PAGES * pg, SEED_B, 0) >= 0)
		return zdtm_fail("memfd B: its mapping differs");
	zdtm_fill(bmap + pg, pg, SEED_BLATE, 0);	/* mapped before the seal: still writable */
	if (pread(fb, buf, pg, pg) != (ssize_t)pg || zdtm_verify(buf, pg, SEED_BLATE, 0) >= 0)
		return zdtm_fail("memfd B: a store through its old mapping is not in the file");
	if (pwrite(fb, "x", 1, 0) >= 0 || errno != EPERM)
		return zdtm_fail("memfd B: write() is not refused by F_SEAL_FUTURE_WRITE");
	if (mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0) != MAP_FAILED || errno != EPERM)
		return zdtm_fail("memfd B: a new writable shared mapping is not refused");
	if (fcntl(fb, F_ADD_SEALS, F_SEAL_SHRINK) == 0 || errno != EPERM)
		return zdtm_fail("memfd B: F_SEAL_SEAL does not refuse more seals");
	return 0;
}

static int check_d(void)
{
	struct stat st;

	if (seals_are(fdd, F_SEAL_EXEC, "memfd D (MFD_NOEXEC_SEAL)") || fstat(fdd, &st))
		return -1;
	if ((st.st_mode & 07777) != 0666)
		return zdtm_fail("memfd D: mode %o, expected 666", st.st_mode & 07777);
	if (fchmod(fdd, 0777) == 0 || errno != EPERM)
		return zdtm_fail("memfd D: chmod +x is not refused by F_SEAL_EXEC");
	if (fcntl(fdd, F_GETFD) != 0)
		return zdtm_fail("memfd D: close-on-exec set");
	return 0;
}

static int do_check(void)
{
	static char buf[4096];

	pg = sysconf(_SC_PAGESIZE);
	if (fa < 0 || fb < 0 || fdd < 0 || !bmap || kid <= 0)
		return zdtm_fail("the memfds were never set up");
	if (check_a() || check_b() || check_d())
		return -1;
	if (zdtm_child_check(kid))
		return -1;
	kid = 0;
	if (pread(fa, buf, pg, A_LATE * pg) != (ssize_t)pg || zdtm_verify(buf, pg, SEED_KID, 0) >= 0)
		return zdtm_fail("memfd A page %lu: the child's store through its mapping is not seen "
				 "through the parent's fd (not one memfd)", A_LATE);
	return 0;
}

static int check(void)
{
	int rc = do_check();

	if (kid > 0) {
		kill(kid, SIGKILL);
		waitpid(kid, NULL, 0);
	}
	return rc;
}

ZDTM_TEST(.setup = setup, .check = check);
