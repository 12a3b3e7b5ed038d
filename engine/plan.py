"""Restore plans: the process table a checkpoint holds, and the operations that rebuild it.

A plan is data. Each actor (a task of the table, or a helper that exists only during the
restore) runs its own list of operations in order; the restorer itself is actor 0, which
only forks the roots. The native executor runs a plan for real (`native` `ckpt_plan_run`);
`engine.validate` simulates it with the kernel's rules and proves the resulting table
equals the dumped one before any process is made.

Semantics (each mirrors the kernel; a step that the kernel would refuse is an error):

- `Fork(pid, clone_parent)` by actor A: a new task `pid` (every level of its pid given by
  the table, or any free pid for a helper with a negative key), in the new namespaces its
  row's `ns_flags` name (a pid namespace's init has one more pid level, the innermost 1). Its parent is A, or A's
  parent with CLONE_PARENT (refused for actor 0 and for a pid namespace's init). It starts
  in A's process group and session, not a subreaper, and runs its own operation list. A
  row with `files_of_parent` is forked with CLONE_FILES: it shares A's fd table, and A must
  be its parent at the end.
  The pid must be free: not used by any task, zombie, process group or session.
- `Setsid()`: refused if any task or zombie has the caller's pid as its process group
  (the caller included). Then sid = pgid = pid.
- `Setpgid(pgid)`: setpgid(0, pgid). Refused for a session leader. pgid == own pid makes a
  group; otherwise a task or zombie of the caller's session must have that pgid.
- `Subreaper(on)`: PR_SET_CHILD_SUBREAPER.
- `Wait(pid, step)`: block until actor `pid` has completed `step` of its operations.
- `Exit(status)`: the actor becomes a zombie with this wait status (an exit code << 8, or
  a signal number). Its children (live or zombie) go to the nearest live ancestor that is
  a subreaper, walking up from its parent; actor 0 is always a subreaper (the restorer
  sets the flag on itself while a plan runs). Must be the actor's last operation.
- `Reap(pid)`: waitpid on a zombie child; it disappears (its pid becomes free).
A live task ends its list parked: stopped with every signal blocked, to be rebuilt by the
restorer. Helpers must end reaped. Tasks are matched by pid; actor 0 is `RESTORER`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import CkptError

RESTORER = 0  # the process running the restore: parent of every root
NEW_INIT = -(1 << 30)  # with a new pid namespace: its init, which does the restorer's part


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task of a checkpoint's process table, as the plan must leave it."""

    pid: int
    ppid: int  # RESTORER for a root
    pgid: int
    sid: int
    zombie: bool = False
    status: int = 0  # a zombie's wait status
    subreaper: bool = False
    stopped: int = 0  # the signal that stopped it (group stop), 0 when not stopped
    nspids: tuple[int, ...] = ()  # pid at every level, outermost first ((pid,) when empty)
    threads: int = 1
    sigmasks: tuple[int, int, int] = (0, 0, 0)  # a zombie's blocked, ignored, caught signals
    comm: str = ""  # a zombie's name
    ns_flags: int = 0  # CLONE_NEW* namespaces its fork makes (CLONE_NEWPID for an init)
    nspgids: tuple[int, ...] = ()  # its group and session at every level, outermost first
    nssids: tuple[int, ...] = ()  # (0 where their leader is not visible)
    files_of_parent: bool = False  # shares its parent's fd table: forked by it with CLONE_FILES


@dataclass(frozen=True, slots=True)
class Table:
    """The dumped tasks, and the session and group the restorer stands for (the dumped
    roots' parents': a root in them inherits the restorer's own at restore)."""

    rows: dict[int, TaskRow]
    outer_sid: int = 0
    outer_pgid: int = 0

    def roots(self) -> list[int]:
        """Tasks whose parent is the restorer, by pid."""
        return sorted(p for p, r in self.rows.items() if r.ppid == RESTORER)

    def levels(self, n: int) -> tuple[int, ...]:
        """A pid, group or session id at every pid namespace level it is visible in,
        outermost first: (n,) when no task of the table says more."""
        found = [r.nspids for r in self.rows.values() if r.pid == n]
        found += [r.nspgids for r in self.rows.values() if r.pgid == n and r.nspgids]
        found += [r.nssids for r in self.rows.values() if r.sid == n and r.nssids]
        best = max(found, key=len, default=(n,)) or (n,)
        return best[:best.index(0)] if 0 in best else best

    def children(self, pid: int) -> list[int]:
        """Children of a task (or of the restorer), by pid."""
        return sorted(p for p, r in self.rows.items() if r.ppid == pid)


@dataclass(frozen=True, slots=True)
class Fork:
    pid: int
    clone_parent: bool = False


@dataclass(frozen=True, slots=True)
class Setsid:
    pass


@dataclass(frozen=True, slots=True)
class Setpgid:
    pgid: int


@dataclass(frozen=True, slots=True)
class Subreaper:
    on: bool


@dataclass(frozen=True, slots=True)
class Wait:
    pid: int
    step: int


@dataclass(frozen=True, slots=True)
class Exit:
    status: int


@dataclass(frozen=True, slots=True)
class Reap:
    pid: int


Op = Fork | Setsid | Setpgid | Subreaper | Wait | Exit | Reap


@dataclass(slots=True)
class Plan:
    """Per actor (RESTORER, table pids, helper keys) its operations; helpers are the actors
    not in the table (negative keys get any free pid)."""

    ops: dict[int, list[Op]] = field(default_factory=dict)
    helpers: set[int] = field(default_factory=set)

    def who(self, actor: int) -> str:
        """An actor as messages name it."""
        if actor == NEW_INIT:
            return "the new pid namespace's init"
        return "the restorer" if actor == RESTORER else f"{'helper' if actor in self.helpers else 'task'} {actor}"

    def render(self) -> str:
        """One line per actor: its operations in order (what `ckpt plan` prints)."""
        return "\n".join(f"{self.who(actor)}: " + ", ".join(op_text(op) for op in self.ops[actor])
                         for actor in sorted(self.ops, key=lambda a: (a != RESTORER, a)))


def op_text(op: Op) -> str:
    match op:
        case Fork(pid, cp):
            return f"fork {pid}" + (" CLONE_PARENT" if cp else "")
        case Setsid():
            return "setsid"
        case Setpgid(g):
            return f"setpgid {g}"
        case Subreaper(on):
            return f"subreaper {'on' if on else 'off'}"
        case Wait(pid, step):
            return f"wait {pid}#{step}"
        case Exit(status):
            return f"exit {status >> 8}" if status & 0x7F == 0 else f"killed by signal {status & 0x7F}"
        case Reap(pid):
            return f"reap {pid}"
    raise TypeError(op)


class PlanError(CkptError):
    """A table no plan of this planner can build, or a plan that does not build its table."""
