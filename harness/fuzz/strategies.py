"""Hypothesis strategies for valid tree scripts, biased towards the shapes C/R engines get wrong."""
from __future__ import annotations

import random
from typing import Any, Callable

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from harness.fuzz.script import SIGNALS, Model, Op, Script, simulate

# Each draw picks a kind of operation, then its arguments among those the kernel takes. The
# order matters for shrinking (towards the first entry), the repeats are the weights: exits
# (zombies, orphans, dead leaders) and sessions and groups are what breaks restores.
_KINDS = ("fork",) * 4 + ("exit",) * 3 + ("setsid",) * 2 + ("setpgid",) * 2 + ("subreaper",) * 2 + \
    ("clone_parent",) * 2 + ("kill", "reap", "thread", "stop")


def _interesting_exit(m: Model, i: int) -> int:
    """How much an exit of task i is worth: one for being there, more for leading a group or a
    session (a dead leader) and for having children (orphans)."""
    t = m.tasks[i]
    kids = sum(1 for c in m.present() if c.parent == i)
    leads = sum(1 for c in m.present() if c.idx != i and (c.pgid == i or c.sid == i))
    return 1 + 2 * bool(kids) + 2 * bool(leads) + bool(t.subreaper)


def _candidates(m: Model, kind: str) -> list[Op]:
    """Every valid operation of that kind now, the interesting ones repeated."""
    ops: list[Op] = []
    for a in m.runnable():
        match kind:
            case "fork" | "clone_parent" | "thread" | "setsid" | "stop":
                ops.append(Op(kind, a))
            case "setpgid":
                ops += [Op(kind, a, b) for b in range(len(m.tasks))]
            case "subreaper":
                ops.append(Op(kind, a, int(not m.tasks[a].subreaper)))
            case "exit":
                ops += [Op(kind, a, (a * 7) % 256)] * _interesting_exit(m, a)
            case "kill":
                ops += [Op(kind, a, s) for s in SIGNALS]
            case "reap":
                ops += [Op(kind, a, c.idx) for c in m.tasks if c.parent == a and c.state == "Z"]
    return [op for op in ops if m.why_not(op) is None]


def build(pick: Callable[[list[Any]], Any], n: int) -> Script:
    """A script of up to n operations, each one chosen by pick among the valid ones."""
    m = Model()
    ops: list[Op] = []
    for _ in range(n):
        # Once per distinct kind (the weights repeat kinds); the same lists pick chooses from.
        cands = {k: _candidates(m, k) for k in dict.fromkeys(_KINDS)}
        kinds = [k for k in _KINDS if cands[k]]
        if not kinds:
            break
        op = pick(cands[pick(kinds)])
        m.apply(op)
        ops.append(op)
    return Script(tuple(ops))


@st.composite
def scripts(draw: DrawFn, max_ops: int = 12) -> Script:
    """A script of at most max_ops operations that the model (and so the kernel) accepts."""
    n = draw(st.integers(0, max_ops))
    return build(lambda xs: draw(st.sampled_from(xs)), n)


def random_script(rng: random.Random, max_ops: int = 12) -> Script:
    """The same scripts without hypothesis: thousands per second for planner experiments."""
    return build(rng.choice, rng.randint(0, max_ops))


def shape(script: Script) -> dict[str, int]:
    """What a script's tree has, for the distribution of shapes tried."""
    m = simulate(script)
    present = m.present()
    depth = 0
    for t in present:
        d, p = 0, t.parent
        while p >= 0:
            d, p = d + 1, m.tasks[p].parent
        depth = max(depth, d)
    return {
        "tasks": len(present),
        "depth": depth,
        "zombies": sum(t.state == "Z" for t in present),
        "stopped": sum(t.state == "T" for t in present),
        "threads": sum(t.threads - 1 for t in present if t.alive),
        "sessions": len({t.sid for t in present}),
        "groups": len({t.pgid for t in present}),
        "dead_leaders": len({g for t in present for g in (t.pgid, t.sid) if m.tasks[g].state in "ZX"}),
        "subreapers": sum(t.subreaper for t in present) - 1,
        "clone_parent": sum(t.clone_parent for t in present),
        "reparented": sum(1 for t in present if t.idx and t.parent != t.creator and not t.clone_parent),
    }
