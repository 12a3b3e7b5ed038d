"""Restore of process trees: a planner turns the dumped table into a plan, the validator
proves it, the native executor builds the tree with exact pids (parked stubs, zombies), then
each live task is rebuilt by remote syscalls in its stub and all are let go together; the
roots come back as children of the caller. A failed restore leaves no process behind."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from engine import cpu, execute, files, images, mm, namespaces, proc, signals, stops, threads
from engine.errors import CkptError
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files, PipeData
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageRun
from engine.images.ns_pb2 import Namespaces
from engine.images.tree_pb2 import Tree
from engine.parts import PARTS
from engine.handover import Handover
from engine.pipes import Pipes
from engine.plan import NEW_INIT, Plan, Table, TaskRow
from engine.ptrace import Tracee, home_cpus, pinned

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class TaskImages:
    """Everything dumped about one task, read and checked before any process is created."""

    core: Core
    mm: Mm
    runs: list[PageRun]
    files: Files
    pages: Path
    parts: dict[str, Message]  # image kind -> its message, for each of PARTS


def _one(directory: Path, kind: str, of: type[M]) -> M:
    """The single entry of an image that holds exactly one."""
    path = images.path_of(directory, kind)
    _, entries = images.read(path, kind)
    if len(entries) != 1 or not isinstance(entries[0], of):
        raise images.ImageError(str(path), 0, f"expected one {kind} entry, found {len(entries)}")
    return entries[0]


def table_of(tree: Tree) -> Table:
    """The planner's table from the tree image."""
    rows = {e.pid: TaskRow(pid=e.pid, ppid=e.ppid, pgid=e.pgid, sid=e.sid, zombie=e.zombie, status=e.status,
                           subreaper=e.subreaper, stopped=e.stopped, nspids=tuple(e.nspids),
                           threads=max(len(e.tids), 1), sigmasks=(e.sig_blocked, e.sig_ignored, e.sig_caught), comm=e.comm,
                           ns_flags=e.ns_flags, nspgids=tuple(e.nspgids), nssids=tuple(e.nssids))
            for e in tree.tasks}
    return Table(rows, tree.outer_sid, tree.outer_pgid)


def load_pipes(directory: Path) -> list[PipeData]:
    """Queued contents of every pipe a task held."""
    return images.read(images.path_of(directory, "pipes"), "pipes")[1]


def load_ns(directory: Path, table: Table) -> Namespaces:
    """The namespaces the tasks made; each made by a task whose row says so."""
    ns = _one(directory, "ns", Namespaces)
    path = str(images.path_of(directory, "ns"))
    for n in ns.namespaces:
        row = table.rows.get(n.creator)
        if row is None or not row.ns_flags & n.kind:
            raise images.ImageError(path, 0, f"a namespace made by task {n.creator}, which the tree does not say made one")
    for pid, row in table.rows.items():
        init = len(row.nspids) > 1 and row.nspids[-1] == 1
        if init != bool(row.ns_flags & namespaces.KINDS["pid"]):
            raise images.ImageError(str(images.path_of(directory, "tree")), 0,
                                    f"task {pid}: its pids {list(row.nspids)} and its new namespaces disagree")
    return ns


def load(directory: Path) -> tuple[list[int], dict[int, TaskImages], Table, set[int]]:
    """The roots, every live task's images, the process table and the stopped tasks whose
    parent took their stop report (engine.stops); a missing or damaged image is an error here."""
    if not (directory / "inventory.img").exists():
        raise CkptError(f"{directory}: no inventory.img (not a checkpoint directory?)")
    inv = _one(directory, "inventory", Inventory)
    tree = _one(directory, "tree", Tree)
    table = table_of(tree)
    if set(inv.pids) != {p for p, r in table.rows.items() if not r.zombie}:
        raise images.ImageError(str(images.path_of(directory, "tree")), 0,
                                "its live tasks are not the inventory's")
    pids = list(inv.pids)
    per_task = {k.name: images.read_tasks(directory, k.name, pids) for k in images.KINDS.values() if k.per_task}
    tasks: dict[int, TaskImages] = {}
    for pid in pids:
        runs = list(per_task["pagemap"][pid].runs)
        pages = images.pages_path(directory, pid)
        stored = sum(r.nr_pages for r in runs) * images.PAGE_SIZE
        size = pages.stat().st_size if pages.exists() else 0
        if size != stored:
            raise images.ImageError(str(pages), size, f"holds {size} bytes, the page map says {stored}")
        tasks[pid] = TaskImages(per_task["core"][pid], per_task["mm"][pid], runs, per_task["files"][pid], pages,
                                {p.KIND: per_task[p.KIND][pid] for p in PARTS})
    return list(inv.roots), tasks, table, {e.pid for e in tree.tasks if e.stop_collected}


def _rebuild(t: Tracee, img: TaskImages, src: files.Sources, shared_anon: mm.SharedAnon, own: int) -> list[Tracee]:
    """Turn the stub into the dumped task (`own`: the pidfd of us it inherited); return its
    other threads (stopped, traced)."""
    core = img.core
    hand = Handover(t, own)
    cpu.unregister_rseq(t)
    lay = mm.prepare(t, img.mm)
    mm.restore(t, lay, img.mm, img.runs, img.pages, shared_anon, hand)
    files.restore(t, lay, img.files, src, hand)  # sessions and groups: the plan made them
    hand.close()
    threads.set_name(t, lay, core.comm)
    signals.restore(t, lay, core)
    # Threads before the parts: creating one with its tid needs privileges creds may drop;
    # per-thread parts (creds, seccomp) then run in each thread too. The stub's pdeathsig
    # (SIGKILL while we work) is replaced by the task part with the dumped one.
    others = threads.restore(t, lay, core)
    for part in PARTS:
        for who in [t] + (others if getattr(part, "PER_THREAD", False) else []):
            part.restore(who, lay, img.parts[part.KIND])
    mm.finish(t, lay)
    cpu.restore(t, core)
    t.mask = core.blocked  # set at detach
    t.restore_cpus = set(core.cpus) or home_cpus()  # set at detach
    return others


