"""The restore plan executor (native/plan_exec.c): builds a process tree from a plan."""

INCLUDES = """
#include "plan_exec.c"
"""

CDEF = """
#define CKPT_PLAN_LEVELS ...
#define CKPT_OP_FORK ...
#define CKPT_OP_SETSID ...
#define CKPT_OP_SETPGID ...
#define CKPT_OP_SUBREAPER ...
#define CKPT_OP_WAIT ...
#define CKPT_OP_EXIT ...
#define CKPT_OP_REAP ...

struct ckpt_plan_op {
    int kind, a, b;
};

struct ckpt_plan_actor {
    int first, nops;
    int nlevels;
    int tids[8];
    int flags;
    int depth;
    int init;
    int pid;
    int vpid;
    int done;
    int err, step;
    uint64_t blocked, ignored, caught;
    char comm[16];
};

int ckpt_plan_run(struct ckpt_plan_actor *actors, int nactors, const struct ckpt_plan_op *ops,
                  int nops, int timeout_ms, const char *stub, int keep);
"""
