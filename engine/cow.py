"""Private pages a child still shares copy-on-write with its parent, dump and restore side by
side (the pages neither wrote since the fork).

Dump: for a live child of a live parent, a page of an area both have alike (same bounds,
prot, offset and backing; not one the parent keeps from its children, MADV_DONTFORK or
MADV_WIPEONFORK) is shared when both pagemaps name the same physical page (the PFN, which
pagemap shows root). Such pages are stored all the same (a restore may not fork) and listed
in the child's page map as `inherited`.

Restore: a child with inherited pages that its parent can make with a fork (see forked: its
children forked too, its group and session makeable then) is left out of the plan; its
parent, once its memory, fds and sigactions are rebuilt and before its threads, creds and
filters (the child must not inherit those), forks it with its pids (clone3 with set_tid),
traced from birth. The child keeps the areas that hold inherited pages, and its file areas,
as the fork gave them, drops the parent's pages it had not, writes only its own pages over them
(each write breaks the sharing of that page alone); it keeps its parent's fds when it had
exactly those, and its sigactions where they are alike; the rest is rebuilt as in any task,
and it forks its own children in turn."""
from __future__ import annotations

import bisect
import os
import signal
from array import array
from typing import Iterator

from google.protobuf.message import Message

from engine import images, mm, proc, threads, tree
from engine.images.mm_pb2 import Mm, PageMap, PageRun, Vma
from engine.plan import Table
from engine.ptrace import Tracee
from engine.mm import Inherit, Layout
from native import lib

PAGE = images.PAGE_SIZE
PM_PRESENT = 1 << 63
PM_PFN = (1 << 55) - 1  # bits 0-54 of a present page's entry (Documentation/admin-guide/mm/pagemap.rst)
NOT_FORKED = ("dc", "wf")  # smaps VmFlags of areas a fork does not copy as they are
UNLOCKED = ("lo", "lf")  # VmFlags a fork does not pass on (mlock): the child relocks its own
PR_SET_PDEATHSIG = 1


def _twin(v: Vma, parent: dict[tuple[int, int], Vma]) -> Vma | None:
    """The parent's area a fork gives the child as v is, if any."""
    p = parent.get((v.start, v.end))
    if p is None or v.perms[3] != "p" or v.memfd or v.path in mm.KERNEL_AREAS:
        return None
    if p.perms != v.perms or p.pgoff != v.pgoff or p.path != v.path or p.memfd:
        return None
    pflags = p.vmflags.split()
    if any(f in pflags for f in NOT_FORKED):
        return None
    if p.vmflags != v.vmflags and set(pflags) - set(UNLOCKED) != set(v.vmflags.split()) - set(UNLOCKED):
        return None
    return p


# --- dump ------------------------------------------------------------------------------------

def parent_of(frozen: tree.Frozen, pid: int, skip: set[int]) -> int | None:
    """The thread of the task's parent its pages are compared through, if they are to be:
    both live, neither in `skip` (tasks of vfork pairs, whose memory is one), the task forked
    (its exit signal SIGCHLD)."""
    task = frozen.tasks[pid]
    ppid = task.entry.ppid
    parent = frozen.tasks.get(ppid)
    if pid in skip or ppid in skip or parent is None or task.acting is None or parent.acting is None:
        return None
    if int(proc.stat_fields(pid)[35]) != signal.SIGCHLD:  # exit_signal (proc(5) 38): a fork's
        return None
    return parent.acting.pid


def mark(frozen: tree.Frozen, per_task: dict[str, list[Message]], skip: set[int], done: set[int]) -> None:
    """List each child's stored pages it shares with its parent (`skip`: see parent_of; `done`:
    tasks whose pages the page worker compared already)."""
    mms = {m.pid: m for m in per_task["mm"] if isinstance(m, Mm)}
    maps = {m.pid: m for m in per_task["pagemap"] if isinstance(m, PageMap)}
    for pid, task in frozen.tasks.items():
        ppid = task.entry.ppid
        if pid in done or pid not in maps or pid not in mms or ppid not in mms:
            continue
        parent = parent_of(frozen, pid, skip)
        if parent is not None and task.acting is not None:
            maps[pid].inherited.extend(shared(task.acting.pid, parent, mms[pid], mms[ppid], list(maps[pid].runs)))


