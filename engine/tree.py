"""The dump side of process trees: find every task under the roots (or in a cgroup), freeze
each one (all its threads) before any is read, and describe the table: pid, parent, group,
session, state and pids in every pid namespace (the subreaper flag is asked with the dump's
other remote questions, engine.questions, once all are frozen).

Growth while freezing: a task not yet frozen may fork or create threads, so listings are
repeated until one finds nothing new; listings that keep finding tasks born during the freeze,
or threads not yet seized, are bounded (MAX_SCANS), then KeepsGrowing names the task and the
caller lets every task go as it was.

A task asleep in vfork is not seized: no ptrace stop reaches it, and it stays asleep while its
child is frozen (engine.vfork pairs the two once the tree is)."""
from __future__ import annotations

import errno
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import proc, threads
from engine.errors import CkptError, ProcessGone, PtraceError, Unsupported
from engine.images.tree_pb2 import TaskEntry, Tree
from engine.ptrace import Tracee, abandon, spare_cpus
from native import lib

MAX_SCANS = 16  # listings that may find tasks born during the freeze (for threads: listings in a
# row that show new ones) before we give up
HZ = os.sysconf("SC_CLK_TCK")  # the unit of a task's start time in /proc/PID/stat
CGROUP_ROOT = Path("/sys/fs/cgroup")
EXIT_WAIT = 2.0  # seconds an exiting task may take to become a zombie
VFORK_WAIT = 0.05  # seconds a task may take to leave vfork before this freeze gives up
PF_KTHREAD = 0x00200000
SYS_CLONE, SYS_VFORK, SYS_CLONE3, CLONE_VFORK = 56, 58, 435, 0x4000


class InVfork(Unsupported):
    """A thread sleeps in vfork (its child may be waiting for a task we froze already), or a
    task left vfork while the tree was being frozen: thaw all and freeze again."""


class KeepsGrowing(CkptError):
    """New tasks or threads kept appearing through every listing of the freeze."""

    def __init__(self, pid: int, what: str) -> None:
        super().__init__(pid, what)
        self.pid, self.what = pid, what

    def __str__(self) -> str:
        return self.what


@dataclass(slots=True)
class Task:
    """One task of the tree: its table entry, and for a live one its seized threads."""

    entry: TaskEntry
    # None for a zombie, while the main thread is one, and for a task asleep in vfork
    leader: Tracee | None = None
    others: list[Tracee] = field(default_factory=list)
    main_exit: int | None = None  # the wait status of a main thread that exited alone
    # Alive, asleep in vfork until its child execs or exits: never seized (no ptrace stop
    # reaches it there, and a seized one could not be detached: engine.asleep). It cannot run
    # while its child is frozen.
    in_vfork: bool = False
    switches: int = 0  # its context switches when found asleep in vfork (see switches())

    @property
    def acting(self) -> Tracee | None:
        """The thread process-wide state is read and asked through: the main one, or the
        first other one while the main one is a zombie (it cannot be seized); None for a
        zombie process and for a task asleep in vfork."""
        return self.leader or (self.others[0] if self.others else None)

    @property
    def zombie(self) -> bool:
        """Dead, waiting to be reaped."""
        return self.acting is None and not self.in_vfork


@dataclass(slots=True)
class Frozen:
    """Every task found under the roots, parents first; `traced` in seizure order."""

    tasks: dict[int, Task] = field(default_factory=dict)
    traced: list[Tracee] = field(default_factory=list)
    roots: list[int] = field(default_factory=list)  # in the order given, then as found in a cgroup

    def table(self) -> Tree:
        """The tree image; the roots' parent stands for the restorer."""
        outer = _outer(self.roots[0])
        return Tree(tasks=[t.entry for t in self.tasks.values()], outer_sid=outer[0], outer_pgid=outer[1])


def _outer(root: int) -> tuple[int, int]:
    """Session and group of the root's parent (0, 0 if we cannot see it)."""
    try:
        st = proc.stat(proc.stat(root).ppid)
    except (ProcessGone, OSError):
        return 0, 0
    return st.sid, st.pgid


def status_masks(st: dict[str, str]) -> tuple[int, int, int]:
    """SigBlk, SigIgn and SigCgt of a status (a zombie's are those it died with)."""
    return int(st.get("SigBlk", "0"), 16), int(st.get("SigIgn", "0"), 16), int(st.get("SigCgt", "0"), 16)


