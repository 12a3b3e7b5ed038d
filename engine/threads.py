"""Threads, dump and restore side by side: each thread is seized on its own and keeps its own
registers, FPU state, blocked mask, private signal queue, sigaltstack, rseq, robust list and
clear_child_tid (its credentials and filters are the task part's: engine.task); at restore a
remote clone3 in the rebuilt process makes it again with its tid (set_tid), traced from birth,
and it is then given that state. Seccomp filters are inherited at clone time, so the threads
are made in between the installs of filters (engine.seccomp.plan), some by other threads."""
from __future__ import annotations

import os
import struct
from typing import Sequence

from engine import cpu, proc, seccomp, signals, task
from engine.errors import CkptError, ProcessGone
from engine.images.core_pb2 import Core, Rseq, Thread
from engine.images.task_pb2 import SeccompFilter, Task, ThreadAttrs
from engine.mm import Layout
from engine.ptrace import Tracee, home_cpus
from native import ffi, lib

PR_GET_TID_ADDRESS, PR_SET_NAME = 40, 15
CLONE_ARGS = struct.Struct("<11Q")  # struct clone_args up to cgroup (CLONE_ARGS_SIZE_VER2)
THREAD_FLAGS = (lib.CLONE_VM | lib.CLONE_FS | lib.CLONE_FILES | lib.CLONE_SIGHAND | lib.CLONE_THREAD
                | lib.CLONE_SYSVSEM)


def tids(pid: int) -> list[int]:
    """The task's threads but the main one."""
    try:
        return sorted(int(x) for x in os.listdir(f"/proc/{pid}/task") if int(x) != pid)
    except FileNotFoundError:
        return []


def nstids(tid: int) -> list[int]:
    """A thread's id at every pid namespace level, outermost first."""
    return proc.levels(proc.status(tid), "NSpid", tid)


def _robust_list(tid: int) -> tuple[int, int]:
    head, size = ffi.new("uint64_t *"), ffi.new("size_t *")
    rc = lib.syscall(lib.SYS_get_robust_list, ffi.cast("long", tid), head, size)
    if rc < 0:
        raise CkptError(f"get_robust_list({tid}): {os.strerror(ffi.errno)}")
    return int(head[0]), int(size[0])


def dump(tt: Tracee, buf: int) -> Thread:
    """One seized thread's own state (buf: scratch memory of the process)."""
    th = Thread(tid=tt.pid, xstate=tt.xstate(), blocked=tt.mask, nstids=nstids(tt.pid), cpus=sorted(tt.cpus))
    th.regs.CopyFrom(cpu.regs_message(tt.saved))
    ptr, size, sig = tt.rseq()
    th.rseq.CopyFrom(Rseq(ptr=ptr, size=size, sig=sig))
    th.pending.extend(signals.pending(tt, process_queue=False))
    # One batch: its sigaltstack, then its tid address just after it.
    at = signals.STACK_T.size
    tt.batch([signals.altstack_call(buf), (lib.SYS_prctl, PR_GET_TID_ADDRESS, buf + at, 0, 0, 0)],
             ["sigaltstack", "prctl(PR_GET_TID_ADDRESS)"])
    raw = tt.read(buf, at + 8)
    th.altstack.CopyFrom(signals.altstack(raw))
    (th.clear_tid,) = struct.unpack_from("<Q", raw, at)
    th.robust_list, th.robust_len = _robust_list(tt.pid)
    with open(f"/proc/{tt.pid}/comm", "rb") as f:
        th.comm = f.read().rstrip(b"\n").decode(errors="replace")
    return th


def set_name(t: Tracee, lay: Layout, name: str) -> None:
    """The calling thread's name (comm: at most 15 bytes, PR_SET_NAME)."""
    t.write(lay.scratch, name.encode()[:15] + b"\0")
    t.call("prctl(PR_SET_NAME)", lib.SYS_prctl, PR_SET_NAME, lay.scratch, 0, 0, 0)


def put_clone_args(t: Tracee, lay: Layout, flags: int, exit_signal: int, ids: Sequence[int],
                   child_tid: int = 0) -> None:
    """Write struct clone_args at the scratch area, for a clone3 that gives the new task the
    ids `ids` (its pid or tid at every pid namespace level, outermost first; set_tid follows
    the struct)."""
    levels = list(reversed(ids))  # innermost first, as set_tid takes them
    tid_at = lay.scratch + CLONE_ARGS.size
    t.write(lay.scratch, CLONE_ARGS.pack(flags, 0, child_tid, 0, exit_signal, 0, 0, 0, tid_at, len(levels), 0)
            + struct.pack(f"<{len(levels)}i", *levels))


