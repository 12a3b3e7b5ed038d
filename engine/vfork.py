"""Vfork pairs, dump and restore side by side: a task asleep in vfork (or clone with CLONE_VFORK)
and its child, which runs on the parent's memory until it execs or exits; the parent's vfork
then returns the child's pid.

Dump: the parent cannot be stopped, and cannot run while its child is frozen: it is never
seized (engine.tree). Its registers and what only its own syscalls would tell come from its
kernel structures (engine.asleep), its memory through the child (one mm: read as the parent's,
the child gets no memory image), the rest from /proc. Its tree entry names the child and the
child's exit signal; the child's own state is dumped like any task's. What cannot be read this
way or made again below is refused by name: a parent with threads, pending signals, timers or
seccomp filters; a child that shares more than memory with it, has threads or children, leads
a group or session others are in, or waits in vfork itself.

Restore: planners and the validator get the table without the vfork children (`planned`); the
plan makes the parent, which is rebuilt like any task and then, last, makes its child again
with a remote clone3(CLONE_VM|CLONE_VFORK) with the child's pids (set_tid), traced from birth.
The parent stops at PTRACE_EVENT_VFORK, where the child exists and the kernel has yet to wait
for it, and stays there: its registers are set in that stop, and once let go it waits in vfork
for real until the child execs or exits; the syscall then returns the child's pid, as it would
have. The child, born on the parent's rebuilt memory with copies of its fds and sigactions, is
given its own state. A spare thread of the parent's process does what the parent no longer can:
closes the restorer's pidfd in its fd table and unmaps the scratch area (engine.restorer)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from engine import asleep, cpu, files, mm, proc, signals, task, threads, timers, tree
from engine.asleep import Asleep
from engine.errors import CkptError, Unsupported
from engine.images.core_pb2 import Core, SigAltStack
from engine.images.files_pb2 import PipeData
from engine.images.mm_pb2 import PageMap
from engine.images.tree_pb2 import Tree
from engine.mm import Layout
from engine.parts import PARTS
from engine.plan import PlanError, Table, TaskRow
from engine.ptrace import Tracee
from native import ffi, lib

PR_SET_CHILD_SUBREAPER = 36
# Resources a child may share with its parent beyond memory (kcmp(2)), as clone flags would.
SHARED = (("fd table", lib.KCMP_FILES), ("cwd and root", lib.KCMP_FS), ("signal handlers", lib.KCMP_SIGHAND))


@dataclass(frozen=True, slots=True)
class Pair:
    """A task asleep in vfork, its child (seized) and what was read of the task."""

    parent: int
    child: Tracee
    state: Asleep


@dataclass(frozen=True, slots=True)
class Child:
    """A vfork child its parent makes again at restore: its pid and exit signal."""

    pid: int
    signal: int


# --- dump ------------------------------------------------------------------------------------

def _shares(a: int, b: int, kind: int) -> bool:
    """Whether two tasks share a kernel resource (kcmp(2))."""
    return int(lib.syscall(lib.SYS_kcmp, ffi.cast("long", a), ffi.cast("long", b), ffi.cast("long", kind),
                           ffi.cast("long", 0), ffi.cast("long", 0))) == 0


def pair(frozen: tree.Frozen) -> dict[int, Pair]:
    """Every task of the frozen tree asleep in vfork, with its child: its entry names the child,
    its exit signal and the parent's subreaper flag. tree.InVfork when a parent got out of vfork
    meanwhile (its child exited before the freeze held it, and the parent ran), even if it is
    back in vfork with another child by now (what was read of it before may be stale: the
    child that exited, listed as its zombie, say): the caller thaws all and freezes again."""
    out: dict[int, Pair] = {}
    for pid, t in frozen.tasks.items():
        if not t.in_vfork:
            continue
        kids = [k for k, c in frozen.tasks.items() if c.entry.ppid == pid and not c.zombie and _shares(pid, k, lib.KCMP_VM)]
        if not tree.in_vfork(pid) or tree.switches(proc.status(pid)) != t.switches or not kids:
            raise tree.InVfork(f"pid {pid} left vfork while the tree was being frozen")
        if len(kids) > 1:
            raise Unsupported(f"pid {pid} waits in vfork and {len(kids)} of its children share its memory "
                              f"({', '.join(map(str, kids))}): not supported")
        c = kids[0]
        child = frozen.tasks[c]
        if child.leader is None:  # (its main thread cannot have exited alone: that wakes the parent)
            raise Unsupported(f"pid {c}, the vfork child of pid {pid}, waits in vfork itself (not supported)")
        _refuse(pid, c, len(child.entry.tids))
        state = asleep.read(pid, child.leader.xstate())
        if state.itimer:
            raise Unsupported(f"pid {pid} waits in vfork with its {state.itimer} itimer armed: not supported")
        t.entry.vfork_child, t.entry.vfork_signal = c, int(proc.stat_fields(c)[35])  # exit_signal (proc(5) 38)
        t.entry.subreaper = state.subreaper
        out[pid] = Pair(pid, child.leader, state)
    return out


def _refuse(pid: int, child: int, nthreads: int) -> None:
    """What this module does not dump or make again, by name."""
    who = f"pid {child}, the vfork child of pid {pid},"
    shared = [name for name, kind in SHARED if _shares(pid, child, kind)]
    if shared:
        raise Unsupported(f"{who} shares its {' and '.join(shared)} with it (clone flags beyond "
                          "CLONE_VM|CLONE_VFORK): not supported")
    if nthreads > 1:
        raise Unsupported(f"{who} has threads: not supported")
    st = proc.status(pid)
    if int(st.get("SigPnd", "0"), 16) or int(st.get("ShdPnd", "0"), 16):
        raise Unsupported(f"pid {pid} waits in vfork with signals queued (their siginfo cannot be read "
                          "without a ptrace stop): not supported")
    if st.get("Seccomp", "0") != "0":
        raise Unsupported(f"pid {pid} waits in vfork under seccomp (its filters cannot be read without a "
                          "ptrace stop): not supported")
    if timers.proc_timers(pid):
        raise Unsupported(f"pid {pid} waits in vfork with POSIX timers: not supported")


def dump_parent(p: Pair, out: Path, pipe_data: dict[int, PipeData], per_task: dict[str, list[Message]]) -> None:
    """The images of a task asleep in vfork, without a remote call in it."""
    pid, child, state = p.parent, p.child, p.state
    st, status = proc.stat(pid), proc.status(pid)
    core = Core(pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, comm=st.comm, cpus=sorted(os.sched_getaffinity(pid)))
    cpu.fill(core, state.regs, state.xstate, state.rseq)
    fds = files.dump(pid, pipe_data)
    area, runs = mm.dump(child, out, owner=pid)  # their one memory, read through the child
    core.sigactions.extend(signals.actions(state.actions))
    core.blocked = int(status["SigBlk"], 16)
    sp, flags, size = state.altstack
    core.altstack.CopyFrom(SigAltStack(sp=sp, flags=flags, size=size))
    dumpable, thp = child.batch(task.mm_calls(), task.MM_CALLS)  # the memory's: the child answers alike
    parts: dict[str, Message] = {
        timers.KIND: timers.idle(pid),
        # No filters, no other threads: refused (_refuse, engine.tree).
        task.KIND: task.assemble(pid, pid, state.securebits, dumpable, thp, state.pdeathsig, state.clear_tid, [], [])}
    if set(parts) != {part.KIND for part in PARTS}:
        raise CkptError(f"pid {pid}: a part of the task state is not read for tasks asleep in vfork")
    per_task["core"].append(core)
    per_task["mm"].append(area)
    per_task["pagemap"].append(PageMap(pid=pid, runs=runs))
    per_task["files"].append(fds)
    for kind, msg in parts.items():
        per_task[kind].append(msg)


# --- the plan --------------------------------------------------------------------------------

def children(tree_image: Tree) -> dict[int, Child]:
    """Each vfork parent of the tree image with its child."""
    return {e.pid: Child(e.vfork_child, e.vfork_signal) for e in tree_image.tasks if e.vfork_child}


def planned(table: Table, made: dict[int, Child]) -> Table:
    """The table a planner plans: without the vfork children, whose parents make them once
    rebuilt. PlanError for a child the restore cannot make that way."""
    kids = {c.pid: parent for parent, c in made.items()}
    for child, parent in kids.items():
        _makeable(table, child, parent)
    return Table({p: r for p, r in table.rows.items() if p not in kids}, table.outer_sid, table.outer_pgid)


def _makeable(table: Table, child: int, parent: int) -> None:
    """A child made by its parent's clone3 starts in the parent's group and session; a remote
    setsid or setpgid then puts it where it was. Nothing of the plan may need it."""
    row, prow = table.rows.get(child), table.rows.get(parent)
    who = f"task {child}, the vfork child of task {parent},"
    if row is None or prow is None or row.ppid != parent or row.zombie or prow.zombie:
        raise PlanError(f"{who} is not a live child of a live task in the table")
    if row.threads > 1 or row.ns_flags or len(row.nspids) != len(prow.nspids):
        raise PlanError(f"{who} has threads or namespaces of its own: it cannot be made by a vfork")
    users = sorted(p for p, r in table.rows.items() if p != child and child in (r.ppid, r.pgid, r.sid))
    if users:
        raise PlanError(f"{who} has task {users[0]} as a child or in its group or session: the plan would need "
                        "it before its parent makes it")
    if row.sid == child or (row.sid, row.pgid) == (prow.sid, prow.pgid):
        return
    if row.sid != prow.sid:
        raise PlanError(f"{who} is in session {row.sid}, not its parent's {prow.sid}, and does not lead it")
    if row.pgid != child and not any(p != child and (r.pgid, r.sid) == (row.pgid, row.sid) for p, r in table.rows.items()):
        raise PlanError(f"{who} is in group {row.pgid}, which no other task of its session is in")


def describe(made: dict[int, Child]) -> str:
    """What `ckpt plan` adds after the plan: who makes which vfork child."""
    return "\n".join(f"task {parent}: rebuilt, then vfork {c.pid} (exit signal {c.signal})"
                     for parent, c in sorted(made.items()))


# --- restore ---------------------------------------------------------------------------------

def clone_child(t: Tracee, lay: Layout, child: Child, row: TaskRow) -> Tracee:
    """The rebuilt parent makes its vfork child again, with its pids, traced from birth; the
    parent is left in its PTRACE_EVENT_VFORK stop (Tracee.stop_at_vfork)."""
    threads.put_clone_args(t, lay, lib.CLONE_VM | lib.CLONE_VFORK, child.signal, row.nspids or (row.pid,))
    t.trace_clones()
    return Tracee(t.stop_at_vfork(lib.SYS_clone3, lay.scratch, threads.CLONE_ARGS.size), adopted=True)


def place(c: Tracee, row: TaskRow, parent: TaskRow, table: Table) -> None:
    """The child's session, group and subreaper flag, where they are not the ones it was born
    with (its parent's; `planned` proved the group is there)."""
    if row.sid == row.pid:
        c.call("setsid", lib.SYS_setsid)
    elif row.pgid != parent.pgid:
        depth = len(row.nspids or (row.pid,)) - 1
        pgid = 0 if row.pgid == row.pid else table.levels(row.pgid)[depth]  # as the child sees it
        c.call(f"setpgid(0, {row.pgid})", lib.SYS_setpgid, 0, pgid)
    if row.subreaper:
        c.call("prctl(PR_SET_CHILD_SUBREAPER)", lib.SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def finish(spare: Tracee, lay: Layout, pidfd: int) -> None:
    """What the parent no longer can, done by a spare thread of its process once the child is
    rebuilt: close the restorer's pidfd in their fd table, unmap the scratch area; then the
    thread exits."""
    spare.call("close(pidfd)", lib.SYS_close, pidfd)
    mm.finish(spare, lay)
    threads.end(spare)