def freeze(roots: list[int], frozen: Frozen, cgroup: Path | None = None) -> None:
    """Seize every task of every root's tree into `frozen`; with a cgroup, its topmost tasks
    (no ancestor in it) are roots too. The children of the tasks just taken are taken next,
    level by level; when a level brings none, every live task's children (and the cgroup) are
    listed again, until such a listing finds nothing new: a task not yet frozen may fork, be
    moved or cloned into the cgroup, or exit and leave its children to a frozen subreaper."""
    since = _ticks()
    for root in roots:
        if root in frozen.tasks:
            raise CkptError(f"root {root} is inside the tree of another root: give each tree once")
        _take(root, 0, frozen)
        frozen.roots.append(root)
    if cgroup is not None:
        for root in _cgroup_news(cgroup, frozen, set())[0]:
            _join(root, frozen)
    if not frozen.roots:
        raise CkptError(f"cgroup {cgroup} holds no live task" if cgroup else "no root given")
    level = list(frozen.tasks)
    # Listings that found tasks born (or moved into the cgroup) during the freeze; those that
    # find only older tasks are not counted, so a deep but settled tree is no growth.
    growing = 0
    while True:
        full = not level
        found = _children(level or list(frozen.tasks), frozen)
        joined: list[int] = []
        pending = False
        if full and cgroup is not None:
            joined, pending = _cgroup_news(cgroup, frozen, {kid for kid, _ in found})
        if full and not found and not joined and not pending:
            return
        level = [kid for kid, parent in found if _take(kid, parent, frozen, optional=True)]
        level += [pid for pid in joined if _join(pid, frozen)]
        born = [(kid, parent) for kid, parent in found if kid in frozen.tasks and _born_after(kid, since)]
        if not born and not joined and not (full and pending and not level):
            continue
        growing += 1
        if growing == MAX_SCANS:
            raise _growth(born, joined, cgroup, len(frozen.tasks))


def _children(pids: list[int], frozen: Frozen) -> list[tuple[int, int]]:
    """(child, parent) of every child of these live tasks that is not frozen yet."""
    new: list[tuple[int, int]] = []
    seen: set[int] = set()
    for pid in pids:
        if frozen.tasks[pid].zombie:
            continue  # a zombie's children went to a reaper when it died
        for kid in proc.children(pid):
            if kid in frozen.roots:
                raise CkptError(f"root {kid} is inside the tree of root {_root_of(pid, frozen)}: "
                                "give each tree once")
            if kid not in frozen.tasks and kid not in seen:
                seen.add(kid)
                new.append((kid, pid))
    return new


def _join(pid: int, frozen: Frozen) -> bool:
    """Take a task of the cgroup as a root; False when it exited meanwhile (not ours then)."""
    if not _take(pid, 0, frozen, optional=True):
        return False
    frozen.roots.append(pid)
    return True


def _growth(born: list[tuple[int, int]], joined: list[int], cgroup: Path | None, total: int) -> KeepsGrowing:
    """The error for a freeze whose listings kept finding new tasks: who keeps making them."""
    scans = f"{MAX_SCANS} listings found new ones ({total} tasks seized)"
    if born:
        parents = sorted({parent for _, parent in born})
        who = _named(parents[0])
        if len(parents) > 1:
            who += f" and {len(parents) - 1} other tasks keep"
        else:
            who += " keeps"
        return KeepsGrowing(parents[0], f"{who} forking children while being frozen: {scans}")
    if joined:
        last = _named(joined[0])
        return KeepsGrowing(joined[0], f"tasks keep moving into cgroup {cgroup} while it is being frozen (the "
                            f"last: {last}): {scans}")
    return KeepsGrowing(0, f"the tasks of cgroup {cgroup} keep changing while it is being frozen: {scans}")


def _named(pid: int) -> str:
    """'pid N (comm)', or 'pid N' once it is gone."""
    try:
        return f"pid {pid} ({proc.stat(pid).comm})"
    except ProcessGone:
        return f"pid {pid}"


