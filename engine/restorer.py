"""Restore of process trees: a planner turns the dumped table into a plan, the validator
proves it, the native executor builds the tree with exact pids (parked stubs, zombies), then
each live task is rebuilt by remote syscalls in its stub (a vfork child is made by its rebuilt
parent: engine.vfork) and all are let go together; the roots come back as children of the
caller. A failed restore leaves no process behind."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar, cast

from google.protobuf.message import Message

from engine import (cow, cpu, execute, files, images, mm, namespaces, proc, restorehelper, sharedfds, signals, stops,
                    threads, vfork)
from engine.errors import CkptError
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files, PipeData
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageRun
from engine.images.ns_pb2 import Namespaces
from engine.images.task_pb2 import Task
from engine.images.tree_pb2 import Tree
from engine.parts import PARTS
from engine.handover import Handover
from engine.pipes import Pipes
from engine.mm import Layout
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
    inherited: list[PageRun]  # stored pages shared copy-on-write with its parent at dump (engine.cow)
    pages_at: int = 0  # where its runs begin in `pages`


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
                           ns_flags=e.ns_flags, nspgids=tuple(e.nspgids), nssids=tuple(e.nssids),
                           files_of_parent=e.files_of_parent)
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


def _same_threads(directory: Path, core: Core, attrs: Task) -> None:
    """The task image's per-thread attributes are of the core image's threads (or absent:
    an image from before they were dumped per thread)."""
    have, want = sorted(a.tid for a in attrs.threads), sorted(th.tid for th in core.threads)
    if have and have != want:
        raise images.ImageError(str(images.path_of(directory, "task")), 0,
                                f"task {core.pid}: attributes of threads {have}, its core has threads {want}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint directory read and checked before any process is created."""

    roots: list[int]
    tasks: dict[int, TaskImages]  # every live task's images
    table: Table
    took: set[int]  # stopped tasks whose parent took their stop report (engine.stops)
    vforks: dict[int, vfork.Child]  # tasks asleep in vfork, with the child each one makes
    forks: dict[int, int]  # tasks their rebuilt parent forks (engine.cow) -> that parent
    forked_by: dict[int, list[int]] = field(default_factory=dict)  # the other way round, by pid

    def __post_init__(self) -> None:
        for kid, parent in sorted(self.forks.items()):
            self.forked_by.setdefault(parent, []).append(kid)


def load(directory: Path) -> Checkpoint:
    """Every image of the checkpoint; a missing or damaged one is an error here."""
    if not (directory / "inventory.img").exists():
        raise CkptError(f"{directory}: no inventory.img (not a checkpoint directory?)")
    inv = _one(directory, "inventory", Inventory)
    tree = _one(directory, "tree", Tree)
    table = table_of(tree)
    if set(inv.pids) != {p for p, r in table.rows.items() if not r.zombie}:
        raise images.ImageError(str(images.path_of(directory, "tree")), 0,
                                "its live tasks are not the inventory's")
    pids = list(inv.pids)
    vforks = vfork.children(tree)
    memory_of = {c.pid: parent for parent, c in vforks.items()}  # a vfork child runs on its parent's
    if not set(memory_of) <= set(pids) or not set(vforks) <= set(pids):
        raise images.ImageError(str(images.path_of(directory, "tree")), 0, "a vfork parent or child is not live")
    per_task = {k.name: images.read_tasks(directory, k.name, [p for p in pids if not (k.memory and p in memory_of)])
                for k in images.KINDS.values() if k.per_task}
    tasks: dict[int, TaskImages] = {}
    pagemap_path = str(images.path_of(directory, "pagemap"))
    extents: dict[Path, dict[int, tuple[int, int]]] = {}  # pages file -> owner -> (first byte, bytes)
    for pid in pids:
        owner = memory_of.get(pid, pid)
        runs = list(per_task["pagemap"][owner].runs)
        pages, pages_at = images.pages_of(directory, per_task["pagemap"][owner], owner)
        extents.setdefault(pages, {})[owner] = (pages_at, sum(r.nr_pages for r in runs) * images.PAGE_SIZE)
        _same_threads(directory, per_task["core"][pid], per_task["task"][pid])
        _check_main(directory, per_task["core"][pid])
        inherited = [] if pid in memory_of else list(per_task["pagemap"][pid].inherited)
        ppid = table.rows[pid].ppid
        cow.check(pagemap_path, pid, per_task["mm"][owner], runs, inherited,
                  per_task["mm"].get(ppid) if ppid not in memory_of else None)
        tasks[pid] = TaskImages(per_task["core"][pid], per_task["mm"][owner], runs, per_task["files"][pid], pages,
                                {p.KIND: per_task[p.KIND][pid] for p in PARTS}, inherited, pages_at)
    for pages, spans in extents.items():
        _check_pages(pages, spans)
    # A task a pidfd refers to must exist when its holder's fds are opened: the plan makes it.
    busy = set(vforks) | set(memory_of) | {e.kernel.pidfd_pid for t in tasks.values() for e in t.files.fds
                                           if e.HasField("kernel")}
    forks = cow.forked(table, {p: t.inherited for p, t in tasks.items()}, busy,
                       {p for p, t in tasks.items() if t.core.main_exited})
    return Checkpoint(list(inv.roots), tasks, table, {e.pid for e in tree.tasks if e.stop_collected}, vforks, forks)


