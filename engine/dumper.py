"""Dump of process trees: every task of every root (or of a cgroup) frozen first
(engine.tree), then each live task's identity, CPU, memory, signals, files and parts, one
module per kind of state."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence, cast

from google.protobuf.message import Message

from engine import (asleep, cow, cpu, fdtables, files, images, mm, namespaces, pagedump, pageworker, proc, questions,
                    sharedfds, signals, stops, threads, tree, vfork)
from engine.parts import PARTS
from engine.errors import CkptError, Unsupported
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files, PipeData
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageMap
from engine.ptrace import others_busy, pinned
from engine.restorer import table_of

VERSION = "0.7"  # of the engine and its image format (0.7: small tasks share a pages file)
VFORK_RETRIES = 8
SIGHANDS_FROM = 8  # live tasks from which sigactions are read for all at once


def _sighands(frozen: tree.Frozen) -> dict[int, asleep.Sighand]:
    """The sigactions of every process, read at once from the kernel when there are enough
    tasks for it to pay (engine.asleep.sighands: 4 ms, where a task's own take 63 remote
    calls); empty when too few, or when BPF cannot be used here (the remote calls serve)."""
    pids = {task.acting.tgid for task in frozen.tasks.values() if task.acting is not None}
    if len(pids) < SIGHANDS_FROM:
        return {}
    try:
        return asleep.sighands(pids) or {}
    except (Unsupported, CkptError):
        return {}


def _dump_task(task: tree.Task, out: Path, pipe_data: dict[int, PipeData], per_task: dict[str, list[Message]],
               own_memory: bool = True, sighand: asleep.Sighand | None = None,
               worker: pageworker.Worker | None = None, parent: tuple[int, Mm] | None = None,
               packed: pagedump.Packed | None = None) -> None:
    """One live task: process-wide state through its acting thread (engine.tree.Task), then
    each other thread's own; a main thread that exited alone leaves only its exit status. A
    vfork child's memory is its parent's (engine.vfork): own_memory False. `parent`: its
    parent's thread and Mm when the pages it shares with it are to be listed by the worker."""
    t = task.acting
    assert t is not None
    pid = task.entry.pid
    st = proc.stat(pid)  # a zombie main thread's stat still names the process
    core = Core(pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, comm=st.comm)
    if task.main_exit is None:
        core.cpus.extend(sorted(t.cpus))
        cpu.dump(t, core)
    else:
        core.main_exited, core.main_status = True, task.main_exit
        # What /proc still shows of the zombie thread: the mask and affinity it died with.
        core.blocked = tree.status_masks(proc.status(pid))[0]
        core.cpus.extend(sorted(os.sched_getaffinity(pid)))
    # A zombie main thread's /proc shows no fds and no memory: read them through t's.
    handed = False  # its pages went to the worker: its fds go too (nothing adds any to it meanwhile)
    if own_memory:
        pagemap = PageMap(pid=pid)  # its runs: now, or from the worker at its finish()
        area, runs = mm.dump(t, out, worker=worker, into=pagemap, parent=parent, packed=packed)
        handed = runs is None
        pagemap.runs.extend(runs or [])
        per_task["mm"].append(area)
        per_task["pagemap"].append(pagemap)
    # After the memory, whose splicing pipes are gone by then.
    if worker is not None and handed and not task.entry.files_of_parent:
        fds = Files(pid=pid)  # filled at the worker's finish()
        worker.files(t.pid, fds)
    else:
        fds = files.dump(t.pid, pipe_data, with_fds=not task.entry.files_of_parent)
        fds.pid = pid
    # After the memory: the scratch page these remote calls use must not be in the image.
    actions, blocked, altstack = signals.dump(t, sighand)
    core.sigactions.extend(actions)
    if task.main_exit is None:
        core.blocked = blocked
        core.altstack.CopyFrom(altstack)
    else:
        core.altstack.flags = signals.SS_DISABLE  # t's own stack goes with its thread
    core.pending.extend(signals.pending(t, own_queue=task.main_exit is None))
    others = task.others
    if others:
        with t.scratch() as buf:
            core.threads.extend(threads.dump(tt, buf) for tt in others)
    per_task["core"].append(core)
    per_task["files"].append(fds)
    for part in PARTS:
        per_task[part.KIND].append(part.dump(t, others))
    t.answers = None  # of this dump: a later use of t asks again


