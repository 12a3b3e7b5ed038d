"""Plan validation: simulate a restore plan with the kernel's rules and prove it rebuilds its table.

`Kernel` models what the plan's operations touch (pids, parents, groups, sessions, subreaper
flags, zombies, pid namespaces) as engine.plan's docstring defines it, and refuses what Linux
would refuse. `Run` drives it actor by actor and tracks happens-before with vector clocks:
program order, Fork (the child starts after it) and Wait. Every operation names the kernel
state it reads and writes (a task's parent, whether it lives, its subreaper flag, its group
and session); each read must be ordered after the last write to that state, and each write
after the last write and the reads since. A plan that passes cannot change its outcome with
the interleaving, since every operation then sees the same state in any schedule that
respects its Waits. `validate` runs two such schedules (lowest actor first, highest first)
and compares each final state with the table. The planners use `Run` too: in program order
it tells them which Waits an operation needs.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.plan import RESTORER, Exit, Fork, Op, Plan, PlanError, Reap, Setpgid, Setsid, Subreaper, Table, \
    Wait, op_text

Loc = tuple[str, int]  # (kind of state, pid): "parent", "alive", "subreaper", "group"
Event = tuple[int, int]  # (actor, step): the step-th operation of an actor, from 1


class Refused(Exception):
    """An operation the kernel would refuse; the caller names the actor and the step."""


@dataclass(slots=True)
class Proc:
    """A simulated task, live or zombie."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    nspids: tuple[int, ...]
    ns: tuple[int, ...]  # pids of the inits of its pid namespaces below the outermost
    zombie: bool = False
    status: int = 0
    subreaper: bool = False
    files: int = 0  # its fd table, named by the task that made it (CLONE_FILES shares the creator's)

    def clone(self) -> Proc:
        """An independent copy (much faster than dataclasses.replace)."""
        return Proc(self.pid, self.ppid, self.pgid, self.sid, self.nspids, self.ns, self.zombie, self.status,
                    self.subreaper, self.files)

    def is_init(self) -> bool:
        """The init of a pid namespace (its children reaper, immune to CLONE_PARENT)."""
        return bool(self.ns) and self.ns[-1] == self.pid


@dataclass(slots=True)
class Access:
    """What one operation reads and writes; a new group member needs any one witness."""

    reads: list[Loc] = field(default_factory=list)
    writes: list[Loc] = field(default_factory=list)
    witnesses: list[int] = field(default_factory=list)
    forked: int | None = None  # the actor key a Fork made


@dataclass(slots=True)
class _Witnessed:
    """A setpgid into an existing group, and the members that surely were in it then."""

    ev: Event
    members: set[int]
    sure: bool = False  # one of them left only after it, in every schedule