def _check_pages(pages: Path, spans: dict[int, tuple[int, int]]) -> None:
    """The tasks whose pages a file holds fill it exactly, one after another (ImageError)."""
    size = pages.stat().st_size if pages.exists() else 0
    end, last = 0, 0
    for at, n, owner in sorted((at, n, owner) for owner, (at, n) in spans.items()):
        if at != end:
            why = "overlap" if at < end else "leave a gap after"
            raise images.ImageError(str(pages), at, f"the pages of task {owner} {why} those of task {last}"
                                    if last else f"the pages of task {owner} begin at byte {at}, not 0")
        end, last = at + n, owner
    if size != end:
        raise images.ImageError(str(pages), size, f"holds {size} bytes, the page maps say {end}")


def _check_main(directory: Path, core: Core) -> None:
    """A main thread that exited alone did so by exit(2) (status: code << 8), and left threads."""
    if not core.main_exited:
        return
    path = str(images.path_of(directory, "core"))
    if core.main_status & ~0xFF00:
        raise images.ImageError(path, 0, f"task {core.pid}: its main thread's exit status {core.main_status:#x} "
                                "is no exit code << 8")
    if not core.threads:
        raise images.ImageError(path, 0, f"task {core.pid}: its main thread exited but it has no other thread")


def _rebuild(t: Tracee, img: TaskImages, src: files.Sources, shared_anon: mm.SharedAnon, own: int,
             files_of_parent: bool = False, vfork_parent: bool = False,
             fork_kids: Callable[[Tracee, Layout, int], None] | None = None,
             inherit: mm.Inherit | None = None, source: TaskImages | None = None) -> tuple[list[Tracee], Layout, Handover]:
    """Turn the stub into the dumped task (`own`: the pidfd of us it inherited); return its
    other threads (stopped, traced), its scratch layout and its handover. A vfork parent is left
    with both, for its child (_vfork_child). With files_of_parent its fd table is its
    parent's, which gets the fds, and closes the pidfd, when rebuilt after it. fork_kids runs
    once its memory, fds and sigactions are whole, before its threads, creds and filters (a
    parent forks there: engine.cow); a task so forked from `source` keeps what `inherit` says
    of its memory, and what it has of the source's alike."""
    core = img.core
    hand = Handover(t, own)
    cpu.unregister_rseq(t)
    lay = mm.prepare(t, img.mm, inherit.areas if inherit else None, source.mm if source else None)
    mm.restore(t, lay, img.mm, img.runs, img.pages, shared_anon, hand, inherit, img.pages_at)
    if files_of_parent:
        files.restore_fs(t, lay, img.files)
    elif source is not None:
        files.restore_forked(t, lay, img.files, source.files, src, hand)
    else:
        files.restore(t, lay, img.files, src, hand)  # sessions and groups: the plan made them
    if source is None or source.core.comm != core.comm:
        threads.set_name(t, lay, core.comm)
    signals.restore(t, lay, core, inherited=list(source.core.sigactions) if source is not None else ())
    if fork_kids is not None:
        fork_kids(t, lay, hand.pidfd)  # they inherit the pidfd of us too, at its number
    if not files_of_parent and not vfork_parent:
        hand.close()
    # Threads before the parts: creating one with its tid needs privileges creds may drop.
    # They get their own credentials and filters there (engine.threads); the task part then
    # gives the main thread its own. The stub's pdeathsig (SIGKILL while we work) is replaced
    # by the task part with the dumped one.
    others = threads.restore(t, lay, core, cast(Task, img.parts["task"]))
    for part in PARTS:
        part.restore(t, lay, img.parts[part.KIND])
    if not vfork_parent:
        mm.finish(t, lay)
    if not core.main_exited:  # else the main thread only exits (_let_go): nothing of its own
        cpu.restore(t, core)
    t.mask = core.blocked  # set at detach
    t.restore_cpus = set(core.cpus) or home_cpus()  # set at detach
    return others, lay, hand