def _ask(frozen: tree.Frozen, kernel: dict[int, asleep.Sighand]) -> None:
    """Each live task's answers to the dump's questions (engine.questions): told by the kernel
    for a task alone in its process whose fields say all (no remote call), else asked in one
    batch; its subreaper flag goes to its entry. A task with other threads is asked: its
    threads' own remote calls need the scratch area that batch maps."""
    for task in frozen.tasks.values():
        t = task.acting
        if t is None:
            continue
        sh = kernel.get(t.tgid)
        told = sh.told if sh is not None and not task.others else None
        answers = (told and questions.from_kernel(t, told)) or questions.ask(t)
        task.entry.subreaper = answers.subreaper


def _mark_fd_tables(frozen: tree.Frozen) -> None:
    """Mark the tasks whose fd table is their parent's (engine.fdtables)."""
    live = {pid: (task.acting.pid, task.entry.ppid) for pid, task in frozen.tasks.items() if task.acting is not None}
    for pid in fdtables.of_parent(live) if len(live) > 1 else ():
        frozen.tasks[pid].entry.files_of_parent = True


def _refuse(pid: int) -> None:
    """Roots this engine must not dump: one clear reason."""
    if pid == os.getpid():
        raise CkptError(f"pid {pid} is the dumping process itself")
    if pid in _ancestors(os.getpid()):
        raise CkptError(f"pid {pid} is an ancestor of the dumping process: its tree holds us")
    proc.stat(pid)  # ProcessGone for a pid that does not exist


def _refuse_cgroup(cgroup: Path) -> None:
    """A cgroup this engine must not dump (empty, or holding us): one clear reason."""
    members = tree.cgroup_members(cgroup)
    if not members:
        raise CkptError(f"cgroup {cgroup} holds no task")
    me = os.getpid()
    if me in members:
        raise CkptError(f"cgroup {cgroup} holds the dumping process itself (pid {me})")
    held = sorted(members & _ancestors(me))
    if held:
        raise CkptError(f"cgroup {cgroup} holds pid {held[0]}, an ancestor of the dumping process")


def _ancestors(pid: int) -> set[int]:
    out: set[int] = set()
    while pid > 1:
        pid = proc.stat(pid).ppid
        out.add(pid)
    return out


def _freeze(roots: list[int], cgroup: Path | None) -> tuple[tree.Frozen, dict[int, vfork.Pair]]:
    """Freeze the trees and pair the tasks asleep in vfork with their children; a thread
    caught in vfork, or a task that left vfork while we froze, makes us let all go for a moment
    and retry (a thread's child may need a task we froze to get on)."""
    attempt = 0
    while True:
        frozen = tree.Frozen()
        try:
            tree.freeze(roots, frozen, cgroup)
            return frozen, vfork.pair(frozen)
        except BaseException as e:
            tree.let_go(frozen.traced, strict=False)
            attempt += 1
            if not isinstance(e, tree.InVfork) or attempt == VFORK_RETRIES:
                raise
        time.sleep(0.01 * attempt)


def dump(roots: Sequence[int], out: Path, leave_running: bool = False, cgroup: str | Path | None = None) -> list[int]:
    """Checkpoint the trees of these roots, or of the topmost tasks of a cgroup v2 directory
    (absolute, or relative to the cgroup2 mount), into the empty (or new) directory `out`;
    kill them afterwards unless leave_running. The roots dumped, in image order. A failed dump
    leaves every task running as it was."""
    where = _scope(list(roots), cgroup)
    with pinned():
        return _dump(list(roots), where, out, leave_running)


def _scope(roots: list[int], cgroup: str | Path | None) -> Path | None:
    """Check what the caller named (roots, or a cgroup: exactly one); the cgroup's directory."""
    if cgroup is not None and roots:
        raise CkptError("give root pids or a cgroup, not both")
    if cgroup is None:
        if not roots:
            raise CkptError("no root pid given")
        if len(set(roots)) != len(roots):
            raise CkptError(f"a root is given twice: {','.join(map(str, roots))}")
        for pid in roots:
            _refuse(pid)
        return None
    where = tree.cgroup_dir(cgroup)
    _refuse_cgroup(where)
    return where