def _ticks() -> int:
    """Now, in the unit and clock of a task's start time (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * HZ)


def _born_after(pid: int, since: int) -> bool:
    """Whether the task started after this tick (proc(5) field 22, starttime): a task of a
    deep but settled tree is not growth, one forked during the freeze is."""
    try:
        return int(proc.stat_fields(pid)[19]) > since
    except ProcessGone:
        return False


def _root_of(pid: int, frozen: Frozen) -> int:
    while frozen.tasks[pid].entry.ppid:
        pid = frozen.tasks[pid].entry.ppid
    return pid


# --- cgroups (v2) ----------------------------------------------------------------------------

def cgroup2_mounts() -> list[Path]:
    """Where cgroup2 is mounted here, /sys/fs/cgroup first (a hybrid system has it below)."""
    out: list[Path] = []
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                # Spaces and the like are octal escapes there (\040).
                out.append(Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])))
    return sorted(out, key=lambda m: m != CGROUP_ROOT)


def cgroup_dir(spec: str | Path) -> Path:
    """The cgroup v2 directory a user named: absolute, or relative to the cgroup2 mount."""
    mounts = cgroup2_mounts()
    if not mounts:
        raise CkptError("no cgroup v2 hierarchy is mounted here (mount -t cgroup2 none /sys/fs/cgroup)")
    path = Path(spec)
    real = Path(os.path.realpath(path if path.is_absolute() else mounts[0] / path))
    tops = [Path(os.path.realpath(m)) for m in mounts]
    inside = any(real == top or top in real.parents for top in tops)
    if not inside or not (real / "cgroup.procs").is_file():
        hint = f"give a directory under {mounts[0]}, or a path relative to it"
        raise CkptError(f"cgroup {spec}: no such cgroup v2 directory ({hint})")
    return real


def cgroup_members(cgroup: Path) -> set[int]:
    """Every process of the cgroup and of its descendants (cgroup.procs: no zombies)."""
    out: set[int] = set()
    for top, _, _ in os.walk(cgroup):
        try:
            with open(os.path.join(top, "cgroup.procs")) as f:
                out.update(int(x) for x in f.read().split())
        except FileNotFoundError:
            if Path(top) == cgroup:
                raise CkptError(f"cgroup {cgroup} was removed") from None
            # A descendant removed during the walk held no task.
        except OSError as e:
            raise CkptError(f"{top}/cgroup.procs: {e.strerror}") from None
    return out


def _cgroup_news(cgroup: Path, frozen: Frozen, found: set[int]) -> tuple[list[int], bool]:
    """Processes of the cgroup not frozen yet: those with no ancestor in the cgroup or the
    tree (new roots), and whether others wait to be reached from a frozen ancestor (a child
    moved out of the cgroup stays in its tree all the same: trees are dumped whole)."""
    members = cgroup_members(cgroup)
    known = frozen.tasks.keys() | found
    among = members | known
    roots: list[int] = []
    pending = False
    for pid in sorted(members - known):
        try:
            above = _first_ancestor(pid, among)
        except ProcessGone:
            pending = True  # an ancestor exited under us: look again
            continue
        if above is None:
            roots.append(pid)
        elif above in known:
            pending = True
    return roots, pending


def _first_ancestor(pid: int, among: set[int]) -> int | None:
    """The nearest ancestor of the task that is in `among`, if any."""
    while pid > 1:
        pid = proc.stat(pid).ppid
        if pid in among:
            return pid
    return None


def _take(pid: int, parent: int, frozen: Frozen, optional: bool = False) -> bool:
    """Seize one task (or record a zombie) with its threads. An optional one (a child listed,
    a process of the cgroup) may be gone before we hold it: False, it is no part of the state."""
    try:
        task = _seize(pid, parent, frozen)
    except ProcessGone as e:
        # A child whose parent ignores SIGCHLD is reaped as it exits; a cgroup's process may exit.
        if optional and e.pid == pid and not os.path.exists(f"/proc/{pid}"):
            return False
        raise
    entry = task.entry
    if task.zombie:
        if parent == 0:
            if optional:
                return False  # a process of the cgroup that died: its parent, outside, reaps it
            raise CkptError(f"pid {pid} is a zombie: a root must be alive")
        entry.zombie = True
        entry.status = int(proc.stat_fields(pid)[49])  # exit_code (proc(5) field 52)
        masks = status_masks(proc.status(pid))  # now: one that died while seized has its last masks
        entry.sig_blocked, entry.sig_ignored, entry.sig_caught = masks
        entry.comm = proc.stat(pid).comm
    entry.tids.extend([pid] + [t.pid for t in task.others])
    frozen.tasks[pid] = task
    return True


def _seize(pid: int, parent: int, frozen: Frozen) -> Task:
    """The task's entry, with its threads seized if it is alive (leader None for a zombie)."""
    st = proc.stat(pid)
    if st.flags & PF_KTHREAD:
        raise CkptError(f"pid {pid} ({st.comm}) is a kernel thread")
    asleep = st.state == "D" and in_vfork(pid) and not _left_vfork(pid)
    if st.state == "D":
        st = proc.stat(pid)  # again: it may have waited for the vfork to end
    status = proc.status(pid)
    entry = TaskEntry(pid=pid, ppid=parent, pgid=st.pgid, sid=st.sid, nspids=proc.levels(status, "NSpid", pid),
                      nspgids=proc.levels(status, "NSpgid", st.pgid), nssids=proc.levels(status, "NSsid", st.sid))
    task = Task(entry)
    if st.state in "ZX":
        return _dead_main(task, frozen)
    if asleep:
        if proc.threads(pid) > 1:
            raise Unsupported(f"pid {pid} waits in vfork for its child while its other threads run (not supported)")
        task.in_vfork = True  # engine.vfork pairs it with its child once the tree is frozen
        task.switches = switches(status)
        return task
    try:
        task.leader = Tracee(pid, keep_scratch=True)
    except ProcessGone:
        proc.stat(pid)  # it died meanwhile: a zombie now (or gone: ProcessGone)
        return _dead_main(task, frozen)
    except PtraceError as e:
        # An exiting task refuses the seizure (EPERM): in a moment it is a zombie.
        if e.err != errno.EPERM or not _exiting(pid, pid):
            raise
        _disown(pid, pid)
        _zombie_soon(pid)
        return _dead_main(task, frozen)
    frozen.traced.append(task.leader)
    task.others = _freeze_threads(pid, frozen)
    if st.state == "T":
        entry.stopped = task.leader.stop_signal or 19  # SIGSTOP
    return task


