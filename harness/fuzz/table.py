"""Tables of a tree: the builder's report, the model's, and the engine's restore-plan input."""
from __future__ import annotations

import re
from dataclasses import dataclass

from engine.plan import RESTORER, Table, TaskRow
from harness.fuzz.script import SIGSTOP, Model

_LINE = re.compile(r"table task (\d+) pid (\d+) ppid (-?\d+) pgid (\d+) sid (\d+) state ([RTZX]) "
                   r"threads (\d+) subreaper ([01]) status (\d+)")
BASE = 100  # model task i has pid BASE + i in tables made from a model


@dataclass(frozen=True, slots=True)
class BuiltRow:
    """One line of the builder's table: what /proc and the task said right after the build."""

    idx: int
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    threads: int
    subreaper: bool
    status: int


def parse_built(text: str) -> list[BuiltRow]:
    """The table lines of a builder's output, by task index."""
    rows = []
    for m in _LINE.finditer(text):
        i, pid, ppid, pgid, sid, state, threads, sub, status = m.groups()
        rows.append(BuiltRow(int(i), int(pid), int(ppid), int(pgid), int(sid), state, int(threads), sub == "1",
                             int(status)))
    return sorted(rows, key=lambda r: r.idx)


def differences(model: Model, built: list[BuiltRow]) -> list[str]:
    """Where the builder's table and the model disagree (empty: the builder made the model's tree)."""
    if [r.idx for r in built] != [t.idx for t in model.tasks]:
        return [f"the builder reports tasks {[r.idx for r in built]}, the model has 0..{len(model.tasks) - 1}"]
    idx_of = {r.pid: r.idx for r in built}
    out = []
    for t, r in zip(model.tasks, built):
        def note(what: str, have: object, want: object) -> None:
            if have != want:
                out.append(f"task {t.idx} (pid {r.pid}): {what} {have}, the model says {want}")

        note("state", r.state, t.state)
        if t.state == "X":
            continue
        if t.idx:
            note("parent", idx_of.get(r.ppid, f"pid {r.ppid}"), t.parent)
        note("group", idx_of.get(r.pgid, f"pid {r.pgid}"), t.pgid)
        note("session", idx_of.get(r.sid, f"pid {r.sid}"), t.sid)
        note("subreaper", r.subreaper, t.subreaper)
        if t.alive:
            note("threads", r.threads, t.threads)
        else:
            note("wait status", r.status, t.status)
    return out


def to_table(model: Model) -> Table:
    """The model's tree as a restore planner sees it (task i has pid BASE + i; the root's parent
    is the restorer, which stands in a session and group of its own)."""
    def pid(i: int) -> int:
        return BASE + i

    rows = {}
    for t in model.present():
        rows[pid(t.idx)] = TaskRow(
            pid=pid(t.idx), ppid=RESTORER if t.idx == 0 else pid(t.parent), pgid=pid(t.pgid), sid=pid(t.sid),
            zombie=t.state == "Z", status=t.status, subreaper=t.subreaper,
            stopped=SIGSTOP if t.state == "T" else 0, threads=t.threads)
    return Table(rows, outer_sid=1, outer_pgid=1)
