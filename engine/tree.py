"""The dump side of process trees: find every task under the roots, freeze each one (all its
threads) before any is read, and describe the table: pid, parent, group, session, state,
subreaper flag and pids in every pid namespace."""
from __future__ import annotations

import errno
import struct
import time
from dataclasses import dataclass, field

from engine import proc, threads
from engine.errors import CkptError, ProcessGone, PtraceError, Unsupported
from engine.images.tree_pb2 import TaskEntry, Tree
from engine.ptrace import Tracee
from native import lib

MAX_SCANS = 16
EXIT_WAIT = 2.0  # seconds an exiting task may take to become a zombie
VFORK_WAIT = 0.05  # seconds a task may take to leave vfork before this freeze gives up


class InVfork(Unsupported):
    """A task sleeps in vfork; its child may be waiting for a task we froze already."""
PF_KTHREAD = 0x00200000
PR_GET_CHILD_SUBREAPER = 37
SYS_CLONE, SYS_VFORK, SYS_CLONE3, CLONE_VFORK = 56, 58, 435, 0x4000


@dataclass(slots=True)
class Task:
    """One task of the tree: its table entry, and for a live one its seized threads."""

    entry: TaskEntry
    leader: Tracee | None = None  # None for a zombie
    others: list[Tracee] = field(default_factory=list)


@dataclass(slots=True)
class Frozen:
    """Every task found under the roots, parents first; `traced` in seizure order."""

    tasks: dict[int, Task] = field(default_factory=dict)
    traced: list[Tracee] = field(default_factory=list)

    def table(self, roots: list[int]) -> Tree:
        """The tree image; the roots' parent stands for the restorer."""
        outer = _outer(roots[0])
        return Tree(tasks=[t.entry for t in self.tasks.values()], outer_sid=outer[0], outer_pgid=outer[1])


def _outer(root: int) -> tuple[int, int]:
    """Session and group of the root's parent (0, 0 if we cannot see it)."""
    try:
        st = proc.stat(proc.stat(root).ppid)
    except (ProcessGone, OSError):
        return 0, 0
    return st.sid, st.pgid


def _status_masks(st: dict[str, str]) -> tuple[int, int, int]:
    """SigBlk, SigIgn and SigCgt of a status (a zombie's are those it died with)."""
    return int(st.get("SigBlk", "0"), 16), int(st.get("SigIgn", "0"), 16), int(st.get("SigCgt", "0"), 16)


def freeze(roots: list[int], frozen: Frozen) -> None:
    """Seize every task of every root's tree into `frozen`, re-scanning the children of every
    live task until no new one appears (a task not yet frozen may fork, or exit and leave its
    children to a subreaper already scanned)."""
    for root in roots:
        if root in frozen.tasks:
            raise CkptError(f"root {root} is inside the tree of another root: give each tree once")
        _take(root, 0, frozen)
    for _ in range(MAX_SCANS):
        new: list[tuple[int, int]] = []
        for pid, task in list(frozen.tasks.items()):
            for kid in proc.children(pid) if task.leader else []:
                if kid in roots:
                    raise CkptError(f"root {kid} is inside the tree of root {_root_of(pid, frozen)}: "
                                    "give each tree once")
                if kid not in frozen.tasks:
                    new.append((kid, pid))
        if not new:
            return
        for kid, parent in new:
            _take(kid, parent, frozen)
    raise CkptError(f"the trees keep growing ({len(frozen.tasks)} tasks seized after {MAX_SCANS} scans)")


def _root_of(pid: int, frozen: Frozen) -> int:
    while frozen.tasks[pid].entry.ppid:
        pid = frozen.tasks[pid].entry.ppid
    return pid