def _vfork_child(t: Tracee, lay: Layout, hand: Handover, parent: TaskImages, img: TaskImages, table: Table,
                 child: vfork.Child, src: files.Sources, traced: list[Tracee]) -> Tracee:
    """The rebuilt vfork parent t makes its child again and waits in vfork from here on; the
    child, on the parent's memory, gets its own state (engine.vfork). The new tasks join
    `traced` at once: a failure kills them with the rest."""
    core = img.core
    spare = threads.spare(t, lay)  # for what the parent cannot do once it waits: vfork.finish
    traced.append(spare)
    c = vfork.clone_child(t, lay, child, table.rows[child.pid])
    traced.append(c)
    # The child was born with copies of the parent's fds (the restorer's pidfd among them, at
    # the same number) and sigactions.
    own = Handover(c, hand.pidfd)
    files.restore(c, lay, img.files, src, own)
    own.close()
    vfork.place(c, table.rows[child.pid], table.rows[parent.core.pid], table)
    threads.set_name(c, lay, core.comm)
    signals.restore(c, lay, core, inherited=list(parent.core.sigactions))
    for part in PARTS:
        part.restore(c, lay, img.parts[part.KIND])
    cpu.restore(c, core)
    c.mask = core.blocked
    c.restore_cpus = set(core.cpus) or home_cpus()
    vfork.finish(spare, lay, hand.pidfd)
    traced.remove(spare)
    return c


def _forker(ck: Checkpoint, pid: int, forked: list[tuple[int, Tracee, int]],
            traced: list[Tracee]) -> Callable[[Tracee, Layout, int], None] | None:
    """What task pid does once its memory, fds and sigactions are rebuilt: fork its children
    that share pages with it (engine.cow), each put in its session and group at once; None if
    it has none. Each is listed with the number of the pidfd of us it inherited."""
    kids = ck.forked_by.get(pid)
    if not kids:
        return None
    table = ck.table

    def fork(t: Tracee, lay: Layout, pidfd: int) -> None:
        for kid in kids:
            c = cow.fork(t, lay, table.rows[kid].nspids, kid)
            traced.append(c)  # at once: a failure kills it with the rest
            forked.append((kid, c, pidfd))
            vfork.place(c, table.rows[kid], table.rows[pid], table)
    return fork


def _rebuild_forked(ck: Checkpoint, src: files.Sources, shared_anon: mm.SharedAnon,
                    todo: list[tuple[int, Tracee, int, int]], traced: list[Tracee], leaders: dict[int, Tracee],
                    threads_of: dict[int, list[Tracee]], pids: dict[int, int], helper: restorehelper.Helper | None,
                    note: restorehelper.Note | None = None) -> None:
    """Rebuild forked tasks (dumped pid, tracee, its pidfd of us, the task that forked it), each
    forking its own children in turn; those the helper takes go to it as soon as they are
    forked. `note` hears of every task forked here (in the helper)."""
    tasks = ck.tasks
    todo = _hand(helper, todo, traced)
    while todo:
        kid, c, pidfd, forker = todo.pop()
        img, source = tasks[kid], tasks[forker]
        inherit = cow.inherit(img.mm, img.runs, img.inherited, source.mm, source.runs)
        more: list[tuple[int, Tracee, int]] = []
        threads_of[kid], _, _ = _rebuild(c, img, src, shared_anon, pidfd, inherit=inherit, source=source,
                                         fork_kids=_forker(ck, kid, more, traced))
        traced += threads_of[kid]
        leaders[kid], pids[kid] = c, c.pid
        if note is not None and more:
            note([cc.pid for _, cc, _ in more])
        todo += _hand(helper, [(k, cc, fd, kid) for k, cc, fd in more], traced)


def _hand(helper: restorehelper.Helper | None, todo: list[tuple[int, Tracee, int, int]],
          traced: list[Tracee]) -> list[tuple[int, Tracee, int, int]]:
    """The forked tasks of todo the helper does not take; those it takes, handed over."""
    if helper is None:
        return todo
    ours = []
    for kid, c, pidfd, forker in todo:
        if kid in helper.chosen:
            helper.give(c, kid, pidfd, forker)
            traced.remove(c)  # (after: a failed handover kills it with the rest)
        else:
            ours.append((kid, c, pidfd, forker))
    return ours