def shared(child: int, parent: int, cmm: Mm, pmm: Mm, runs: list[PageRun]) -> list[PageRun]:
    """The child's stored pages that are the parent's at the same address, as runs."""
    twins = {(v.start, v.end): v for v in pmm.vmas}
    starts = [v.start for v in cmm.vmas]
    out: list[PageRun] = []
    cfd = os.open(f"/proc/{child}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pfd = os.open(f"/proc/{parent}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            alike: dict[int, bool] = {}  # area index -> it has a twin
            for r in runs:
                k = bisect.bisect_right(starts, r.vaddr) - 1
                if k not in alike:
                    alike[k] = _twin(cmm.vmas[k], twins) is not None
                if not alike[k]:
                    continue
                # Within the stored run (one area): never across runs, as the restore checks.
                out += [PageRun(vaddr=r.vaddr + first * PAGE, nr_pages=n)
                        for first, n in _same_pages(cfd, pfd, r.vaddr, r.nr_pages)]
        finally:
            os.close(pfd)
    finally:
        os.close(cfd)
    return out


def _same_pages(cfd: int, pfd: int, vaddr: int, n: int) -> Iterator[tuple[int, int]]:
    """(first page, count) of the runs of pages present in both at the same physical page."""
    a, b = array("Q"), array("Q")
    a.frombytes(os.pread(cfd, n * 8, vaddr // PAGE * 8))
    b.frombytes(os.pread(pfd, n * 8, vaddr // PAGE * 8))
    if len(a) != n or len(b) != n:
        return
    i = 0
    while i < n:
        j = i
        while j < n and a[j] & PM_PRESENT and b[j] & PM_PRESENT and a[j] & PM_PFN and not (a[j] ^ b[j]) & PM_PFN:
            j += 1
        if j > i:
            yield i, j - i
        i = j + 1


# --- restore ---------------------------------------------------------------------------------

def check(path: str, pid: int, cmm: Mm, runs: list[PageRun], inherited: list[PageRun], pmm: Mm | None) -> None:
    """Inherited pages lie within the stored ones, in areas the parent has alike (ImageError)."""
    if not inherited:
        return
    if pmm is None:
        raise images.ImageError(path, 0, f"task {pid}: pages shared with a parent that has no memory in the checkpoint")
    twins = {(v.start, v.end): v for v in pmm.vmas}
    stored = sorted((r.vaddr, r.vaddr + r.nr_pages * PAGE) for r in runs)
    starts = [v.start for v in cmm.vmas]
    alike: dict[int, bool] = {}  # area index -> it has a twin
    for r in inherited:
        end = r.vaddr + r.nr_pages * PAGE
        i = bisect.bisect_right(stored, (r.vaddr, 1 << 64)) - 1
        k = bisect.bisect_right(starts, r.vaddr) - 1
        v = cmm.vmas[k] if k >= 0 else None
        if v is not None and k not in alike:
            alike[k] = _twin(v, twins) is not None
        if i < 0 or stored[i][1] < end or v is None or v.end < end or not alike[k]:
            raise images.ImageError(path, 0, f"task {pid}: inherited pages [{r.vaddr:#x}, {end:#x}) are not stored "
                                    "pages of an area its parent has alike")


def forked(table: Table, inherited: dict[int, list[PageRun]], busy: set[int], bare: set[int]) -> dict[int, int]:
    """The tasks their rebuilt parent forks, each with its parent: live tasks with inherited
    pages whose children are all forked too (the plan's tasks exist before any is rebuilt: none
    can be the child of a forked one), whose session and group can be made from their parent's
    when they are forked (their own, their parent's, or one a task made before them is in),
    and whose group or session no task but their forked descendants is in. `busy`: tasks of
    vfork pairs and tasks others need before their parent is rebuilt (a pidfd's); `bare`: tasks
    that cannot fork (a main thread that exited alone)."""
    rows = table.rows
    kids: dict[int, list[int]] = {}
    users: dict[int, set[int]] = {}  # group or session id -> the other tasks in it
    members: dict[tuple[int, int], set[int]] = {}  # (group, session) -> its tasks
    for p, r in rows.items():
        kids.setdefault(r.ppid, []).append(p)
        for n in (r.pgid, r.sid):
            if n != p:
                users.setdefault(n, set()).add(p)
        members.setdefault((r.pgid, r.sid), set()).add(p)

    def alone(x: int) -> bool:
        row = rows.get(x)
        parent = rows.get(row.ppid) if row is not None else None
        return (row is not None and parent is not None and bool(inherited.get(x)) and not row.zombie
                and not parent.zombie and x not in busy and row.ppid not in busy and row.ppid not in bare
                and not row.files_of_parent and not parent.files_of_parent  # (a table another fills later)
                and not row.ns_flags and len(row.nspids) == len(parent.nspids))

    def above(x: int, y: int) -> bool:
        """Whether x is an ancestor of y."""
        while y in rows:
            y = rows[y].ppid
            if y == x:
                return True
        return False

    def fits(x: int, made: set[int]) -> bool:
        row, parent = rows[x], rows[rows[x].ppid]
        if any(k not in made for k in kids.get(x, ())):
            return False
        if any(u not in made or not above(x, u) for u in users.get(x, ())):
            return False
        if row.sid not in (x, parent.sid):
            return False
        if row.pgid in (x, parent.pgid):
            return True
        if row.pgid in made:  # led by a forked task: one forked before it
            return above(row.pgid, x)
        return any(m not in made for m in members[(row.pgid, row.sid)] - {x})  # a task of the plan is in it

    made = {x for x in inherited if alone(x)}
    while True:
        out = {x for x in made if not fits(x, made)}
        if not out:
            return {x: rows[x].ppid for x in sorted(made)}
        made -= out


def inherit(child: Mm, runs: list[PageRun], inherited: list[PageRun], parent: Mm, parent_runs: list[PageRun]) -> Inherit:
    """What the forked child keeps of its parent's rebuilt memory, and what it drops."""
    twins = {(v.start, v.end): v for v in parent.vmas}
    starts = [v.start for v in child.vmas]
    holding = {child.vmas[bisect.bisect_right(starts, r.vaddr) - 1].start for r in inherited}  # (check() placed them)
    # Areas of a file too: their pages are mostly the page cache's, so keeping them saves
    # mapping them again for little writing. Anonymous ones without shared pages are mapped
    # anew: their pages, written over a kept area, would each be copied first.
    kept = [v for v in child.vmas if (v.start in holding or v.path.startswith("/")) and _twin(v, twins)]
    return Inherit(kept, list(inherited), _dropped(kept, runs, parent_runs))


def _dropped(kept: list[Vma], runs: list[PageRun], parent_runs: list[PageRun]) -> list[tuple[int, int]]:
    """(start, size) of the parent's stored pages in kept areas where the child had none."""
    mine = sorted((r.vaddr, r.vaddr + r.nr_pages * PAGE) for r in runs)
    areas = sorted((v.start, v.end) for v in kept)
    out: list[tuple[int, int]] = []
    for r in parent_runs:  # a run lies in one area of the parent: the same bounds as a kept one, or none
        i = bisect.bisect_right(areas, (r.vaddr, 1 << 64)) - 1
        if i < 0 or r.vaddr >= areas[i][1]:
            continue
        out += [(a, b - a) for a, b in _minus(r.vaddr, r.vaddr + r.nr_pages * PAGE, mine)]
    return out


def _minus(s: int, e: int, ranges: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """[s, e) without the sorted, disjoint ranges."""
    at = s
    for a, b in ranges[max(bisect.bisect_right(ranges, (s, 1 << 64)) - 1, 0):]:
        if a >= e:
            break
        if b <= at:
            continue
        if a > at:
            yield at, min(a, e)
        at = max(at, b)
    if at < e:
        yield at, e


def fork(t: Tracee, lay: Layout, nspids: tuple[int, ...], pid: int) -> Tracee:
    """The parent t (memory rebuilt, nothing else yet) forks the child with its pids, traced
    from birth; the child dies with its parent until its own death signal is restored."""
    threads.put_clone_args(t, lay, 0, signal.SIGCHLD, nspids or (pid,))
    t.trace_clones()
    t.call(f"clone3 (fork of task {pid})", lib.SYS_clone3, lay.scratch, threads.CLONE_ARGS.size)
    c = Tracee(t.spawned.pop(), adopted=True)  # as we see it (clone3 answers in its pid namespace)
    c.moved_syscall(t.syscall_address())  # its vDSO is where its parent's is
    try:
        c.call("prctl(PR_SET_PDEATHSIG)", lib.SYS_prctl, PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except BaseException:
        c.kill()
        raise
    return c


def describe(made: dict[int, int]) -> str:
    """What `ckpt plan` adds after the plan: who forks which child."""
    return "\n".join(f"task {parent}: memory rebuilt, then fork {child} (pages shared copy-on-write)"
                     for child, parent in sorted(made.items()))


def planned(table: Table, made: dict[int, int]) -> Table:
    """The table a planner plans: without the tasks their parents fork."""
    return Table({p: r for p, r in table.rows.items() if p not in made}, table.outer_sid, table.outer_pgid)
