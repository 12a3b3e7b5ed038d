"""Tree scripts: the operations the native tree builder runs, and a model of what they make.

A script is text, one operation per line (blank lines and `#` comments ignored). Tasks are
named by index: task 0 is the test's root, and each `fork` or `clone_parent` makes the next
index. The builder (`native/treebuild.c`) runs the lines in order, one at a time:

    fork A           A forks a child
    clone_parent A   A makes a child with CLONE_PARENT: a sibling of A (not for the root)
    thread A         A starts a thread that parks
    setsid A         setsid() in A
    setpgid A B      A joins the group whose id is B's pid (B == A: a group of its own)
    subreaper A V    PR_SET_CHILD_SUBREAPER V (the root is one from the start, and stays one)
    exit A CODE      A exits with CODE and stays a zombie until reaped (not the root)
    kill A SIG       A dies by SIG (not the root)
    reap A B         A reaps its dead child B
    stop A           A gets SIGSTOP and takes no further operation (not the root)

`simulate` applies the kernel's rules to a script and gives the table it makes, or says
which line the kernel (or the builder) would refuse and why. The kernel sends SIGHUP to
stopped tasks of process groups that an exit orphans; that is not modelled, so an exit after
a stop is refused here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

KINDS = {  # operation -> number of arguments after the task
    "fork": 0, "clone_parent": 0, "thread": 0, "setsid": 0, "setpgid": 1, "subreaper": 1,
    "exit": 1, "kill": 1, "reap": 1, "stop": 0,
}
SIGNALS = (1, 2, 9, 10, 12, 14, 15)  # deadly without a core dump
MAX_TASKS = 64
MAX_THREADS = 5  # the main one and four more
SIGSTOP = 19


class ScriptError(ValueError):
    """A line the builder or the kernel would refuse: where, and why."""

    def __init__(self, line: int, text: str, why: str) -> None:
        super().__init__(line, text, why)
        self.line, self.text, self.why = line, text, why

    def __str__(self) -> str:
        return f"line {self.line} ({self.text}): {self.why}" if self.line else self.why


@dataclass(frozen=True, slots=True)
class Op:
    """One line of a script."""

    kind: str
    task: int
    arg: int = 0

    def __str__(self) -> str:
        return f"{self.kind} {self.task}" + (f" {self.arg}" if KINDS[self.kind] else "")


@dataclass(frozen=True, slots=True)
class Script:
    """Operations in order."""

    ops: tuple[Op, ...] = ()

    def text(self) -> str:
        """The script file's contents."""
        return "".join(f"{op}\n" for op in self.ops)

    def __len__(self) -> int:
        return len(self.ops)


def parse(text: str) -> Script:
    """A script from its text; ScriptError names the first bad line."""
    ops = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        kind = words[0]
        if kind not in KINDS:
            raise ScriptError(n, line, f"unknown operation {kind!r}; expected one of {', '.join(KINDS)}")
        want = 1 + KINDS[kind]
        if len(words) - 1 != want or not all(re.fullmatch(r"\d+", w) for w in words[1:]):
            raise ScriptError(n, line, f"expected {kind} and {want} number(s)")
        nums = [int(w) for w in words[1:]]
        ops.append(Op(kind, nums[0], nums[1] if len(nums) > 1 else 0))
    return Script(tuple(ops))


@dataclass(slots=True)
class Task:
    """A task of the model; groups and sessions are named by the index of their leader."""

    idx: int
    parent: int  # -1: the root's parent, outside the tree
    pgid: int
    sid: int
    state: str = "R"  # R alive, T stopped, Z zombie, X reaped
    status: int = 0  # a dead task's wait status
    subreaper: bool = False
    threads: int = 1
    creator: int = -1
    clone_parent: bool = False

    @property
    def alive(self) -> bool:
        """Running or stopped: not dead."""
        return self.state in "RT"


