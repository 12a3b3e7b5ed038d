/* Remote syscalls in a seized, stopped task, run from C: the registers are set to run one
 * `syscall` instruction the task already has mapped (its vDSO), the task is let through the
 * syscall-entry and syscall-exit stops, and the result is read from rax. A batch runs many
 * calls with one crossing from Python; each call still costs two ptrace stops, which is
 * cheap only when the tracer and the task share a CPU (see KERNEL-FACTS.md). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <elf.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#define CKPT_RC_OK 0
#define CKPT_RC_PTRACE 1     /* a ptrace request failed: err, step say which */
#define CKPT_RC_GONE 2       /* the task exited or was killed */
#define CKPT_RC_UNEXPECTED 3 /* a stop other than the syscall stop: status says which */
#define CKPT_RC_FAILED 4     /* a call marked `must` returned an error (rax < 0) */
#define CKPT_MAX_SPAWNED 8

#define CKPT_MUST_OK 1 /* must: the call must not fail (rax >= 0) */
#define CKPT_MUST_AT 2 /* must: the call must return its first argument (an mmap at a fixed place) */

#define CKPT_STEP_SETREGS 1
#define CKPT_STEP_SYSCALL 2
#define CKPT_STEP_WAIT 3
#define CKPT_STEP_EVENTMSG 4
#define CKPT_STEP_GETREGS 5

struct ckpt_rcall {
    long nr;
    unsigned long args[6];
    int must; /* 0, or CKPT_MUST_*: stop the batch when the call does not do that */
};

struct ckpt_rstate {
    int rc, err, step, status, index; /* index: the call that stopped the batch */
    int nspawned;
    unsigned long spawned[CKPT_MAX_SPAWNED]; /* tasks our clones made, traced from birth */
};

static int ckpt_regset(int pid, int request, struct user_regs_struct *regs)
{
    struct iovec iov = { regs, sizeof(*regs) };
    return (int)ptrace((enum __ptrace_request)request, pid, (void *)NT_PRSTATUS, &iov);
}

static int ckpt_fail(struct ckpt_rstate *st, int rc, int step)
{
    st->rc = rc;
    st->err = errno;
    st->step = step;
    return rc;
}

/* Let the task run to its next stop; the wait status, or -1 with st filled. */
static int ckpt_step(int pid, struct ckpt_rstate *st)
{
    int status;
    if (ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0)
        return ckpt_fail(st, CKPT_RC_PTRACE, CKPT_STEP_SYSCALL), -1;
    while (waitpid(pid, &status, __WALL) < 0) {
        if (errno != EINTR)
            return ckpt_fail(st, CKPT_RC_PTRACE, CKPT_STEP_WAIT), -1;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        st->status = status;
        return ckpt_fail(st, CKPT_RC_GONE, CKPT_STEP_WAIT), -1;
    }
    return status;
}

/* One call; 0 with *result set, or the rc stored in st. */
static int ckpt_one(int pid, unsigned long at, const struct user_regs_struct *base,
                    const struct ckpt_rcall *call, long *result, struct ckpt_rstate *st)
{
    struct user_regs_struct regs = *base;
    int status, stop, i;

    regs.rip = at;
    regs.rax = (unsigned long)call->nr;
    regs.orig_rax = (unsigned long)-1; /* no syscall to restart: rip and rax stay ours */
    regs.rdi = call->args[0];
    regs.rsi = call->args[1];
    regs.rdx = call->args[2];
    regs.r10 = call->args[3];
    regs.r8 = call->args[4];
    regs.r9 = call->args[5];
    if (ckpt_regset(pid, PTRACE_SETREGSET, &regs) < 0)
        return ckpt_fail(st, CKPT_RC_PTRACE, CKPT_STEP_SETREGS);
    for (stop = 0; stop < 2; stop++) {
        if ((status = ckpt_step(pid, st)) < 0)
            return st->rc;
        /* A task seized in group stop is trapped twice (seizure and our INTERRUPT): the second
         * trap fires here, before the call enters. */
        for (i = 0; stop == 0 && i < 4 && (status >> 16) == PTRACE_EVENT_STOP; i++)
            if ((status = ckpt_step(pid, st)) < 0)
                return st->rc;
        /* A clone of ours made a task (traced from birth): note it, go on to the exit. */
        while ((status >> 16) == PTRACE_EVENT_CLONE || (status >> 16) == PTRACE_EVENT_FORK) {
            unsigned long msg = 0;
            if (ptrace(PTRACE_GETEVENTMSG, pid, 0, &msg) < 0)
                return ckpt_fail(st, CKPT_RC_PTRACE, CKPT_STEP_EVENTMSG);
            if (st->nspawned < CKPT_MAX_SPAWNED)
                st->spawned[st->nspawned++] = msg;
            if ((status = ckpt_step(pid, st)) < 0)
                return st->rc;
        }
        if (!WIFSTOPPED(status) || WSTOPSIG(status) != (SIGTRAP | 0x80)) {
            st->status = status;
            st->step = stop;
            st->rc = CKPT_RC_UNEXPECTED;
            return st->rc;
        }
    }
    if (ckpt_regset(pid, PTRACE_GETREGSET, &regs) < 0)
        return ckpt_fail(st, CKPT_RC_PTRACE, CKPT_STEP_GETREGS);
    *result = (long)regs.rax;
    return CKPT_RC_OK;
}

/* Run n calls in order; results[i] for each call run. Stops at the first ptrace failure or at
 * a failed `must` call; st->index names the call that stopped it (n when all ran). */
int ckpt_remote_batch(int pid, unsigned long at, const struct user_regs_struct *base,
                      const struct ckpt_rcall *calls, int n, long *results, struct ckpt_rstate *st)
{
    int i;
    memset(st, 0, sizeof(*st));
    for (i = 0; i < n; i++) {
        st->index = i;
        if (ckpt_one(pid, at, base, &calls[i], &results[i], st) != CKPT_RC_OK)
            return st->rc;
        if ((calls[i].must == CKPT_MUST_OK && results[i] < 0) ||
            (calls[i].must == CKPT_MUST_AT && results[i] != (long)calls[i].args[0])) {
            st->rc = CKPT_RC_FAILED;
            return st->rc;
        }
    }
    st->index = n;
    return CKPT_RC_OK;
}