class Kernel:
    """Pids, parents, groups, sessions and zombies as the plan's operations change them."""

    def __init__(self, outer_sid: int, outer_pgid: int, floor: int) -> None:
        # The restorer stands in its own session and group, and is always a subreaper.
        self.procs: dict[int, Proc] = {RESTORER: Proc(RESTORER, -1, outer_pgid, outer_sid, (RESTORER,), (),
                                                      subreaper=True)}
        self.acc = Access()
        self._next = floor
        self._ns_tasks: dict[int, set[int]] = {}  # by namespace init: every task made inside

    def copy(self) -> Kernel:
        """An independent copy (search planners try operations on copies)."""
        k = Kernel.__new__(Kernel)
        k.procs = {pid: p.clone() for pid, p in self.procs.items()}
        k.acc, k._next = Access(), self._next
        k._ns_tasks = {init: set(pids) for init, pids in self._ns_tasks.items()}
        return k

    def fresh(self) -> int:
        """A pid no table task, group, session or earlier helper uses."""
        self._next += 1
        return self._next

    def _user(self, pid: int) -> str | None:
        # A pid stays allocated while a group or a session still uses it (kernel/pid.c).
        if pid in self.procs:
            return "a zombie" if self.procs[pid].zombie else "a task"
        for p in self.procs.values():
            if p.pgid == pid or p.sid == pid:
                owner = "the restorer" if p.pid == RESTORER else str(p.pid)
                return f"the {'group' if p.pgid == pid else 'session'} of {owner}"
        return None

    def fork(self, creator: int, pid: int | None, nspids: tuple[int, ...] | None, clone_parent: bool,
             clone_files: bool = False) -> Proc:
        """Make a task; pid None: a fresh pid at every level of its creator's namespaces."""
        c = self.procs[creator]
        if clone_parent and creator == RESTORER:
            raise Refused("CLONE_PARENT from the restorer, whose parent is outside the restore")
        if clone_parent and c.is_init():
            raise Refused(f"CLONE_PARENT from {creator}, the init of a pid namespace (EINVAL)")
        if pid is None:
            pid = self.fresh()
            nspids = (pid,) + tuple(self.fresh() for _ in c.nspids[1:])
        nspids = nspids or (pid,)
        if len(nspids) == len(c.nspids):
            ns = c.ns
        elif len(nspids) == len(c.nspids) + 1 and nspids[-1] == 1:
            ns = c.ns + (pid,)
        else:
            raise Refused(f"{pid} has {len(nspids)} pid levels ({nspids}), its creator {creator} "
                          f"{len(c.nspids)}: a child is in its creator's namespace or is the init of a new one")
        for init in c.ns:
            # A namespace whose init died takes no new task (alloc_pid: ENOMEM).
            self.acc.reads.append(("alive", init))
            if self.procs[init].zombie:
                raise Refused(f"the pid namespace of {init} is dying: its init exited")
        user = self._user(pid)
        if user:
            raise Refused(f"pid {pid} is in use ({user})")
        for level in range(1, len(nspids)):
            for p in self.procs.values():
                if len(p.nspids) > level and p.ns[:level] == ns[:level] and p.nspids[level] == nspids[level]:
                    raise Refused(f"pid {nspids[level]} of namespace {ns[level - 1]} is in use by {p.pid}")
        ppid = creator
        if clone_parent:
            self.acc.reads.append(("parent", creator))
            ppid = c.ppid
        self.procs[pid] = p = Proc(pid, ppid, c.pgid, c.sid, nspids, ns, files=c.files if clone_files else pid)
        for init in ns[:-1] if ns and ns[-1] == pid else ns:
            self._ns_tasks.setdefault(init, set()).add(pid)
        self.acc.writes += [("alive", pid), ("parent", pid), ("group", pid)]
        return p

    def setsid(self, pid: int) -> None:
        """setsid(): refused to a group leader (any task or zombie in the group of its pid)."""
        for p in self.procs.values():
            if p.pgid == pid:
                raise Refused(f"{pid} leads a process group ({p.pid} is in group {pid}): EPERM")
        p = self.procs[pid]
        p.sid = p.pgid = pid
        self.acc.writes.append(("group", pid))

    def setpgid(self, pid: int, pgid: int) -> None:
        """setpgid(0, pgid); pgid 0 is the caller's pid."""
        pgid = pgid or pid
        p = self.procs[pid]
        if p.sid == pid:
            raise Refused(f"{pid} leads session {pid}: a session leader cannot change its group (EPERM)")
        if pgid != pid:
            members = [q for q in self.procs.values() if q.pgid == pgid]
            if not members:
                raise Refused(f"no task or zombie is in group {pgid} (EPERM)")
            here = [q.pid for q in members if q.sid == p.sid]
            if not here:
                raise Refused(f"group {pgid} is in session {members[0].sid}, not in {pid}'s session {p.sid} (EPERM)")
            self.acc.witnesses = here
        p.pgid = pgid
        self.acc.writes.append(("group", pid))

    def subreaper(self, pid: int, on: bool) -> None:
        """PR_SET_CHILD_SUBREAPER."""
        self.procs[pid].subreaper = on
        self.acc.writes.append(("subreaper", pid))

    def reaper(self, pid: int, record: bool = False) -> int:
        """Where the children of pid go when it exits (kernel/exit.c find_new_reaper)."""
        # The nearest live subreaper above it, else its namespace's init (the restorer at top).
        p = self.procs[pid]
        child_reaper = p.ns[-1] if p.ns else RESTORER
        r = p.ppid
        if record:
            self.acc.reads.append(("parent", pid))
        while r != RESTORER and r != child_reaper:
            q = self.procs[r]
            if record:
                self.acc.reads += [("alive", r), ("subreaper", r)]
            if q.subreaper and not q.zombie:
                return r
            if record:
                self.acc.reads.append(("parent", r))
            r = q.ppid
        return r

    def exit(self, pid: int, status: int) -> None:
        """The task becomes a zombie; its children go to its reaper."""
        p = self.procs[pid]
        if p.is_init():
            # Every task the namespace ever had is gone, in any schedule (reaps ordered before).
            self.acc.reads += [("alive", q) for q in sorted(self._ns_tasks.get(pid, ()))]
            inside = [q.pid for q in self.procs.values() if pid in q.ns and q.pid != pid]
            if inside:
                raise Refused(f"{pid} is the init of a pid namespace that still has tasks ({inside[0]}...): "
                              f"its exit would kill them")
        kids = [q for q in self.procs.values() if q.ppid == pid]
        if kids:
            r = self.reaper(pid, record=True)
            for q in kids:
                q.ppid = r
                self.acc.writes.append(("parent", q.pid))
        p.zombie, p.status = True, status
        self.acc.writes.append(("alive", pid))

    def apply(self, pid: int, op: Op, target: int = 0) -> None:
        """Perform an operation other than Fork by task pid (target: the pid a Reap names)."""
        match op:
            case Setsid():
                self.setsid(pid)
            case Setpgid(pgid):
                self.setpgid(pid, pgid)
            case Subreaper(on):
                self.subreaper(pid, on)
            case Exit(status):
                self.exit(pid, status)
            case Reap():
                self.reap(pid, target)
            case _:
                raise TypeError(op)

    def reap(self, pid: int, child: int) -> None:
        """waitpid on a zombie child: it disappears."""
        q = self.procs.get(child)
        if q is None:
            raise Refused(f"{child} does not exist (ECHILD)")
        if q.ppid != pid:
            raise Refused(f"{child} is not a child of {pid} (its parent is {q.ppid}): ECHILD")
        if not q.zombie:
            raise Refused(f"{child} has not exited: its exit must come first (a Wait)")
        self.acc.reads += [("alive", child), ("parent", child)]
        del self.procs[child]
        self.acc.writes += [("alive", child), ("group", child)]