@dataclass(slots=True)
class Model:
    """The tree a script prefix has made."""

    tasks: list[Task] = field(default_factory=lambda: [Task(0, -1, 0, 0, subreaper=True)])
    stopped_any: bool = False

    def copy(self) -> Model:
        """An independent copy."""
        return Model([replace(t) for t in self.tasks], self.stopped_any)

    def present(self) -> list[Task]:
        """Tasks still in /proc: alive or zombie."""
        return [t for t in self.tasks if t.state != "X"]

    def runnable(self) -> list[int]:
        """Tasks that can take an operation."""
        return [t.idx for t in self.tasks if t.state == "R"]

    def reaper(self, idx: int) -> int:
        """Where the children of idx go when it dies: the nearest live subreaper above it."""
        # Every task inherits has_child_subreaper from the root, so the walk always runs.
        r = self.tasks[idx].parent
        while r > 0 and not (self.tasks[r].subreaper and self.tasks[r].alive):
            r = self.tasks[r].parent
        return max(r, 0)

    def why_not(self, op: Op) -> str | None:
        """Why the builder or the kernel would refuse op now; None when it is fine."""
        n = len(self.tasks)
        if not 0 <= op.task < n:
            return f"no task {op.task} yet (tasks 0..{n - 1})"
        t = self.tasks[op.task]
        if t.state != "R":
            return f"task {op.task} is {'stopped' if t.state == 'T' else 'dead'}"
        if op.task == 0 and op.kind in ("clone_parent", "exit", "kill", "stop"):
            return f"the root cannot {op.kind.replace('_', ' ')}: the test's tree would lose it"
        match op.kind:
            case "fork" | "clone_parent":
                if n >= MAX_TASKS:
                    return f"at most {MAX_TASKS} tasks"
            case "thread":
                if t.threads >= MAX_THREADS:
                    return f"at most {MAX_THREADS - 1} threads per task"
            case "setsid":
                member = next((u.idx for u in self.present() if u.pgid == op.task), None)
                if member is not None:
                    return f"task {op.task} leads a process group (task {member} is in it): EPERM"
            case "setpgid":
                if not 0 <= op.arg < n:
                    return f"no task {op.arg}"
                if t.sid == op.task:
                    return f"task {op.task} leads a session: EPERM"
                if op.arg != op.task:
                    members = [u for u in self.present() if u.pgid == op.arg]
                    if not members:
                        return f"no task is in the group of task {op.arg}: EPERM"
                    if members[0].sid != t.sid:
                        return f"the group of task {op.arg} is in another session: EPERM"
            case "subreaper":
                if op.arg not in (0, 1):
                    return "expected 0 or 1"
                if op.task == 0 and not op.arg:
                    return "the root stays a subreaper (orphans would leave the test's tree)"
            case "exit" | "kill":
                if op.kind == "exit" and not 0 <= op.arg <= 255:
                    return "an exit code is 0..255"
                if op.kind == "kill" and op.arg not in SIGNALS:
                    return f"a signal of {SIGNALS}"
                if self.stopped_any:
                    return "an exit after a stop (SIGHUP to newly orphaned stopped groups is not modelled)"
            case "reap":
                if not 0 <= op.arg < n:
                    return f"no task {op.arg}"
                c = self.tasks[op.arg]
                if c.parent != op.task or c.state == "X":
                    return f"task {op.arg} is not a child of task {op.task}: ECHILD"
                if c.state != "Z":
                    return f"task {op.arg} has not died"
        return None

    def apply(self, op: Op) -> None:
        """Make the change op makes (call why_not first)."""
        t = self.tasks[op.task]
        match op.kind:
            case "fork" | "clone_parent":
                cp = op.kind == "clone_parent"
                self.tasks.append(Task(len(self.tasks), t.parent if cp else t.idx, t.pgid, t.sid,
                                       creator=t.idx, clone_parent=cp))
            case "thread":
                t.threads += 1
            case "setsid":
                t.sid = t.pgid = t.idx
            case "setpgid":
                t.pgid = op.arg
            case "subreaper":
                t.subreaper = bool(op.arg)
            case "exit" | "kill":
                r = self.reaper(t.idx)
                for c in self.tasks:
                    if c.parent == t.idx and c.state != "X":
                        c.parent = r
                t.state, t.threads = "Z", 1
                t.status = op.arg << 8 if op.kind == "exit" else op.arg
            case "reap":
                self.tasks[op.arg].state = "X"
            case "stop":
                t.state = "T"
                self.stopped_any = True


def simulate(script: Script) -> Model:
    """The tree a whole script makes; ScriptError at the first refused line."""
    m = Model()
    for n, op in enumerate(script.ops, 1):
        why = m.why_not(op)
        if why:
            raise ScriptError(n, str(op), why)
        m.apply(op)
    return m
