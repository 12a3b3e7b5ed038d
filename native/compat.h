/* Kernel interfaces newer than the system headers (Debian 12: glibc 2.36, uapi 6.1).
 * The one place where missing constants and structures are defined; code probes
 * the running kernel for the feature instead of assuming it. */
#ifndef NATIVE_COMPAT_H
#define NATIVE_COMPAT_H

#include <stdint.h>
#include <linux/types.h>
#include <linux/fs.h>

/* fs/proc/task_mmu.c, uapi/linux/fs.h since 6.7 */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED	(1 << 0)
#define PAGE_IS_WRITTEN		(1 << 1)
#define PAGE_IS_FILE		(1 << 2)
#define PAGE_IS_PRESENT		(1 << 3)
#define PAGE_IS_SWAPPED		(1 << 4)
#define PAGE_IS_PFNZERO		(1 << 5)
#define PAGE_IS_HUGE		(1 << 6)
#define PAGE_IS_SOFT_DIRTY	(1 << 7)
#define PM_SCAN_WP_MATCHING	(1 << 0)
#define PM_SCAN_CHECK_WPASYNC	(1 << 1)
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};
struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* uapi/linux/prctl.h */
#ifndef PR_SET_MM_MAP
#define PR_SET_MM_MAP 14
#define PR_SET_MM_MAP_SIZE 15
#endif
#ifndef PR_GET_TID_ADDRESS
#define PR_GET_TID_ADDRESS 40
#endif

/* uapi/linux/ptrace.h. glibc >= 2.35 has it as an enum member (not a macro), so test the
 * glibc version: a macro of that name would break <sys/ptrace.h>. */
#include <sys/ptrace.h>
#if defined(__GLIBC__) && !__GLIBC_PREREQ(2, 35) && !defined(PTRACE_GET_RSEQ_CONFIGURATION)
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif

/* struct ptrace_rseq_configuration (uapi/linux/ptrace.h); <linux/ptrace.h> clashes with
 * <sys/ptrace.h>, so our own name for the same layout. */
struct ckpt_rseq_configuration {
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_rseq
#define __NR_rseq 334
#endif
#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif

/* uapi/linux/userfaultfd.h since 5.11: a context that only handles user-mode faults, which
 * needs no privilege (we never fault on it, we only UFFDIO_COPY into it). */
#include <linux/userfaultfd.h>
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

#endif