class Run:
    """A plan's actors on a Kernel, with their happens-before order (vector clocks)."""

    def __init__(self, table: Table, helpers: set[int]) -> None:
        self.table, self.helpers = table, helpers
        used = [table.outer_sid, table.outer_pgid, *helpers]
        for r in table.rows.values():
            used += [r.pid, r.pgid, r.sid, *r.nspids]
        self.k = Kernel(table.outer_sid, table.outer_pgid, max(used, default=0) + 1000)
        self.pid_of: dict[int, int] = {RESTORER: RESTORER}
        self.key_of: dict[int, int] = {RESTORER: RESTORER}
        self.done: dict[int, list[Op]] = {RESTORER: []}
        self.clock: dict[int, dict[int, int]] = {RESTORER: {}}
        self._snaps: dict[int, list[dict[int, int]]] = {RESTORER: []}
        self._seq: dict[Event, int] = {}
        self._write: dict[Loc, Event] = {}
        self._reads: dict[Loc, list[Event]] = {}
        self._witness: dict[int, list[_Witnessed]] = {}  # by member: joins it may have witnessed

    def who(self, actor: int) -> str:
        """An actor as messages name it."""
        if actor == RESTORER:
            return "the restorer"
        if actor in self.table.rows:
            return f"task {actor}"
        pid = self.pid_of.get(actor, actor)
        return f"helper {actor}" + (f" (pid {pid})" if pid != actor else "")

    def name(self, pid: int) -> str:
        """A simulated pid as messages name it."""
        return self.who(self.key_of.get(pid, pid))

    def step_text(self, ev: Event) -> str:
        """An event as messages name it: who, which step, what."""
        actor, step = ev
        return f"{self.who(actor)} step {step} ({op_text(self.done[actor][step - 1])})"

    def hb(self, ev: Event, actor: int) -> bool:
        """ev happens before the actor's next step."""
        return self.clock[actor].get(ev[0], 0) >= ev[1]

    def before(self, ev: Event, at: Event) -> bool:
        """ev happens before (or is) the event at."""
        return self._snaps[at[0]][at[1] - 1].get(ev[0], 0) >= ev[1]

    def perform(self, actor: int, op: Op) -> tuple[Access, list[tuple[Event, Loc]]]:
        """Apply an operation other than Wait: what it touched, and the unordered earlier events."""
        # Those are the earlier events touching the same state that nothing orders before it.
        k = self.k
        k.acc = Access()
        pid = self.pid_of[actor]
        if actor == RESTORER and not isinstance(op, (Fork, Reap)):
            raise Refused("the restorer only forks, waits and reaps")
        match op:
            case Fork(key, clone_parent):
                if key in self.pid_of:
                    raise Refused(f"{self.who(key)} was already forked")
                if key in self.table.rows:
                    row = self.table.rows[key]
                    child = k.fork(pid, key, row.nspids or (key,), clone_parent, row.files_of_parent)
                elif key in self.helpers and key > 0:
                    child = k.fork(pid, key, self.table.levels(key), clone_parent)
                elif key in self.helpers:
                    child = k.fork(pid, None, None, clone_parent)
                else:
                    raise Refused(f"{key} is neither a task of the table nor a helper")
                self.pid_of[key], self.key_of[child.pid] = child.pid, key
                k.acc.forked = key
            case Reap(key):
                if key not in self.pid_of:
                    raise Refused(f"{self.who(key)} was never forked")
                k.apply(pid, op, self.pid_of[key])
            case _:
                k.apply(pid, op)
        acc = k.acc
        missing: list[tuple[Event, Loc]] = []
        for loc in acc.reads:
            w = self._write.get(loc)
            if w and not self.hb(w, actor):
                missing.append((w, loc))
        for loc in acc.writes:
            for ev in [self._write.get(loc)] + self._reads.get(loc, []):
                if ev and not self.hb(ev, actor):
                    missing.append((ev, loc))
            for wr in self._witness.get(loc[1], []) if loc[0] == "group" else []:
                # A member leaves: fine if it was surely in at the read, or another one is.
                if not wr.sure and not self.hb(wr.ev, actor) and wr.members <= {loc[1]}:
                    missing.append((wr.ev, loc))
        if acc.witnesses:
            # The group must exist for this actor in any schedule: some member it knows is in
            # (knowing, once the Waits the rest needs are added).
            def known(m: int) -> bool:
                w = self._write.get(("group", m))
                return w is None or self.hb(w, actor) or any(self.before(w, ev) for ev, _ in missing)
            seen = [m for m in acc.witnesses if known(m)]
            if not seen:
                first = min(acc.witnesses, key=lambda m: self._seq[self._write[("group", m)]])
                missing.append((self._write[("group", first)], ("group", first)))
                seen = [first]
            acc.witnesses = seen
        return acc, missing

    def commit(self, actor: int, op: Op, acc: Access) -> None:
        """Record a performed operation as the actor's next step."""
        ev = self._tick(actor, op)
        for loc in acc.reads:
            self._reads.setdefault(loc, []).append(ev)
        for loc in acc.writes:
            self._write[loc] = ev
            self._reads[loc] = []
            if loc[0] == "group":
                for wr in self._witness.pop(loc[1], []):
                    wr.sure = wr.sure or self.hb(wr.ev, actor)
                    wr.members.discard(loc[1])
        if acc.witnesses:
            wr = _Witnessed(ev, set(acc.witnesses))
            for m in acc.witnesses:
                self._witness.setdefault(m, []).append(wr)
        if acc.forked is not None:
            self.clock[acc.forked] = dict(self.clock[actor])
            self.done[acc.forked], self._snaps[acc.forked] = [], []

    def wait(self, actor: int, target: int, step: int) -> None:
        """Wait(target, step), once the target has done that step."""
        for a, n in self._snaps[target][step - 1].items():
            if self.clock[actor].get(a, 0) < n:
                self.clock[actor][a] = n
        self._tick(actor, Wait(target, step))

    def _tick(self, actor: int, op: Op) -> Event:
        self.done[actor].append(op)
        ev = (actor, len(self.done[actor]))
        self.clock[actor][actor] = ev[1]
        self._snaps[actor].append(dict(self.clock[actor]))
        self._seq[ev] = len(self._seq)
        return ev

    def steps(self, actor: int) -> int:
        """Operations the actor has completed (0 before it is forked)."""
        return len(self.done.get(actor, ()))

    def describe(self, loc: Loc) -> str:
        """Kernel state as messages name it."""
        kind, pid = loc
        return {"parent": "the parent of", "alive": "the life of", "subreaper": "the subreaper flag of",
                "group": "the group and session of"}[kind] + " " + self.name(pid)


