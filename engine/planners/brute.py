"""The brute-force reference planner: a bounded search over sequences of operations.

It answers, for small tables, whether any plan exists. From the empty tree it tries every
operation every live actor can take, one at a time, on engine.validate's simulated kernel,
until the simulation holds exactly the table; states already seen are not explored again.
The moves it tries (each limited to what can lead to the table; the kernel's rules that make
the rest useless are noted):
- forks of each task not made yet by any live actor in the session the task ends in (a
  session is left only by setsid, to one's own), with or without CLONE_PARENT, when the task's
  parent is then the one the table says, or an actor that dies anyway (a zombie of the
  table, a helper: the task is handed on by that exit);
- helpers: one per group or session id the table uses without a task of that pid (made with
  that pid: it makes the session or group, then exits), and `anonymous` more with any pid
  (they only fork and exit); helpers are reaped by their parent;
- setsid by a task whose session is its own; setpgid of a task into the group it ends in,
  or into its own when the table has that group (others join it, the task leaves it);
- the subreaper flag, which only exits after it see: on while a child of the table is still to
  come to the task, off once none is, and its final value once no exit is left (or right
  before the task's own exit);
- the exit of a zombie of the table once its group, session and flag are final
  (a zombie keeps them).
The search goes best first (operations so far plus eight times the fields still wrong), so a plan
is found fast when there is one, not always the shortest; its actors run one after the other
(each step waits for the one before). Without a plan it raises `NoPlan` when the search was exhausted (no plan
exists with these moves) and `CutOff` when a bound stopped it.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterator

from engine.plan import RESTORER, Exit, Fork, Op, Plan, PlanError, Reap, Setpgid, Setsid, Subreaper, Table, \
    Wait
from engine.validate import Kernel, Refused

MAX_TASKS = 6
MAX_STATES = 5_000

Move = tuple[int, Op]  # (actor key, operation)
State = tuple[tuple[tuple[int, int, int, int, bool, int, bool], ...], frozenset[int]]


class NoPlan(PlanError):
    """The search was exhausted: no sequence of the moves it tries builds the table."""


class CutOff(PlanError):
    """A bound stopped the search before it found a plan or ran out of moves."""


class Brute:
    """Every sequence of useful operations, most promising first, until one builds the table."""

    name = "brute"

    def __init__(self, anonymous: int = 1, max_states: int = MAX_STATES) -> None:
        self.anonymous, self.max_states = anonymous, max_states

    def plan(self, table: Table) -> Plan:
        """A sequential plan, or NoPlan / CutOff. Fewer anonymous helpers are tried first:
        each one multiplies the states to search."""
        failures: list[PlanError] = []
        for n in range(self.anonymous + 1):
            try:
                return _Search(table, n, self.max_states).run()
            except (CutOff, NoPlan) as e:
                failures.append(e)
        # Exhausted with every number of helpers is a proof; a bound hit once is not.
        raise next((e for e in failures if isinstance(e, CutOff)), failures[-1])


class _Search:
    """One table's search."""

    def __init__(self, table: Table, anonymous: int, max_states: int) -> None:
        rows = table.rows
        if len(rows) > MAX_TASKS:
            raise CutOff(f"the brute-force planner takes at most {MAX_TASKS} tasks, the table has {len(rows)}")
        deep = [p for p, r in sorted(rows.items()) if len(r.nspids) > 1]
        if deep:
            raise CutOff(f"the brute-force planner handles one pid level; task {deep[0]} has {rows[deep[0]].nspids}")
        self.t, self.rows, self.max_states = table, rows, max_states
        self.sids = {r.sid for r in rows.values()}
        self.pgids = sorted({r.pgid for r in rows.values()})
        fixed = sorted((self.sids | set(self.pgids)) - set(rows) - {table.outer_sid, table.outer_pgid})
        top = max([*rows, *fixed, table.outer_sid, table.outer_pgid, 0]) + 1000
        self.pid_of = {RESTORER: RESTORER, **{p: p for p in [*rows, *fixed]},
                       **{-i: top + i for i in range(1, anonymous + 1)}}
        self.key_of = {pid: key for key, pid in self.pid_of.items()}
        self.helpers = set(fixed) | {-i for i in range(1, anonymous + 1)}
        self.goal = tuple(sorted((p, r.ppid, r.pgid, r.sid, r.zombie, r.status, r.subreaper)
                                 for p, r in rows.items()))

    def doomed(self, key: int) -> bool:
        """An actor that dies before the end: its children get handed on."""
        return key in self.helpers or (key in self.rows and self.rows[key].zombie)

    def state(self, k: Kernel, forked: frozenset[int]) -> State:
        """What identifies a search node."""
        procs = tuple(sorted((p.pid, p.ppid, p.pgid, p.sid, p.zombie, p.status, p.subreaper)
                             for p in k.procs.values() if p.pid != RESTORER))
        return procs, forked

    def final_sid(self, x: int) -> int | None:
        """The session x must be made in: None when x makes its own (or is a helper with any)."""
        if x in self.rows:
            sid = self.rows[x].sid
        elif x > 0 and x not in self.sids:
            sid = next(r.sid for r in self.rows.values() if r.pgid == x)  # leads a group of that session
        else:
            return None
        return None if sid == self.pid_of[x] else sid

    def pending_child(self, k: Kernel, key: int) -> bool:
        """Some task of the table must end as key's child and is not there yet."""
        pid = self.pid_of[key]
        return any(r.ppid == pid and (x not in k.procs or k.procs[x].ppid != pid) for x, r in self.rows.items())

    def exits_done(self, k: Kernel, forked: frozenset[int]) -> bool:
        """No actor is left to exit: the table's zombies are dead, the helpers made and dead."""
        for key in [*self.rows, *self.helpers]:
            pid = self.pid_of[key]
            if not self.doomed(key) or (key < 0 and key not in forked):
                continue
            if key not in forked or (pid in k.procs and not k.procs[pid].zombie):
                return False
        return True

    def moves(self, k: Kernel, forked: frozenset[int]) -> Iterator[Move]:
        """Every operation worth trying now (see the module's docstring)."""
        unmade = [x for x in self.rows if x not in forked]
        unmade += [h for h in sorted(self.helpers) if h > 0 and h not in forked]
        anon = [h for h in sorted(self.helpers, reverse=True) if h < 0 and h not in forked]
        unmade += anon[:1]  # anonymous helpers are alike: make them in one order
        for key in sorted(self.pid_of):
            pid = self.pid_of[key]
            p = k.procs.get(pid)
            if p is None or p.zombie or (key != RESTORER and key not in forked):
                continue
            for x in unmade:
                # A session is left only by setsid: x must be born in the one it ends in.
                sid = self.final_sid(x)
                if sid is not None and sid != p.sid:
                    continue
                want = self.rows[x].ppid if x in self.rows else None
                if want is None or want == pid or self.doomed(key):
                    yield key, Fork(x)
                if key != RESTORER and (want is None or want == p.ppid or self.doomed(self.key_of.get(p.ppid, 0))):
                    yield key, Fork(x, True)
            for c in k.procs.values():
                if c.ppid == pid and c.zombie and self.key_of.get(c.pid) in self.helpers:
                    yield key, Reap(self.key_of[c.pid])
            if key == RESTORER:
                continue
            row = self.rows.get(key)
            if p.sid != pid and (pid in self.sids if row is None else row.sid == pid):
                yield key, Setsid()
            if row is None:
                if key > 0 and pid in self.pgids and p.pgid != pid:
                    yield key, Setpgid(pid)
                yield key, Exit(0)
                continue
            if p.pgid != row.pgid:
                yield key, Setpgid(row.pgid)
            if p.pgid != pid != row.pgid and pid in self.pgids:
                yield key, Setpgid(pid)  # makes a group others join, then leaves it
            # The flag matters only to exits after it: it changes to collect a child, or to its
            # final value once no exit is left (or right before the task's own exit).
            pending = self.pending_child(k, key)
            final = p.subreaper != row.subreaper and (
                self.exits_done(k, forked) or (row.zombie and (p.pgid, p.sid) == (row.pgid, row.sid)))
            if final or (pending and not p.subreaper) or (p.subreaper and not row.subreaper and not pending):
                yield key, Subreaper(not p.subreaper)
            if row.zombie and (p.pgid, p.sid, p.subreaper) == (row.pgid, row.sid, row.subreaper):
                yield key, Exit(row.status)

    def apply(self, k: Kernel, key: int, op: Op) -> None:
        """Perform a move on the kernel (Refused when the kernel would refuse it)."""
        pid = self.pid_of[key]
        if isinstance(op, Fork):
            child = self.pid_of[op.pid]
            row = self.rows.get(op.pid)
            k.fork(pid, child, (child,), op.clone_parent, row is not None and row.files_of_parent)
        else:
            k.apply(pid, op, self.pid_of[op.pid] if isinstance(op, Reap) else 0)

    def distance(self, st: State) -> int:
        """How far a state looks from the table: fields that differ, tasks missing, helpers left."""
        have = {p[0]: p for p in st[0]}
        d = sum(1 for p in have if p not in self.rows)
        for want in self.goal:
            got = have.get(want[0])
            d += len(want) if got is None else sum(a != b for a, b in zip(want, got))
        return d

    def run(self) -> Plan:
        """Best first (operations so far plus eight times the distance left) until the goal, the end
        of the moves, or the bound: every reachable state is seen before saying no plan exists."""
        start = Kernel(self.t.outer_sid, self.t.outer_pgid, max(self.pid_of.values()) + 1)
        first = self.state(start, frozenset())
        back: dict[State, tuple[State, Move] | None] = {first: None}
        queue = [(0, 0, 0, start, frozenset[int](), first)]
        seq = 0
        while queue:
            _, depth, _, k, forked, here = heapq.heappop(queue)
            for key, op in self.moves(k, forked):
                nk = k.copy()
                try:
                    self.apply(nk, key, op)
                except Refused:
                    continue
                nf = forked | {op.pid} if isinstance(op, Fork) else forked
                st = self.state(nk, nf)
                if st in back:
                    continue
                back[st] = (here, (key, op))
                if st[0] == self.goal:
                    return self.plan_of(st, back)
                if len(back) > self.max_states:
                    raise CutOff(f"no plan among the first {self.max_states} states of the search "
                                 f"(bound reached; the table may still have one)")
                seq += 1
                heapq.heappush(queue, (depth + 1 + 8 * self.distance(st), depth + 1, seq, nk, nf, st))
        raise NoPlan(f"no plan exists: all {len(back)} reachable states of the search (forks, setsid, "
                     f"setpgid, subreaper, exits, {len(self.helpers)} helper(s)) miss the table")

    def plan_of(self, goal: State, back: dict[State, tuple[State, Move] | None]) -> Plan:
        """The moves that led to the goal, as a plan whose actors run one after the other."""
        moves: list[Move] = []
        node = back[goal]
        while node is not None:
            prev, move = node
            moves.append(move)
            node = back[prev]
        moves.reverse()
        plan = Plan()
        used = {key for key, op in moves} | {op.pid for _, op in moves if isinstance(op, Fork)}
        plan.helpers = {h for h in self.helpers if h in used}
        last: tuple[int, int] | None = None
        for key, op in moves:
            ops = plan.ops.setdefault(key, [])
            if last is not None and last[0] != key:
                ops.append(Wait(*last))
            ops.append(op)
            last = (key, len(ops))
        return plan