def _dead_main(task: Task, frozen: Frozen) -> Task:
    """A task whose main thread is a zombie: a zombie process, or one whose main thread
    exited alone (pthread_exit, SYS_exit) while others live on. Those others are seized, the
    first one stands in for the main thread, and its exit status is noted (proc(5) field 52,
    exit_code). The zombie main thread itself refuses PTRACE_SEIZE (EPERM)."""
    pid, entry = task.entry.pid, task.entry
    task.others = _freeze_threads(pid, frozen)
    acting = task.acting
    if acting is None:
        return task
    acting.keep_scratch = True  # one scratch map per dump, as for a main thread
    task.main_exit = int(proc.stat_fields(pid)[49])
    entry.stopped = acting.stop_signal  # group stop: any thread reports it when seized
    return task


def _disown(pid: int, tid: int) -> None:
    """An exiting thread that refused the seizure may be a tracee of this thread already (left
    behind by an earlier failure): then its end is ours to collect, or no one could reap it,
    and killing the tree would wait for it for ever (engine.ptrace.abandon). Not a main thread
    exiting alone: its end cannot be collected before its other threads' (Tracee.exit_alone)."""
    try:
        st = proc.status(tid)
    except ProcessGone:
        return
    if st.get("TracerPid") != str(threading.get_native_id()):
        return
    if tid == pid and st.get("Threads", "1") != "1":
        return
    abandon(tid)


def _zombie_soon(pid: int) -> proc.TaskStat:
    """The stat of an exiting task once it is a zombie (its parent is frozen: no one reaps it)."""
    deadline = time.monotonic() + EXIT_WAIT
    while (st := proc.stat(pid)).state not in "ZX":
        if time.monotonic() > deadline:
            raise CkptError(f"pid {pid} is exiting and did not become a zombie within {EXIT_WAIT:g}s")
        time.sleep(0.001)
    return st


def _left_vfork(tid: int) -> bool:
    """Wait a moment for a thread sleeping in vfork to get out: usually a moment before its
    child execs or exits. No ptrace stop reaches it until then (seizing it would wait as long as
    the child likes). Whether it got out."""
    deadline = time.monotonic() + VFORK_WAIT
    while in_vfork(tid) and time.monotonic() < deadline:
        time.sleep(0.001)
    return not in_vfork(tid)


def _leave_vfork(pid: int, tid: int) -> None:
    """A thread other than the main one that sleeps in vfork must get out in a moment: else
    InVfork (its child may wait on a task frozen already: the caller thaws all and retries)."""
    if not _left_vfork(tid):
        raise InVfork(f"pid {pid}: its thread {tid} waits in vfork for its child, which shares its memory "
                      "(not supported)")


def switches(status: dict[str, str]) -> int:
    """Context switches of a task so far (of its /proc status). A task asleep has none: one
    whose count moved has run since (a vfork parent whose child exited before we held it,
    back in a vfork of another child by now)."""
    return int(status.get("voluntary_ctxt_switches", "0")) + int(status.get("nonvoluntary_ctxt_switches", "0"))