def _static(table: Table, plan: Plan) -> None:
    """What the plan's text alone shows wrong."""
    rows = table.rows
    for h in sorted(plan.helpers):
        if h in rows or h == RESTORER:
            raise PlanError(f"helper {h} has the pid of {'the restorer' if h == RESTORER else 'a task of the table'}")
    forks: dict[int, int] = {}
    for actor, ops in sorted(plan.ops.items()):
        if actor != RESTORER and actor not in rows and actor not in plan.helpers:
            raise PlanError(f"actor {actor} has operations but is neither the restorer, a task of the table "
                            f"nor a helper")
        who = plan.who(actor)
        for n, op in enumerate(ops, 1):
            where = f"{who} step {n} ({op_text(op)})"
            if actor == RESTORER and not isinstance(op, (Fork, Wait, Reap)):
                raise PlanError(f"{where}: the restorer only forks, waits and reaps")
            if isinstance(op, Exit) and n != len(ops):
                raise PlanError(f"{where}: exit must be the actor's last operation")
            if isinstance(op, Wait):
                if op.pid == actor:
                    raise PlanError(f"{where}: an actor cannot wait for itself")
                if op.pid != RESTORER and op.pid not in rows and op.pid not in plan.helpers:
                    raise PlanError(f"{where}: {op.pid} is not an actor of the plan")
                if not 1 <= op.step <= len(plan.ops.get(op.pid, [])):
                    raise PlanError(f"{where}: {op.pid} has {len(plan.ops.get(op.pid, []))} operations, "
                                    f"so its step {op.step} never completes")
            if isinstance(op, Fork):
                if op.pid in forks:
                    raise PlanError(f"{where}: {op.pid} is forked by both {forks[op.pid]} and {actor}")
                forks[op.pid] = actor
    for pid in sorted(rows):
        if pid not in forks:
            raise PlanError(f"task {pid} is never forked")
    for h in sorted(plan.helpers):
        if h not in forks:
            raise PlanError(f"helper {h} is never forked")