def _take(pid: int, parent: int, frozen: Frozen) -> None:
    """Seize one task (or record a zombie) with its threads."""
    st = proc.stat(pid)
    if st.flags & PF_KTHREAD:
        raise CkptError(f"pid {pid} ({st.comm}) is a kernel thread")
    if st.state == "D" and _in_vfork(pid):
        # Usually a moment before an exec or exit; no ptrace stop reaches the task until then,
        # and its child may wait on a task frozen already: the caller thaws all and retries.
        deadline = time.monotonic() + VFORK_WAIT
        while _in_vfork(pid) and time.monotonic() < deadline:
            time.sleep(0.001)
        if _in_vfork(pid):
            raise InVfork(f"pid {pid} waits in vfork for its child, which shares its memory (not supported)")
        st = proc.stat(pid)
    status = proc.status(pid)
    entry = TaskEntry(pid=pid, ppid=parent, pgid=st.pgid, sid=st.sid, nspids=proc.levels(status, "NSpid", pid),
                      nspgids=proc.levels(status, "NSpgid", st.pgid), nssids=proc.levels(status, "NSsid", st.sid))
    task = Task(entry)
    if st.state not in "ZX":
        try:
            task.leader = Tracee(pid, keep_scratch=True)
        except ProcessGone:
            st = proc.stat(pid)  # it died meanwhile: a zombie now (or gone, then an error)
        except PtraceError as e:
            # An exiting task refuses the seizure (EPERM): in a moment it is a zombie.
            if e.err != errno.EPERM or not _exiting(pid, pid):
                raise
            st = _zombie_soon(pid)
        else:
            frozen.traced.append(task.leader)
            task.others = _freeze_threads(pid, frozen)
            if st.state == "T":
                entry.stopped = task.leader.stop_signal or 19  # SIGSTOP
            entry.subreaper = _subreaper(task.leader)
    if task.leader is None:
        if parent == 0:
            raise CkptError(f"pid {pid} is a zombie: a root must be alive")
        if proc.threads(pid) > 1:
            raise CkptError(f"pid {pid}: its main thread exited while others run (not supported)")
        entry.zombie = True
        entry.status = int(proc.stat_fields(pid)[49])  # exit_code (proc(5) field 52)
        masks = _status_masks(proc.status(pid))  # now: one that died while seized has its last masks
        entry.sig_blocked, entry.sig_ignored, entry.sig_caught = masks
        entry.comm = st.comm
    entry.tids.extend([pid] + [t.pid for t in task.others])
    frozen.tasks[pid] = task


def _zombie_soon(pid: int) -> proc.TaskStat:
    """The stat of an exiting task once it is a zombie (its parent is frozen: no one reaps it)."""
    deadline = time.monotonic() + EXIT_WAIT
    while (st := proc.stat(pid)).state not in "ZX":
        if time.monotonic() > deadline:
            raise CkptError(f"pid {pid} is exiting and did not become a zombie within {EXIT_WAIT:g}s")
        time.sleep(0.001)
    return st


def _in_vfork(pid: int) -> bool:
    """Whether the task sleeps in vfork() (or clone with CLONE_VFORK) until its child lets go:
    no ptrace stop would reach it there."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            fields = f.read().split()
    except OSError:
        return False
    if not fields or not fields[0].isdigit():
        return False
    nr = int(fields[0])
    return nr == SYS_VFORK or (nr == SYS_CLONE and bool(int(fields[1], 16) & CLONE_VFORK)) or nr == SYS_CLONE3


def _subreaper(t: Tracee) -> bool:
    """PR_GET_CHILD_SUBREAPER, asked inside the task."""
    with t.scratch() as buf:
        t.call("prctl(PR_GET_CHILD_SUBREAPER)", lib.SYS_prctl, PR_GET_CHILD_SUBREAPER, buf, 0, 0, 0)
        return struct.unpack("<i", t.read(buf, 4))[0] != 0


def _freeze_threads(pid: int, frozen: Frozen) -> list[Tracee]:
    """Seize every other thread of the process, re-scanning until no new one appears (a
    thread not yet stopped may still create more)."""
    seized: dict[int, Tracee] = {}
    for _ in range(MAX_SCANS):
        new = [tid for tid in threads.tids(pid) if tid not in seized]
        if not new:
            return [seized[tid] for tid in sorted(seized)]
        for tid in new:
            try:
                seized[tid] = Tracee(tid)
            except ProcessGone:
                continue  # it exited between the listing and the seizure: not part of the state
            except PtraceError as e:
                # An exiting thread refuses the seizure (EPERM); one that is not exiting may not.
                if e.err == errno.EPERM and _exiting(pid, tid):
                    continue
                raise
            frozen.traced.append(seized[tid])
    raise CkptError(f"pid {pid} keeps creating threads ({len(seized)} seized after {MAX_SCANS} scans)")


def _exiting(pid: int, tid: int) -> bool:
    """Whether a thread is gone or dying (zombie/dead, or PF_EXITING)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0] in "ZX" or bool(int(rest[6]) & 0x4)  # PF_EXITING (include/linux/sched.h)


def let_go(traced: list[Tracee], strict: bool = True) -> None:
    """Detach every frozen task (each as it was); when strict, the first error is raised
    (otherwise an error is on its way already and this one would hide it)."""
    errors: list[BaseException] = []
    for t in traced:
        try:
            t.detach()
        except CkptError as e:
            errors.append(e)
    if errors and strict:
        raise errors[0]


def kill(traced: list[Tracee]) -> None:
    """Kill every frozen task, children and threads before their parents and leaders (a
    traced leader is collected only after its threads)."""
    for t in reversed(traced):
        t.kill()

