"""BPF task iterators (bpf(2), Documentation/bpf/bpf_iterators.rst) and CPUID: what reads the
state of a task no ptrace stop reaches (engine.asleep)."""

INCLUDES = """
#include <cpuid.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/kcmp.h>

/* Load a task iterator program (BPF_PROG_TYPE_TRACING attached to the kernel function
 * bpf_iter_task, given by its BTF id); its fd, or -1 with errno and the verifier's words in log. */
static int ckpt_bpf_load_task_iter(const void *insns, unsigned int n, unsigned int btf_id,
                                   const char *license, char *log, unsigned int log_size)
{
    union bpf_attr a;

    memset(&a, 0, sizeof(a));
    a.prog_type = BPF_PROG_TYPE_TRACING;
    a.expected_attach_type = BPF_TRACE_ITER;
    a.attach_btf_id = btf_id;
    a.insns = (__u64)(unsigned long)insns;
    a.insn_cnt = n;
    a.license = (__u64)(unsigned long)license;
    a.log_buf = (__u64)(unsigned long)log;
    a.log_size = log_size;
    a.log_level = log ? 1 : 0;
    return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
}

/* An iterator of that program over one thread (its tid as we see it): read() gives what the
 * program wrote. The fd, or -1 with errno. */
static int ckpt_bpf_task_iter(int prog, int tid)
{
    union bpf_iter_link_info info;
    union bpf_attr a;
    int link, iter, err;

    memset(&info, 0, sizeof(info));
    info.task.tid = (__u32)tid;
    memset(&a, 0, sizeof(a));
    a.link_create.prog_fd = (__u32)prog;
    a.link_create.attach_type = BPF_TRACE_ITER;
    a.link_create.iter_info = (__u64)(unsigned long)&info;
    a.link_create.iter_info_len = sizeof(info);
    link = (int)syscall(SYS_bpf, BPF_LINK_CREATE, &a, sizeof(a));
    if (link < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.iter_create.link_fd = (__u32)link;
    iter = (int)syscall(SYS_bpf, BPF_ITER_CREATE, &a, sizeof(a));
    err = errno;
    close(link); /* the iterator holds the link */
    errno = err;
    return iter;
}

/* Walk the type section of a BTF blob (Documentation/bpf/btf.rst: each struct btf_type,
 * 12 bytes, is followed by bytes that depend on its kind and vlen): for type id i + 1, the
 * offset of its record in `types` into at[i] and its name offset into names[i]. The number
 * of types, or -1 when there are more than max or a record runs past the end. */
static long ckpt_btf_walk(const unsigned char *types, size_t len, unsigned int *at, unsigned int *names,
                          size_t max)
{
    /* Bytes after the record: fixed, and per item of vlen, by kind (BTF_KIND_*). */
    static const unsigned char fixed[32] = { [1] = 4, [3] = 12, [14] = 4, [17] = 4 };
    static const unsigned char per[32] = { [4] = 12, [5] = 12, [6] = 8, [13] = 8, [15] = 12, [19] = 12 };
    size_t off = 0, n = 0;

    while (off + 12 <= len) {
        unsigned int name, info;

        if (n == max)
            return -1;
        memcpy(&name, types + off, 4);
        memcpy(&info, types + off + 4, 4);
        at[n] = (unsigned int)off;
        names[n++] = name;
        off += 12 + fixed[(info >> 24) & 0x1F] + (size_t)per[(info >> 24) & 0x1F] * (info & 0xFFFF);
    }
    return off == len ? (long)n : -1;
}

/* CPUID leaf/subleaf: eax, ebx, ecx, edx into regs[0..3]. */
static void ckpt_cpuid(unsigned int leaf, unsigned int sub, unsigned int *regs)
{
    __cpuid_count(leaf, sub, regs[0], regs[1], regs[2], regs[3]);
}
"""

CDEF = """
#define BPF_LD ...
#define BPF_LDX ...
#define BPF_ST ...
#define BPF_STX ...
#define BPF_ALU64 ...
#define BPF_JMP ...
#define BPF_MEM ...
#define BPF_DW ...
#define BPF_B ...
#define BPF_K ...
#define BPF_X ...
#define BPF_MOV ...
#define BPF_ADD ...
#define BPF_JEQ ...
#define BPF_JNE ...
#define BPF_JA ...
#define BPF_CALL ...
#define BPF_EXIT ...
#define BPF_REG_0 ...
#define BPF_REG_1 ...
#define BPF_REG_2 ...
#define BPF_REG_3 ...
#define BPF_REG_6 ...
#define BPF_REG_7 ...
#define BPF_REG_8 ...
#define BPF_REG_9 ...
#define BPF_REG_10 ...
#define KCMP_VM ...
#define KCMP_FILES ...
#define KCMP_FS ...
#define KCMP_SIGHAND ...
#define KCMP_SYSVSEM ...

enum bpf_func_id { BPF_FUNC_probe_read_kernel, BPF_FUNC_seq_write, BPF_FUNC_task_pt_regs, ... };

int ckpt_bpf_load_task_iter(const void *insns, unsigned int n, unsigned int btf_id,
                            const char *license, char *log, unsigned int log_size);
int ckpt_bpf_task_iter(int prog, int tid);
void ckpt_cpuid(unsigned int leaf, unsigned int sub, unsigned int *regs);
long ckpt_btf_walk(const unsigned char *types, size_t len, unsigned int *at, unsigned int *names, size_t max);
"""
