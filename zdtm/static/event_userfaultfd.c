/* A userfaultfd with a registered range survives C/R: API features (fdinfo), the range
 * registered for missing-page faults (smaps VmFlags "um", exactly those pages), pages
 * already filled with UFFDIO_COPY keeping their data, and a fault on a missing page after
 * C/R being reported through the uffd (address, faulting thread) and resolved by a copy. */
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "maps.h"
#include "zdtm.h"

#define NPAGES 8
#define NREG 6			/* pages 0..5 registered, 6..7 not */
#define NFILLED 2		/* pages 0..1 filled in setup */
#define FAULT_PAGE 3
#define SEED 0x0ffd
#define FEATURES (UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_EXACT_ADDRESS)

static int uffd = -1;
static char *area;
static long psz;
static volatile pid_t fault_tid;
static volatile int fault_bad = -1;

static int copy_page(int page)
{
	static char buf[65536];
	struct uffdio_copy c;

	zdtm_fill(buf, psz, SEED, (uint64_t)page * psz);
	c = (struct uffdio_copy){ .dst = (unsigned long)(area + page * psz),
				  .src = (unsigned long)buf, .len = psz };
	if (ioctl(uffd, UFFDIO_COPY, &c) || c.copy != psz)
		return zdtm_err("UFFDIO_COPY page %d (copied %lld)", page, (long long)c.copy);
	return 0;
}

static int setup(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = FEATURES };
	struct uffdio_register reg;
	int fd;

	psz = sysconf(_SC_PAGESIZE);
	if (psz > 65536)
		return zdtm_fail("page size %ld", psz);
	fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return zdtm_err("userfaultfd");
	if (ioctl(fd, UFFDIO_API, &api))
		return zdtm_err("UFFDIO_API");
	area = mmap(NULL, NPAGES * psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		return zdtm_err("mmap");
	reg = (struct uffdio_register){ .range = { (unsigned long)area, NREG * psz },
					.mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		return zdtm_err("UFFDIO_REGISTER");
	uffd = fd;
	for (int p = 0; p < NFILLED; p++)
		if (copy_page(p))
			return -1;
	return 0;
}

/* The VMA starting at start: its end and whether VmFlags has "um". */
static int vma_info(unsigned long start, unsigned long *end, bool *um)
{
	struct zdtm_vma v;
	char flags[256];

	if (zdtm_vmflags(start, flags, sizeof(flags)) ||
	    zdtm_maps_read(0, start, start + 1, &v, 1) < 0)
		return -1;
	*end = v.end;
	*um = zdtm_has_vmflag(flags, "um");
	return 0;
}

static void *toucher(void *arg)
{
	char *page = arg, buf[64];

	(void)buf;
	__atomic_store_n(&fault_tid, zdtm_gettid(), __ATOMIC_SEQ_CST);
	__asm__ volatile("" ::: "memory");	/* publish the tid before the fault */
	/* blocks until the fault is resolved through the uffd */
	memcpy(buf, page + 100, sizeof(buf));
	fault_bad = zdtm_verify(buf, sizeof(buf), SEED, (uint64_t)FAULT_PAGE * psz + 100) >= 0;
	return NULL;
}

static int check(void)
{
	char path[64], buf[512], *p;
	unsigned long long api, ioctls;
	unsigned int features;
	unsigned long end;
	struct uffd_msg msg;
	struct pollfd pfd;
	pthread_t th;
	ssize_t bad;
	bool um;

	if (uffd < 0)
		return zdtm_fail("setup never ran: no userfaultfd");
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", uffd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return zdtm_err("read fdinfo of fd %d", uffd);
	p = strstr(buf, "API:");
	if (!p || sscanf(p, "API:\t%llx:%x:%llx", &api, &features, &ioctls) != 3)
		return zdtm_fail("fd %d is not a userfaultfd: '%s'", uffd, buf);
	/* the kernel may add features of its own; ours must be there */
	if (api != UFFD_API || (features & FEATURES) != FEATURES)
		return zdtm_fail("userfaultfd %d: API %llx features %#x, expected %llx with %#x",
				 uffd, api, features, (unsigned long long)UFFD_API, FEATURES);
	if (!strstr(buf, "pending:\t0\n"))
		return zdtm_fail("userfaultfd %d has pending faults: '%s'", uffd, buf);

	/* registered: exactly pages 0..NREG-1 */
	if (vma_info((unsigned long)area, &end, &um))
		return -1;
	if (!um || end != (unsigned long)area + NREG * psz)
		return zdtm_fail("registered VMA %p-%#lx um=%d, expected %p-%p um=1", area, end, um,
				 area, area + NREG * psz);
	if (vma_info((unsigned long)area + NREG * psz, &end, &um))
		return -1;
	if (um)
		return zdtm_fail("the unregistered pages at %p carry uffd flags", area + NREG * psz);

	for (int i = 0; i < NFILLED; i++) {
		bad = zdtm_verify(area + i * psz, psz, SEED, (uint64_t)i * psz);
		if (bad >= 0)
			return zdtm_fail("filled page %d: byte %zd differs", i, bad);
	}
	/* unregistered pages fault as usual */
	if (area[NREG * psz] != 0)
		return zdtm_fail("unregistered page is not zero");

	/* no message before the fault */
	if (read(uffd, &msg, sizeof(msg)) != -1 || errno != EAGAIN)
		return zdtm_fail("userfaultfd %d had a message queued", uffd);
	if (pthread_create(&th, NULL, toucher, area + FAULT_PAGE * psz))
		return zdtm_fail("pthread_create");
	pfd = (struct pollfd){ .fd = uffd, .events = POLLIN };
	if (poll(&pfd, 1, 1000) != 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg))
		return zdtm_fail("no fault reported through the userfaultfd within 1 s "
				 "(the touching thread stays blocked)");
	if (msg.event != UFFD_EVENT_PAGEFAULT ||
	    msg.arg.pagefault.address != (unsigned long)area + FAULT_PAGE * psz + 100 ||
	    msg.arg.pagefault.feat.ptid != (uint32_t)fault_tid)
		return zdtm_fail("uffd message: event %#x address %#llx tid %u, expected %#x %p %d",
				 msg.event, (unsigned long long)msg.arg.pagefault.address,
				 msg.arg.pagefault.feat.ptid, UFFD_EVENT_PAGEFAULT,
				 area + FAULT_PAGE * psz + 100, fault_tid);
	if (copy_page(FAULT_PAGE))
		return -1;
	pthread_join(th, NULL);
	if (fault_bad)
		return zdtm_fail("the faulting thread read wrong data after UFFDIO_COPY");
	return 0;
}

ZDTM_TEST(.setup = setup, .check = check);