def _clone(t: Tracee, lay: Layout, th: Thread) -> Tracee:
    """A new thread of t's process (t: any of its threads) with the dumped tid, stopped and
    traced; t must trace its clones (Tracee.trace_clones)."""
    flags = THREAD_FLAGS | (lib.CLONE_CHILD_CLEARTID if th.clear_tid else 0)
    put_clone_args(t, lay, flags, 0, th.nstids or [th.tid], th.clear_tid)
    got = t.syscall(lib.SYS_clone3, lay.scratch, CLONE_ARGS.size)
    if got < 0:
        raise CkptError(f"pid {t.pid}: remote clone3 of thread {th.tid}: {os.strerror(-got)}")
    # clone3 answers in the task's pid namespace; ptrace reported it in ours (the outermost).
    t.spawned.remove(th.tid)
    return Tracee(th.tid, adopted=True)


def spare(t: Tracee, lay: Layout) -> Tracee:
    """A new thread of t's process with any tid, stopped and traced: it works in the process
    (its fd table, its memory) where the main thread no longer can run a remote call."""
    t.trace_clones()
    t.write(lay.scratch, CLONE_ARGS.pack(THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    got = t.syscall(lib.SYS_clone3, lay.scratch, CLONE_ARGS.size)
    if got < 0:
        raise CkptError(f"pid {t.pid}: remote clone3 of a spare thread: {os.strerror(-got)}")
    return Tracee(t.spawned.pop(), adopted=True, tgid=t.tgid)  # as we see it (clone3 answers in its pid namespace)


def end(tt: Tracee) -> None:
    """A spare thread exits; as its tracer we collect it."""
    try:
        tt.syscall(lib.SYS_exit, 0)
    except ProcessGone:
        return
    raise CkptError(f"thread {tt.pid}: remote exit returned")


def _made(t: Tracee, lay: Layout, core: Core, main_filters: list[SeccompFilter],
          own: dict[int, ThreadAttrs]) -> dict[int, Tracee]:
    """Make every thread and install every thread's filters, the main thread's too, in the
    order engine.seccomp.plan gives; the made threads by tid."""
    lists = {core.pid: main_filters} | {tid: list(a.seccomp) for tid, a in own.items()}
    dumped = {th.tid: th for th in core.threads}
    who = {core.pid: t}
    cloning: set[int] = set()
    for step in seccomp.plan(lists, core.pid):
        if isinstance(step, seccomp.Install):
            seccomp.install(who[step.by], lay, lists[step.by][step.index], step.index)
            continue
        if step.by not in cloning:
            who[step.by].trace_clones()
            cloning.add(step.by)
        who[step.tid] = _clone(who[step.by], lay, dumped[step.tid])
    return {tid: tt for tid, tt in who.items() if tid != core.pid}


def restore(t: Tracee, lay: Layout, core: Core, attrs: Task) -> list[Tracee]:
    """Make every dumped thread in the rebuilt process, with the seccomp filters of every
    thread (the main one's too), and give each its state and its own credentials (attrs: the
    task part's image); they are detached by the caller."""
    own = task.thread_attrs(attrs, [th.tid for th in core.threads])
    made = _made(t, lay, core, list(attrs.seccomp), own)
    for th in core.threads:
        tt = made[th.tid]
        if th.rseq.ptr:
            tt.call("rseq(register)", lib.SYS_rseq, th.rseq.ptr, th.rseq.size, 0, th.rseq.sig)
        if th.robust_list:
            tt.call("set_robust_list", lib.SYS_set_robust_list, th.robust_list, th.robust_len)
        signals.restore_thread(tt, lay, th.altstack, list(th.pending))
        set_name(tt, lay, th.comm)
        # Last of the calls in it: a change of credentials may take away what they need.
        task.restore_thread(tt, lay, own[th.tid])
        tt.set_xstate(th.xstate)
        tt.saved = cpu.regs_struct(th.regs)
        tt.mask = th.blocked
        tt.restore_cpus = set(th.cpus) or home_cpus()
    return [made[th.tid] for th in core.threads]