def in_vfork(pid: int) -> bool:
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


def _freeze_threads(pid: int, frozen: Frozen) -> list[Tracee]:
    """Seize every other thread of the process, listing them again until a listing shows no
    live thread we do not hold: one not yet stopped may create more. A thread that exits
    before we hold it is no part of the state; it is waited for until it is gone (readers of
    /proc/PID/task after the freeze must not meet it), and not taken for a new one meanwhile."""
    seized: dict[int, Tracee] = {}
    missed: set[int] = set()  # exited (or exiting) before we held them
    scans = 0
    deadline: float | None = None  # for the missed threads to be gone
    while True:
        listed = threads.tids(pid)
        # A missed tid listed again is new only if alive: its pid may have been reused.
        fresh = [tid for tid in listed if tid not in seized and (tid not in missed or not _exiting(pid, tid))]
        if not fresh:
            dying = [tid for tid in listed if tid not in seized]
            if not dying:
                return [seized[tid] for tid in sorted(seized)]
            deadline = deadline or time.monotonic() + EXIT_WAIT
            if time.monotonic() > deadline:
                raise CkptError(f"pid {pid}: thread {dying[0]} is exiting and did not go within {EXIT_WAIT:g}s")
            time.sleep(0.0005)
            continue
        scans += 1
        if scans > MAX_SCANS:
            raise KeepsGrowing(pid, f"{_named(pid)} keeps creating threads while being frozen: {MAX_SCANS} "
                               f"listings showed threads not seized yet ({len(seized) + 1} threads seized)")
        for tid in fresh:
            if _state(pid, tid) == "D" and in_vfork(tid):
                _leave_vfork(pid, tid)
            try:
                seized[tid] = Tracee(tid, tgid=pid)
            except ProcessGone:
                missed.add(tid)  # it exited between the listing and the seizure
                continue
            except PtraceError as e:
                # An exiting thread refuses the seizure (EPERM); one that is not exiting may not.
                if e.err == errno.EPERM and _exiting(pid, tid):
                    _disown(pid, tid)
                    missed.add(tid)
                    continue
                raise
            frozen.traced.append(seized[tid])


def _thread_stat(pid: int, tid: int) -> list[str]:
    """A thread's /proc stat fields after comm; none once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return raw[raw.rindex(")") + 2:].split()


def _state(pid: int, tid: int) -> str:
    """A thread's state letter (R, S, D, ...); empty once it is gone."""
    fields = _thread_stat(pid, tid)
    return fields[0] if fields else ""


def _exiting(pid: int, tid: int) -> bool:
    """Whether a thread is gone or dying (zombie/dead, or PF_EXITING)."""
    rest = _thread_stat(pid, tid)
    return not rest or rest[0] in "ZX" or bool(int(rest[6]) & 0x4)  # PF_EXITING (include/linux/sched.h)


def let_go(traced: list[Tracee], strict: bool = True) -> None:
    """Detach every frozen task (each as it was); when strict, the first error is raised
    (otherwise an error is on its way already and this one would hide it). One that cannot be
    let go as it was is still let go, or collected if it died while we held it (abandon): none
    stays ours."""
    errors: list[Exception] = []
    failed: list[Tracee] = []
    for t in traced:
        try:
            t.detach(own_restart_block=True)
        except (CkptError, OSError) as e:
            errors.append(e)
            failed.append(t)
    for t in reversed(failed):  # threads before their leader, which is collected only after them
        abandon(t.pid, t.mask, t.saved)
    if errors and strict:
        raise errors[0]


def kill(frozen: Frozen) -> None:
    """Kill every frozen task, children and threads before their parents and leaders (a
    traced leader is collected only after its threads); the tasks asleep in vfork first, as
    the death of their children would wake them."""
    for pid, task in frozen.tasks.items():
        if task.in_vfork:
            try:
                os.kill(pid, signal.SIGKILL)  # the vfork wait is killable; its parent reaps it
            except ProcessLookupError:
                pass
    # All signalled first, then collected: the dying tasks run their exits while we wait,
    # instead of a wake and a wait each. Half of them on our CPU, the others on the spare CPUs
    # (they were pinned to ours while traced): exits are kernel work, ~0.15 ms a task.
    spare = spare_cpus()
    for i, t in enumerate(frozen.traced):
        t.signal_kill(spare[i // 2 % len(spare)] if spare and i % 2 else None)
    for t in reversed(frozen.traced):
        t.collect()