def _helper(ck: Checkpoint, src: files.Sources, shared_anon: mm.SharedAnon) -> restorehelper.Helper | None:
    """A helper for this restore (engine.restorehelper), if it has subtrees to give one; what
    it does in its own process is here, on its own lists."""
    tasks, rows = ck.tasks, ck.table.rows
    candidates = {p: restorehelper.Candidate(ck.forks.get(p), bool(rows[p].stopped) or p in ck.took, img.files,
                                             tasks[ck.forks[p]].files if p in ck.forks else None, img.mm)
                  for p, img in tasks.items()}
    chosen = restorehelper.choose(candidates, ck.forked_by, files.alike, len(home_cpus()))
    if not chosen:
        return None
    traced: list[Tracee] = []
    leaders: dict[int, Tracee] = {}
    threads_of: dict[int, list[Tracee]] = {}

    def work(job: restorehelper.Job, note: restorehelper.Note) -> None:
        kid, pid, syscall_at, pidfd, forker = job
        c = Tracee(pid)
        traced.append(c)
        c.moved_syscall(syscall_at)
        _rebuild_forked(ck, src, shared_anon, [(kid, c, pidfd, forker)], traced, leaders, threads_of, {}, None, note)

    def release() -> None:
        for pid, t in leaders.items():
            _let_go(t, threads_of[pid], 0, tasks[pid].core)

    def drop() -> None:
        for t in reversed(traced):
            t.kill()

    return restorehelper.Helper(chosen, work, release, drop)


def _rebuild_order(table: Table, leaders: dict[int, Tracee]) -> list[int]:
    """The live tasks in the order they are rebuilt: one sharing its parent's fd table before
    that parent (which closes what the stubs had in the table, the pidfd of us they use
    included), the deeper first; then the others as they come."""
    def depth(pid: int) -> int:
        n = 0
        while table.rows[pid].files_of_parent:
            pid, n = table.rows[pid].ppid, n + 1
        return n

    sharers = sorted((p for p in leaders if table.rows[p].files_of_parent), key=depth, reverse=True)
    return sharers + [p for p in leaders if not table.rows[p].files_of_parent]


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
    ck = load(directory)
    table = ck.table
    ns = load_ns(directory, table)
    from engine import planners  # entry points are looked up only when restoring

    # Vfork children are made by their parents once rebuilt, not by the plan (engine.vfork);
    # so are children that share pages copy-on-write with their parent (engine.cow).
    planned = cow.planned(vfork.planned(table, ck.vforks), ck.forks)
    plan = planners.make_plan(planned, planner)
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
            return _build(ck, planned, plan, made, ns, new_pidns)
    finally:
        made.close()