def _await_free(table: Table, timeout: float = 2.0) -> None:
    """Give the dumped tasks' own corpses a moment: right after a dump the killed tree's
    zombies hold its pids until their new parent reaps them."""
    deadline = time.monotonic() + timeout
    for pid in {n for r in table.rows.values() for n in (r.pid, r.pgid, r.sid)}:
        while execute.dead_but_there(pid) and time.monotonic() < deadline:
            time.sleep(0.002)


def restore(directory: Path, planner: str | None = None, new_pidns: bool = False) -> list[int]:
    """Restore every task of the checkpoint; return the roots' pids in dump order. With
    new_pidns the tasks keep their pids inside a new pid namespace (and mount namespace, with
    its /proc) under an init of ours, our child, which exits when the roots are gone."""
    roots, tasks, table, took = load(directory)
    ns = load_ns(directory, table)
    from engine import planners  # entry points are looked up only when restoring

    plan = planners.make_plan(table, planner)
    namespaces.check_outer(ns)
    if new_pidns:
        taken = [p for p, r in table.rows.items() if (r.nspids or (p,))[0] == 1]
        if taken:
            raise CkptError(f"task {taken[0]} has pid 1, which the new pid namespace's init takes")
    else:
        _await_free(table)
    made = Pipes(load_pipes(directory))
    try:
        with pinned():  # the stubs are forked here, so they start on our CPU too
            return _build(roots, tasks, table, plan, made, ns, new_pidns, took)
    finally:
        made.close()


def _await_stops(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until every thread of these tasks is in a group stop; CkptError after timeout."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            tids = os.listdir(f"/proc/{pid}/task")
            if all(proc.stat(int(tid)).state in "Tt" for tid in tids):
                break
            if time.monotonic() > deadline:
                raise CkptError(f"task {pid} was dumped stopped but did not stop again within {timeout:g}s")
            time.sleep(0.001)


def _let_go(t: Tracee, others: list[Tracee], stopped: int) -> None:
    """Detach a rebuilt task and its threads; a stopped one gets its stop signal first."""
    if stopped:
        os.kill(t.pid, stopped)
    for who in [t] + others:
        who.detach()


def _build(roots: list[int], tasks: dict[int, TaskImages], table: Table, plan: Plan, made: Pipes,
           ns: Namespaces, new_pidns: bool, took: set[int]) -> list[int]:
    """Run the plan, rebuild every live task, give the namespaces they made their state,
    let all go together."""
    own = os.pidfd_open(os.getpid())  # every stub inherits it: see engine.handover
    try:
        pids = execute.run(plan, table, new_pidns, keep=own)
    finally:
        os.close(own)  # the stubs' copies live on
    if NEW_INIT in pids:
        os.sched_setaffinity(pids[NEW_INIT], home_cpus())  # forked while we were pinned
    traced: list[Tracee] = []
    leaders: dict[int, Tracee] = {}
    shared_anon = mm.SharedAnon([img.mm for img in tasks.values()])
    src = files.Sources(made, shared_anon.memfds, pids)
    try:
        for pid, row in table.rows.items():
            if not row.zombie:
                leaders[pid] = Tracee(pids[pid])
                traced.append(leaders[pid])
        # First: the tasks' files are opened by their paths in their namespaces (/proc/PID
        # of a pid namespace, say).
        for n in ns.namespaces:
            namespaces.restore(leaders[n.creator], n)
        threads_of: dict[int, list[Tracee]] = {}
        for pid, t in leaders.items():
            threads_of[pid] = _rebuild(t, tasks[pid], src, shared_anon, own)
            traced += threads_of[pid]
        # Every task is whole before any runs again; a stopped one gets its stop signal
        # queued first, so it stops again before it runs a single instruction of its own.
        # One whose stop report its parent had taken stops first, while the parent is still
        # ours: the parent takes the new report before it runs (engine.stops).
        early = [p for p in took if p in leaders and table.rows[p].ppid in leaders]
        for pid in early:
            _let_go(leaders[pid], threads_of[pid], table.rows[pid].stopped)
        _await_stops([pids[p] for p in early])
        for pid in early:
            row, parent = table.rows[pid], table.rows[table.rows[pid].ppid]
            with leaders[row.ppid].scratch() as buf:
                stops.take(leaders[row.ppid], stops.seen_by(list(row.nspids), list(parent.nspids), pid), buf,
                           list(tasks[row.ppid].core.pending))
        for pid, t in leaders.items():
            if pid not in early:
                _let_go(t, threads_of[pid], table.rows[pid].stopped)
        # The stop takes effect when the task next runs: wait for it, so whoever looks at the
        # restored tree (the caller's snapshot, a SIGCONT) finds it stopped as it was dumped.
        _await_stops([pids[p] for p, r in table.rows.items() if r.stopped and not r.zombie and p not in early])
    except BaseException:
        # Threads before their leader: a traced leader is collected only after them.
        for t in reversed(traced):
            t.kill()
        execute.kill(pids)
        raise
    return [pids[r] for r in roots]
