"""The standard planner: a process table to a restore plan.

Layout first: who makes each task. A task is made by its parent when the parent is, at some
moment, in the session the task must start in (a session leader may fork before its setsid,
so its children stay in the session it was born in). Otherwise the task is an orphan of that
session, made inside it: with CLONE_PARENT by a child of its parent that is in the session,
else by a task of the session below its parent that dies anyway (a zombie, a helper), else by
a helper forked for that purpose; when that creator exits, the task goes to its parent, which
is then the nearest subreaper (temporarily one if the table says it is not). When no task of
the session stands below the parent, the session's leader is made there for a while, by a
helper of the parent; once the task is handed to the parent and the parent's time as a
subreaper is over, the helper exits and hands the leader on to its own parent, above. Sessions
and groups whose leader is gone get a helper with the leader's pid, which makes them and exits
once their members are in; its parent reaps it. A leader leaves its group once members are
in; where such leaders would wait for each other (two that swap groups), a helper forked by
one of them in its group keeps the group alive after it left, until the members are in.

Then order: each step (a fork, setsid, setpgid, subreaper change, exit, reap) waits for the
steps it needs, and for conditions on the simulated kernel (a group exists, an exit sends the
orphans where they belong). Steps are run on engine.validate's simulation in one sequence,
and that simulation names, for each step, the earlier steps of other actors it must follow:
those become the plan's Waits.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.plan import RESTORER, Exit, Fork, Op, Plan, PlanError, Reap, Setpgid, Setsid, Subreaper, Table, \
    op_text
from engine.validate import Refused, Run


@dataclass(eq=False)
class _Act:
    """Operations of one actor, run once deps are done and cond (a reason to wait, or None) allows."""

    actor: int
    ops: list[Op]
    deps: list[_Act] = field(default_factory=list)
    cond: Callable[[], str | None] | None = None
    skip: Callable[[], bool] | None = None  # nothing to do after all
    after: list[_Act] = field(default_factory=list)  # done, and known done by a Wait if need be
    done: bool = False
    event: tuple[int, int] | None = None  # its last operation, once run


def _cycle(graph: dict[int, list[int]]) -> list[int]:
    """The nodes of some cycle of a directed graph, or [] when it has none."""
    done: set[int] = set()

    def walk(n: int, path: list[int]) -> list[int]:
        """A cycle through path and n, or [] (n's descendants are then done)."""
        if n in path:
            return path[path.index(n):]
        if n not in done:
            for m in graph.get(n, []):
                if found := walk(m, path + [n]):
                    return found
            done.add(n)
        return []

    return next((c for n in sorted(graph) if (c := walk(n, []))), [])


class Standard:
    """Parents make their children; orphans are made in their session and handed down by exits."""

    name = "standard"

    def plan(self, table: Table) -> Plan:
        """The plan of the table, or PlanError saying what cannot be built and why."""
        return _Builder(table).build()


class _Builder:
    """One table's layout, steps and sequence."""

    def __init__(self, table: Table) -> None:
        self.t, self.rows = table, table.rows
        self.kids: dict[int, list[int]] = {}
        for pid, r in sorted(self.rows.items()):
            self.kids.setdefault(r.ppid, []).append(pid)
        self.creator: dict[int, int] = {}
        self.cp: set[int] = set()  # made with CLONE_PARENT
        self.pre: set[int] = set()  # forked by a session leader before its setsid
        self.session: dict[int, int] = {}  # a helper's session
        self.helpers: set[int] = set()
        self.target: dict[int, int] = {}  # an exiting creator: where its children must go
        self.passes: dict[int, list[int]] = {}  # ... and who must not be a subreaper then
        self.beta: dict[int, int | None] = {}  # the session a task must be born in (None: any)
        self.gsess: dict[int, int] = {}  # a group's session
        self.keeper: dict[int, int] = {}  # a group whose leader leaves it: the helper keeping it alive
        self.detour: dict[int, int] = {}  # a task made below another for a while: its helper creator
        self.late: dict[int, int] = {}  # an exit that must pass a temporary subreaper after its time
        self.run = Run(table, self.helpers)  # the simulation the steps are sequenced on

    # The final tree, helpers hung under their creators.

    def up(self, x: int) -> int:
        """Parent in the intended tree: a task's final parent, a helper's creator (and the
        creator of a task on a detour, which reaches its parent later)."""
        return self.rows[x].ppid if x in self.rows and x not in self.detour else self.creator[x]

    def ancestors(self, x: int) -> list[int]:
        """From the parent up to the restorer."""
        out = []
        while x != RESTORER:
            x = self.up(x)
            out.append(x)
        return out

    def below(self, x: int, top: int) -> bool:
        """x is top or in top's subtree."""
        return x == top or top in self.ancestors(x)

    def levels(self, x: int) -> int:
        """Pid namespace depth."""
        if x == RESTORER:
            return 1
        if x in self.rows:
            return len(self.rows[x].nspids) or 1
        return self.levels(self.creator[x])

    def ns(self, x: int) -> tuple[int, ...]:
        """The inits of x's pid namespaces."""
        if x == RESTORER:
            return ()
        up = self.ns(self.up(x))
        return up + (x,) if self.levels(x) > self.levels(self.up(x)) else up

    def offers(self, x: int) -> set[int]:
        """Sessions x can fork in: its own, and for a leader the one it was born in."""
        if x == RESTORER:
            return {self.t.outer_sid}
        if x in self.rows:
            return {s for s in (self.rows[x].sid, self.beta[x]) if s is not None}
        return {self.session[x]}

    def who(self, x: int) -> str:
        """An actor as messages name it."""
        return "the restorer" if x == RESTORER else ("task" if x in self.rows else "helper") + f" {x}"

    # Layout.

    def build(self) -> Plan:
        """Check, lay out, sequence."""
        self.check()
        order = sorted(self.rows, key=lambda x: (len(self.ancestors(x)), x))
        for x in reversed(order):
            self.beta[x] = self.birth(x)
        orphans = [x for x in order if not self.direct(x)]
        self.dead_leaders(orphans)
        for x in order:
            if x not in orphans:
                self.make(x, self.rows[x].ppid, cp=False)
        for x in orphans:
            self.orphan(x)
        self.keep_groups()
        self.acyclic()
        return self.sequence(self.steps())

    def check(self) -> None:
        """What no plan can build."""
        t, rows = self.t, self.rows
        for x, r in sorted(rows.items()):
            if r.ppid != RESTORER and r.ppid not in rows:
                raise PlanError(f"task {x} has parent {r.ppid}, which is not in the table")
        for x, r in sorted(rows.items()):
            if r.ppid in rows and rows[r.ppid].zombie:
                raise PlanError(f"task {x} has parent {r.ppid}, a zombie: a dead task has no children")
            seen = {x}
            p = r.ppid
            while p != RESTORER:
                if p in seen:
                    raise PlanError(f"task {x}'s parents make a cycle")
                seen.add(p)
                p = rows[p].ppid
            if x in (t.outer_sid, t.outer_pgid):
                raise PlanError(f"task {x} has the pid of the restorer's session or group, which is in use")
            if r.sid == x and r.pgid != x:
                raise PlanError(f"task {x} leads session {x} but is in group {r.pgid}: setsid makes it lead "
                                f"its own group, which a session leader can never leave")
            if r.sid in rows and rows[r.sid].sid != r.sid:
                raise PlanError(f"task {x} is in session {r.sid}, but task {r.sid} is in session "
                                f"{rows[r.sid].sid}: a session's leader never leaves it")
            if r.sid == t.outer_pgid and r.sid != t.outer_sid:
                raise PlanError(f"task {x} is in session {r.sid}, the restorer's group, not its session: "
                                f"no helper can have that pid")
            lp = self.levels(r.ppid)
            if not (len(r.nspids or (x,)) == lp or (len(r.nspids) == lp + 1 and r.nspids[-1] == 1)):
                raise PlanError(f"task {x} has {len(r.nspids or (x,))} pid levels and its parent {r.ppid} {lp}: "
                                f"a child is in its parent's pid namespace or is the init of a new one")
        for x, r in sorted(rows.items()):
            s = self.gsess.setdefault(r.pgid, r.sid)
            if s != r.sid:
                other = min(y for y in rows if rows[y].pgid == r.pgid)
                raise PlanError(f"group {r.pgid} has tasks in sessions {s} (task {other}) and {r.sid} "
                                f"(task {x}): a group lives in one session")
        for g, s in sorted(self.gsess.items()):
            if g == t.outer_pgid and s != t.outer_sid:
                raise PlanError(f"group {g} is the restorer's, but its tasks are in session {s}, "
                                f"not the restorer's {t.outer_sid}")
            if g in rows and rows[g].sid != s:
                raise PlanError(f"group {g} is in session {s}, but task {g}, the only one that could have "
                                f"made it, is in session {rows[g].sid}: it cannot leave a session while "
                                f"leading a group there")
            if g not in rows and g != t.outer_pgid and g != s and any(r.sid == g for r in rows.values()):
                raise PlanError(f"group {g} is in session {s}, but session {g} exists too: the leader of "
                                f"session {g} leads group {g} in it")
            if g == t.outer_sid and g != t.outer_pgid:
                raise PlanError(f"group {g} has the pid of the restorer's session, which is in use: "
                                f"no helper can lead it")

    def birth(self, x: int) -> int | None:
        """The session x must be born in (None: any)."""
        # Its own, unless it leads one: a leader may have to fork children before its setsid,
        # in a session made above it.
        r = self.rows[x]
        if r.sid != x:
            return r.sid
        need: Counter[int] = Counter()
        for k in self.kids.get(x, []):
            w = self.beta[k]
            if w is None or w == x:
                continue
            # A session made below x does not exist yet when x is born: x's children in it
            # are made there, not by x (a gone leader's helper then goes below x).
            if w == self.t.outer_sid or (not self.below(w, x) if w in self.rows else
                                         any(r.sid == w and not self.below(y, x) for y, r in self.rows.items())):
                need[w] += 1
        # Best the session its parent is in: then its parent can make it.
        home = self.t.outer_sid if r.ppid == RESTORER else self.rows[r.ppid].sid
        return max(need, key=lambda w: (w == home, need[w], -w)) if need else None

    def direct(self, x: int) -> bool:
        """x's parent can make it: it is in x's birth session at some moment."""
        w = self.beta[x]
        ok = w is None or w in self.offers(self.rows[x].ppid)
        if not ok and self.levels(x) > self.levels(self.rows[x].ppid):
            raise PlanError(f"task {x}, the init of a pid namespace, must start in session {w}, which its "
                            f"parent {self.rows[x].ppid} is never in")
        return ok

    def make(self, x: int, creator: int, cp: bool) -> None:
        """x is forked by creator, in the phase of creator that is in x's birth session."""
        self.creator[x] = creator
        if cp:
            self.cp.add(x)
        w = self.beta[x] if x in self.rows else None
        if w is not None and creator in self.rows and w != self.rows[creator].sid:
            self.pre.add(x)

    def dead_leaders(self, orphans: list[int]) -> None:
        """Helpers with the pids of gone session and group leaders, and where they are made."""
        t, rows = self.t, self.rows
        sessions = sorted({r.sid for r in rows.values()} - set(rows) - {t.outer_sid})
        for s in sessions:
            # Its helper goes under the deepest parent of its orphans, if they are on one line.
            ps = sorted({rows[x].ppid for x in orphans if self.beta[x] == s}, key=lambda p: len(self.ancestors(p)))
            for a, b in zip(ps, ps[1:]):
                if a != RESTORER and a not in self.ancestors(b):
                    xa = min(x for x in orphans if self.beta[x] == s and rows[x].ppid == a)
                    xb = min(x for x in orphans if self.beta[x] == s and rows[x].ppid == b)
                    raise PlanError(f"session {s} has no leader, and its tasks {xa} and {xb} have parents {a} "
                                    f"and {b} in different branches: the helper leading it would have to be "
                                    f"made under both")
            q = ps[-1] if ps else RESTORER
            self.helper(s, q, s)
        groups = sorted({r.pgid for r in rows.values()} - set(rows) - {t.outer_pgid} - set(sessions))
        for g in groups:
            s = self.gsess[g]
            self.helper(g, RESTORER if s == t.outer_sid else s, s)

    def helper(self, key: int, creator: int, session: int) -> None:
        """A helper of the table's sessions and groups (key > 0: its pid) or a creator (key < 0)."""
        if key > 0 and len(self.t.levels(key)) != self.levels(creator):
            raise PlanError(f"the leader {key} of a group or session is gone, and a helper with its pid "
                            f"cannot be made inside the pid namespace of {creator}: its number there is unknown")
        self.helpers.add(key)
        self.session[key] = session
        self.creator[key] = creator
        # A session helper makes its own session, so its creator's phase does not matter.
        if creator in self.rows and session not in (key, self.rows[creator].sid):
            self.pre.add(key)

    def chain(self, x: int, top: int) -> list[int]:
        """The intended ancestors of x strictly below top."""
        out = []
        x = self.up(x)
        while x != top:
            out.append(x)
            x = self.up(x)
        return out

    def made_by(self, k: int, x: int) -> bool:
        """x is among k's creators (making x make k would be a cycle)."""
        seen = set()
        while k in self.creator and k not in seen:
            seen.add(k)
            k = self.creator[k]
            if k == x:
                return True
        return False

    def orphan(self, x: int) -> None:
        """A creator in x's birth session for x, whose parent cannot be in it."""
        p, w = self.rows[x].ppid, self.beta[x]
        assert w is not None
        same_ns = self.ns(x)
        # CLONE_PARENT from a child of p in session w: x is p's child at once.
        # Only a child made where it ends (an exit that hands it down may wait for x).
        cands = [k for k in self.kids.get(p, []) if k != x and w in self.offers(k) and self.ns(k) == same_ns
                 and not (self.levels(k) > self.levels(p)) and (self.creator.get(k) == p or k in self.cp)
                 and not self.made_by(k, x)]
        if w in self.helpers and self.creator[w] == p:
            cands.insert(0, w)
        cands.sort(key=lambda k: (k != w, k in self.rows and w != self.rows[k].sid, k))
        if cands:
            self.make(x, cands[0], cp=True)
            return
        # Else an exit below p hands it down; a task of session w may first have to be made below p.
        if self.hand_over(x, p, w) or (self.take_below(x, p, w) and self.hand_over(x, p, w)):
            return
        raise PlanError(f"task {x} must start in session {w} and end as a child of {self.who(p)}, which is "
                        f"never in that session; no task of session {w} stands below {self.who(p)} (or can be "
                        f"made there for a while) to make it and hand it down")

    def hand_over(self, x: int, p: int, w: int) -> bool:
        """x made by a creator of session w below p, whose exit hands it to p; False if none."""
        rows, same_ns = self.rows, self.ns(x)
        # A creator that dies anyway.
        dying: list[int] = []
        if w in self.helpers and self.creator[w] != p and p in self.ancestors(w):
            dying.append(w)
        dying += [y for y in sorted(rows) if rows[y].zombie and w in self.offers(y) and self.ns(y) == same_ns
                  and p in self.ancestors(y) and not self.below(y, x)
                  and (self.creator.get(y) == rows[y].ppid or y in self.cp or y in self.detour)]
        dying = [y for y in dying if self.target.get(y, p) == p and not self.made_by(y, x)]
        dying.sort(key=lambda y: (len(self.chain(y, p)), y not in self.helpers, y))
        if dying:
            y = dying[0]
            self.make(x, y, cp=False)
            self.hand_down(y, p)
            return True
        # A helper forked for this by a live task of session w.
        lives = [y for y in sorted(rows) if not rows[y].zombie and w in self.offers(y) and self.ns(y) == same_ns
                 and p in self.ancestors(y) and not self.below(y, x) and not self.made_by(y, x)]
        if w in self.helpers and p in self.ancestors(w):
            lives.append(w)
        lives.sort(key=lambda y: (len(self.chain(y, p)), y))
        if not lives:
            return False
        y = lives[0]
        key = next((h for h in self.helpers if h < 0 and self.creator[h] == y and self.session[h] == w
                    and self.target.get(h) == p), None)
        if key is None:
            key = self.anonymous()
            self.helper(key, y, w)
            self.hand_down(key, p)
        self.make(x, key, cp=False)
        return True

    def take_below(self, x: int, p: int, w: int) -> bool:
        """Make the leader of session w below p for a while, to make x there; False if it cannot be."""
        # Only the leader can be born outside session w (its setsid makes it). A helper of p
        # makes it, and hands it on to its parent above p when the helper exits, after the exit
        # that hands x to p: p is a subreaper only in between, so p must not be one for good
        # (PR_SET_CHILD_SUBREAPER, prctl(2)).
        rows, y = self.rows, w
        if p == RESTORER or rows[p].subreaper or rows[p].zombie or y not in rows:
            return False
        q, above = rows[y].ppid, self.ancestors(p)
        # An exit planned to pass y counts on where y stands: y must stay there.
        passed = {t for chain in self.passes.values() for t in chain}
        if (q not in above or y in above or self.creator.get(y) != q or y in self.cp or y in passed
                or self.levels(y) != self.levels(p) or self.ns(q) != self.ns(p)
                or self.beta[y] not in (None, *self.offers(p)) or self.target.get(y, p) != p
                or self.below(y, x) or self.made_by(p, y)):
            return False
        key = self.anonymous()
        beta = self.beta[y]
        self.helper(key, p, rows[p].sid if beta is None else beta)
        self.hand_down(key, q)
        self.late[key] = p
        self.pre.discard(y)
        self.detour[y] = key
        self.make(y, key, cp=False)
        return True

    def anonymous(self) -> int:
        """A new key for a helper with any pid."""
        return -1 - sum(1 for h in self.helpers if h < 0)

    def hand_down(self, y: int, p: int) -> None:
        """y's children go to p when y exits."""
        self.target[y] = p
        self.passes[y] = [q for q in self.chain(y, p) if q in self.rows]

    def keep_groups(self) -> None:
        """Keepers for groups whose leader leaves them, where leaders would wait for each other."""
        # A leader leaves its group once a member that stays there is in; without one, once
        # all members are in, and those lead groups they leave too. When such leaders wait in a
        # cycle (two that swap groups), a helper forked by one leader in its group keeps that
        # group alive for the members to join after it left (setpgid needs a member there).
        rows = self.rows
        members: dict[int, list[int]] = {}
        for x in sorted(rows):
            if rows[x].pgid != x:
                members.setdefault(rows[x].pgid, []).append(x)
        waits = {g: ms for g, ms in members.items() if g in rows and rows[g].pgid != g
                 and all(m in members for m in ms)}
        while cycle := _cycle({g: [m for m in ms if m in waits] for g, ms in waits.items()}):
            g = min(cycle)
            del waits[g]
            self.keeper[g] = key = self.anonymous()
            self.helper(key, g, rows[g].sid)

    def acyclic(self) -> None:
        """Every creator can be made before what it makes."""
        for x in self.creator:
            if self.made_by(x, x):
                raise PlanError(f"{self.who(x)} would have to be made by a task it makes itself")

    # Steps.

    def steps(self) -> list[_Act]:
        """Every step, with what it waits for, in the order the sequence prefers."""
        rows = self.rows
        members: dict[int, list[int]] = {}
        for x in sorted(rows):
            if rows[x].pgid != x:
                members.setdefault(rows[x].pgid, []).append(x)
        made: dict[int, list[int]] = {}
        # Leaders' helpers first, so that their groups exist when members are made.
        for x, c in sorted(self.creator.items(), key=lambda i: (i[0] in self.rows, i[0] < 0, i[0])):
            made.setdefault(c, []).append(x)
        order, i = [RESTORER], 0
        while i < len(order):
            order += made.get(order[i], [])
            i += 1
        create = {x: _Act(self.creator[x], [Fork(x, x in self.cp)]) for x in order[1:]}
        setsid: dict[int, _Act] = {}
        own: dict[int, list[_Act]] = {x: [] for x in order}  # setup steps of each actor
        joins: dict[int, _Act] = {}
        mine: dict[int, _Act] = {}  # a task's setpgid into a group of its own
        temp = {p for p in self.target.values() if p != RESTORER and not rows[p].subreaper}
        exits: dict[int, _Act] = {}
        reaps: list[_Act] = []
        sr_off: dict[int, _Act] = {}
        for x in order[1:]:
            r = rows.get(x)
            if (r and r.sid == x) or (r is None and x == self.session[x]):
                setsid[x] = _Act(x, [Setsid()], [create[x]])
                own[x].append(setsid[x])
            elif (r is None and x > 0) or (r and (r.pgid == x or x in members)):
                mine[x] = _Act(x, [Setpgid(x)], [create[x]])  # a group of its own, or one it leaves
                own[x].append(mine[x])
            if r and r.pgid != x and r.sid != x:
                joins[x] = j = _Act(x, [Setpgid(r.pgid)], [create[x]] + own[x], self.group_exists(x, r.pgid),
                                    self.in_group(x, r.pgid))
                own[x].append(j)
            if r and not r.zombie and (r.subreaper or x in temp):
                on = _Act(x, [Subreaper(True)], [create[x]], self.passed(x, exits))
                own[x].append(on)
                if not r.subreaper:
                    sr_off[x] = _Act(x, [Subreaper(False)], [on])
            if r is None or r.zombie:
                ops: list[Op] = [Exit(r.status)] if r else [Exit(0)]
                if r and r.subreaper:
                    ops.insert(0, Subreaper(True))  # a dead task reaps nothing: set last
                exits[x] = _Act(x, ops, cond=self.hands_down(x))
            if r is None:
                reaps.append(_Act(self.creator[x], [Reap(x)], [exits[x]]))
        for x in order[1:]:
            c = self.creator[x]
            if c != RESTORER:
                create[x].deps.append(create[c])
            if c in setsid:
                (setsid[c].deps.append(create[x]) if x in self.pre else create[x].deps.append(setsid[c]))
            if x in self.cp:
                create[x].cond = self.parent_is(c, rows[x].ppid)
        for g, ms in members.items():
            if g in self.keeper:
                # Its keeper is born in the group, and keeps it alive once its leader leaves.
                create[self.keeper[g]].deps.append(mine[g])
                joins[g].deps.append(create[self.keeper[g]])
            elif g in rows and rows[g].pgid != g:
                # Its leader leaves once members that stay are in: they keep the group alive.
                stay = [joins[m] for m in ms if m in joins and m not in members]
                joins[g].deps += stay or [joins[m] for m in ms if m in joins]
        for s in sr_off.values():
            s.deps += [exits[y] for y, p in self.target.items() if p == s.actor]
        for y, p in self.late.items():
            exits[y].deps.append(sr_off[p])  # its children pass p once p's time as a subreaper is over
        acts: list[_Act] = []
        for x in order:
            acts += own[x]
            acts += [create[y] for y in made.get(x, [])]
        acts += sr_off.values()
        kept = {h: g for g, h in self.keeper.items()}
        for x in reversed(order):
            if x in exits:
                e = exits[x]
                e.deps += [a for a in acts + reaps if a.actor == x and a is not e]
                # Members join before the leader dies, and it knows (a zombie would do, but
                # the restore is easier to follow this way).
                e.after = [joins[m] for m in members.get(kept.get(x, x), []) if m in joins]
                e.deps += e.after
                acts.append(e)
        return acts + reaps

    def in_group(self, x: int, g: int) -> Callable[[], bool]:
        """x is in group g already (it was born there)."""
        return lambda: self.run.k.procs[self.run.pid_of[x]].pgid == g

    def group_exists(self, x: int, g: int) -> Callable[[], str | None]:
        """Wait until group g exists in x's session (setpgid needs a member there)."""
        def cond() -> str | None:
            k = self.run.k
            sid = k.procs[self.run.pid_of[x]].sid
            return None if any(p.pgid == g and p.sid == sid for p in k.procs.values()) else f"group {g} is not made yet"
        return cond

    def parent_is(self, c: int, p: int) -> Callable[[], str | None]:
        """Wait until c is a child of p (CLONE_PARENT makes a sibling of c)."""
        def cond() -> str | None:
            have = self.run.k.procs[self.run.pid_of[c]].ppid
            return None if have == p else f"{self.who(c)} is not a child of {self.who(p)} yet"
        return cond

    def passed(self, q: int, exits: dict[int, _Act]) -> Callable[[], str | None]:
        """A subreaper flag goes on once the exits whose orphans must pass q are done (but for
        those that come after q's time as a temporary subreaper)."""
        def cond() -> str | None:
            for y, chain in self.passes.items():
                if q in chain and not exits[y].done and self.late.get(y) != q:
                    return f"the children of {self.who(y)} must pass it first"
            return None
        return cond

    def hands_down(self, y: int) -> Callable[[], str | None]:
        """An exit waits until its children would go where they belong."""
        def cond() -> str | None:
            k, run = self.run.k, self.run
            me = run.pid_of[y]
            if not any(p.ppid == me for p in k.procs.values()):
                return None
            want = self.target.get(y)
            got = k.reaper(me)
            if want is not None and got == run.pid_of.get(want):
                return None
            return f"its children would go to {run.name(got)}, not {self.who(want) if want is not None else 'nowhere'}"
        return cond

    def sequence(self, acts: list[_Act]) -> Plan:
        """Run the steps on the simulation in a valid order; the Waits it asks for make the plan."""
        ops: dict[int, list[Op]] = {}
        pending = acts
        while pending:
            progress = False
            for a in pending:
                if a.done or any(not d.done for d in a.deps):
                    continue
                if a.skip and a.skip():
                    a.done = progress = True
                    continue
                if a.cond and a.cond():
                    continue
                out = ops.setdefault(a.actor, [])
                self.wait(out, a.actor, [d.event for d in a.after if d.event])
                for op in a.ops:
                    self.emit(out, a.actor, op)
                a.done = progress = True
                a.event = (a.actor, len(out))
            if not progress:
                first = sorted(pending, key=lambda a: any(not d.done for d in a.deps))[:3]
                raise PlanError("cannot order the restore: " + "; ".join(self.stuck(a) for a in first))
            pending = [a for a in pending if not a.done]
        return Plan(ops={a: o for a, o in ops.items() if o}, helpers=set(self.helpers))

    def emit(self, out: list[Op], actor: int, op: Op) -> None:
        """One operation, after the Waits that order it."""
        run = self.run
        try:
            acc, missing = run.perform(actor, op)
        except Refused as e:
            raise PlanError(f"the standard planner cannot build this table: {self.who(actor)} "
                            f"{op_text(op)} would be refused: {e}") from None
        self.wait(out, actor, [ev for ev, _ in missing])
        run.commit(actor, op, acc)
        out.append(op)

    def wait(self, out: list[Op], actor: int, events: list[tuple[int, int]]) -> None:
        """Waits for the events the actor does not know of, none implied by another."""
        run = self.run
        latest: dict[int, int] = {}
        for b, step in events:
            if not run.hb((b, step), actor):
                latest[b] = max(latest.get(b, 0), step)
        needed = sorted(latest.items())
        for ev in needed:
            if not any(other != ev and run.before(ev, other) for other in needed):
                run.wait(actor, *ev)
                out.append(run.done[actor][-1])

    def stuck(self, a: _Act) -> str:
        """Why a step cannot run."""
        what = f"{self.who(a.actor)} {', '.join(op_text(o) for o in a.ops)}"
        dep = next((d for d in a.deps if not d.done), None)
        if dep is not None:
            return f"{what} comes after {self.who(dep.actor)} {', '.join(op_text(o) for o in dep.ops)}"
        reason = a.cond() if a.cond else None
        return f"{what} waits: {reason}"