def _await_stops(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until every thread of these tasks is in a group stop; CkptError after timeout."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            tids = os.listdir(f"/proc/{pid}/task")
            # A main thread that exited alone stays a zombie (Z) in a stopped process.
            if all(proc.stat(int(tid)).state in "TtZ" for tid in tids):
                break
            if time.monotonic() > deadline:
                raise CkptError(f"task {pid} was dumped stopped but did not stop again within {timeout:g}s")
            time.sleep(0.001)


def _let_go(t: Tracee, others: list[Tracee], stopped: int, core: Core, in_vfork: bool = False) -> None:
    """Detach a rebuilt task and its threads; a stopped one gets its stop signal first; a
    vfork parent goes on in its syscall. A main thread that had exited alone at dump exits
    again first, now that its threads exist (it had to live to clone them with their tids),
    while they are still held."""
    if core.main_exited:
        _exit_main(t, core.main_status)
    if stopped:
        os.kill(t.pid, stopped)
    if in_vfork:
        t.release_in_syscall()
    elif not core.main_exited:
        t.detach()
    for who in others:
        who.detach()


def _exit_main(t: Tracee, status: int, timeout: float = 2.0) -> None:
    """The main thread exits alone with the dumped status and is a zombie again, one its
    parent cannot reap before the last thread has exited."""
    got = t.exit_alone(status >> 8)
    if got != status:
        raise CkptError(f"pid {t.pid}: its main thread exited with status {got:#x}, not the dumped {status:#x}")
    deadline = time.monotonic() + timeout
    while proc.stat(t.pid).state != "Z":  # let go at its exit stop: it dies a moment later
        if time.monotonic() > deadline:
            raise CkptError(f"pid {t.pid}: its main thread did not become a zombie within {timeout:g}s")
        time.sleep(0.0005)


def _build(ck: Checkpoint, planned: Table, plan: Plan, made: Pipes, ns: Namespaces, new_pidns: bool) -> list[int]:
    """Run the plan of the `planned` table, rebuild every live task (a vfork parent makes its
    child then), give the namespaces they made their state, let all go together."""
    tasks, table, took = ck.tasks, ck.table, ck.took
    kids = {c.pid for c in ck.vforks.values()} | set(ck.forks)
    own = os.pidfd_open(os.getpid())  # every stub inherits it: see engine.handover
    try:
        pids = execute.run(plan, planned, new_pidns, keep=own)
    finally:
        os.close(own)  # the stubs' copies live on
    if NEW_INIT in pids:
        os.sched_setaffinity(pids[NEW_INIT], home_cpus())  # forked while we were pinned
    traced: list[Tracee] = []
    leaders: dict[int, Tracee] = {}
    shared_anon = mm.SharedAnon([img.mm for img in tasks.values()])
    src = files.Sources(made, shared_anon.memfds, pids, sharedfds.Shared())
    helper = _helper(ck, src, shared_anon)
    try:
        for pid, row in table.rows.items():
            if not row.zombie and pid not in kids:
                leaders[pid] = Tracee(pids[pid])
                traced.append(leaders[pid])
        # First: the tasks' files are opened by their paths in their namespaces (/proc/PID
        # of a pid namespace, say).
        for n in ns.namespaces:
            namespaces.restore(leaders[n.creator], n)
        threads_of: dict[int, list[Tracee]] = {}
        for pid in _rebuild_order(table, leaders):
            t, child = leaders[pid], ck.vforks.get(pid)
            forked: list[tuple[int, Tracee, int]] = []
            threads_of[pid], lay, hand = _rebuild(t, tasks[pid], src, shared_anon, own, table.rows[pid].files_of_parent,
                                                  vfork_parent=child is not None,
                                                  fork_kids=_forker(ck, pid, forked, traced))
            traced += threads_of[pid]
            if child is not None:
                c = _vfork_child(t, lay, hand, tasks[pid], tasks[child.pid], table, child, src, traced)
                leaders[child.pid], threads_of[child.pid], pids[child.pid] = c, [], c.pid
            _rebuild_forked(ck, src, shared_anon, [(kid, c, pidfd, pid) for kid, c, pidfd in forked], traced,
                            leaders, threads_of, pids, helper)
        if helper is not None:
            helper.ready()  # every task is whole before any runs again: the helper's too
        for n in ns.namespaces:
            namespaces.finish(leaders[n.creator], n)
        # Every task is whole before any runs again; a stopped one gets its stop signal
        # queued first, so it stops again before it runs a single instruction of its own.
        # One whose stop report its parent had taken stops first, while the parent is still
        # ours: the parent takes the new report before it runs (engine.stops).
        early = [p for p in took if p in leaders and table.rows[p].ppid in leaders]
        for pid in early:
            _let_go(leaders[pid], threads_of[pid], table.rows[pid].stopped, tasks[pid].core)
        _await_stops([pids[p] for p in early])
        for pid in early:
            row, parent = table.rows[pid], table.rows[table.rows[pid].ppid]
            with leaders[row.ppid].scratch() as buf:
                stops.take(leaders[row.ppid], stops.seen_by(list(row.nspids), list(parent.nspids), pid), buf,
                           list(tasks[row.ppid].core.pending))
        if helper is not None:
            helper.go()  # it lets its tasks go while we let go of ours
        for pid, t in leaders.items():  # a vfork parent before its child: it waits for it
            if pid not in early:
                _let_go(t, threads_of[pid], table.rows[pid].stopped, tasks[pid].core, in_vfork=pid in ck.vforks)
        # The stop takes effect when the task next runs: wait for it, so whoever looks at the
        # restored tree (the caller's snapshot, a SIGCONT) finds it stopped as it was dumped.
        _await_stops([pids[p] for p, r in table.rows.items() if r.stopped and not r.zombie and p not in early])
        if helper is not None:
            helper.finish()
    except BaseException:
        if helper is not None:
            helper.abort()  # its tasks die while it still traces them
        # Threads before their leader: a traced leader is collected only after them.
        for t in reversed(traced):
            t.kill()
        execute.kill(pids)
        raise
    finally:
        if helper is not None:
            helper.close()
        src.shared.close()  # the tasks keep theirs
    return [pids[r] for r in ck.roots]