def _simulate(table: Table, plan: Plan, pick: Callable[[list[int]], int]) -> Run:
    """Run every actor to its end in the order pick chooses; refusals, races and deadlocks raise."""
    run = Run(table, plan.helpers)
    pos = {a: 0 for a in plan.ops}
    while True:
        ready = []
        for a in run.clock:
            ops = plan.ops.get(a, [])
            if pos.get(a, 0) < len(ops):
                op = ops[pos[a]]
                if not isinstance(op, Wait) or run.steps(op.pid) >= op.step:
                    ready.append(a)
        if not ready:
            break
        a = pick(ready)
        op = plan.ops[a][pos[a]]
        where = f"{run.who(a)} step {pos[a] + 1} ({op_text(op)})"
        if isinstance(op, Wait):
            run.wait(a, op.pid, op.step)
        else:
            try:
                acc, missing = run.perform(a, op)
            except Refused as e:
                raise PlanError(f"{where}: the kernel refuses: {e}") from None
            if missing:
                ev, loc = missing[0]
                raise PlanError(f"{where} and {run.step_text(ev)} both touch {run.describe(loc)}, and no Wait "
                                f"orders them: the outcome depends on which runs first")
            run.commit(a, op, acc)
        pos[a] += 1
    stuck = [a for a in sorted(plan.ops) if pos.get(a, 0) < len(plan.ops[a])]
    if stuck:
        why = []
        for a in stuck:
            if a not in run.clock:
                why.append(f"{run.who(a)} is never forked")
                continue
            w = plan.ops[a][pos[a]]
            assert isinstance(w, Wait)
            why.append(f"{run.who(a)} step {pos[a] + 1} waits for step {w.step} of {run.who(w.pid)}, "
                       f"which has done {run.steps(w.pid)}")
        raise PlanError("deadlock: " + "; ".join(why))
    return run


def _final(table: Table, run: Run) -> None:
    """The simulated end state is the table: its tasks, nothing more."""
    procs = run.k.procs
    for h in sorted(run.helpers):
        pid = run.pid_of.get(h)
        if pid in procs:
            p = procs[pid]
            state = "a zombie that its parent never reaps" if p.zombie else "alive"
            raise PlanError(f"{run.who(h)} is left {state} (parent {run.name(p.ppid)})")
    for pid, p in sorted(procs.items()):
        if pid != RESTORER and run.key_of.get(pid) not in table.rows:
            raise PlanError(f"{run.name(pid)} is left at the end, and the table has no such task")
    for pid, row in sorted(table.rows.items()):
        got = procs.get(pid)
        if got is None:
            raise PlanError(f"task {pid} is gone at the end (reaped)")
        checks: list[tuple[str, object, object]] = [
            ("parent", row.ppid, got.ppid), ("group", row.pgid, got.pgid), ("session", row.sid, got.sid),
            ("zombie", row.zombie, got.zombie), ("subreaper", row.subreaper, got.subreaper),
            ("pids", row.nspids or (pid,), got.nspids)]
        if row.zombie:
            checks.append(("wait status", row.status, got.status))
        else:
            parent = procs.get(got.ppid)
            shares = parent is not None and not parent.zombie and parent.files == got.files
            checks.append(("fd table shared with its parent", row.files_of_parent, shares))
        for what, want, have in checks:
            if want != have:
                raise PlanError(f"task {pid} ends with {what} {have}, expected {want}")


def validate(table: Table, plan: Plan) -> None:
    """Raise PlanError unless the plan rebuilds the table, whatever the interleaving of its actors."""
    _static(table, plan)
    for pick in (min, max):
        _final(table, _simulate(table, plan, pick))