def _dump(roots: list[int], cgroup: Path | None, out: Path, leave_running: bool) -> list[int]:
    if out.exists() and any(out.iterdir()):
        raise CkptError(f"{out}: the image directory is not empty")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    frozen = tree.Frozen()
    try:
        # Every task is stopped before any is read, and stays stopped until all are written.
        with others_busy():  # each seizure wakes a task, maybe on another CPU
            frozen, pairs = _freeze(roots, cgroup)  # pairs: they set the entries' vfork fields
        live = sum(task.acting is not None for task in frozen.tasks.values())
        pipe_data: dict[int, PipeData] = {}
        worker = None
        packed = pagedump.Packed(out, "dumper")
        try:
            # All frozen from here: their stat and status stay as read (in the worker too).
            with proc.held():
                worker = pageworker.Worker(pipe_data) if live >= pageworker.FROM else None
                _write(frozen, pairs, out, worker, pipe_data, packed)
        except BaseException:
            if worker is not None:
                worker.kill()  # before its files are removed
            raise
        finally:
            packed.close()
    except BaseException:
        for p in out.iterdir():
            p.unlink()
        if created:
            out.rmdir()
        tree.let_go(frozen.traced, strict=False)
        raise
    if leave_running:
        tree.let_go(frozen.traced)
    else:
        # Still stopped (or asleep in vfork): they never run again.
        tree.kill(frozen)
    return frozen.roots


def _write(frozen: tree.Frozen, pairs: dict[int, vfork.Pair], out: Path, worker: pageworker.Worker | None,
           pipe_data: dict[int, PipeData], packed: pagedump.Packed) -> None:
    """Every image of the frozen trees; the worker, if any, stores small tasks' pages and reads
    their fds (its pipes' data go to pipe_data too); the small tasks kept here have their
    pages in `packed`."""
    kernel = _sighands(frozen)
    _ask(frozen, kernel)  # before the table: it sets the entries' subreaper flags
    made = namespaces.dump(frozen)  # before the table: it sets the entries' ns_flags
    stops.mark(frozen)  # before the table too: it sets stop_collected
    _mark_fd_tables(frozen)  # and files_of_parent
    table = frozen.table()
    vfork.planned(table_of(table), vfork.children(table))  # refuse here what the restore cannot make
    per_task: dict[str, list[Message]] = {k.name: [] for k in images.KINDS.values() if k.per_task}
    vforked = {p.child.pid for p in pairs.values()}
    skip = vforked | set(pairs)  # one memory: no pages to compare (engine.cow)
    holders: list[tuple[int, Files]] = []  # a thread of each task (its fd table), its fds
    mm_of: dict[int, Mm] = {}  # the tasks dumped so far (parents come before their children)
    for pid, task in frozen.tasks.items():
        if task.acting is not None:
            through = cow.parent_of(frozen, pid, skip) if worker is not None else None
            parent = mm_of.get(task.entry.ppid)
            _dump_task(task, out, pipe_data, per_task, own_memory=pid not in vforked,
                       sighand=kernel.get(task.acting.tgid), worker=worker,
                       parent=None if through is None or parent is None else (through, parent), packed=packed)
            if pid not in vforked:
                mm_of[pid] = cast(Mm, per_task["mm"][-1])
            holders.append((task.acting.pid, cast(Files, per_task["files"][-1])))
        elif task.in_vfork:
            vfork.dump_parent(pairs[pid], out, pipe_data, per_task)
            # Its child was born with copies of its fds: one description each, as for a fork.
            holders.append((pid, cast(Files, per_task["files"][-1])))
    if worker is not None:
        worker.finish()  # every page map whole
    sharedfds.mark(holders)  # across tasks: once every fd is recorded
    cow.mark(frozen, per_task, skip, worker.compared if worker else set())  # every task's memory stored
    for kind, entries in per_task.items():
        images.write(images.path_of(out, kind), kind, entries)
    images.write(images.path_of(out, "tree"), "tree", [table])
    images.write(images.path_of(out, "pipes"), "pipes", list(pipe_data.values()))
    images.write(images.path_of(out, "ns"), "ns", [made])
    live = [pid for pid, task in frozen.tasks.items() if not task.zombie]
    inv = Inventory(engine_version=VERSION, kernel=os.uname().release, roots=frozen.roots, pids=live,
                    kinds=sorted(images.KINDS))
    images.write(images.path_of(out, "inventory"), "inventory", [inv])
