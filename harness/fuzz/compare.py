"""Planner experiments: the same generated trees through several restore planners.

Each tree is planned and validated by every planner (no process is made). A tree a planner
cannot plan is classified by whether any plan exists: a tree made by a script always has one
(the script itself builds it), otherwise the brute-force planner decides for small trees
(`impossible` when its search is exhausted, `unknown` when a bound stops it). Optionally the
first trees also go through real C/R with each planner.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.plan import PlanError, Table
from engine.planners import Planner, load, make_plan
from engine.planners.brute import MAX_TASKS, Brute, NoPlan
from harness.fuzz.script import Script, simulate
from harness.fuzz.strategies import random_script, shape
from harness.fuzz.table import to_table


@dataclass(slots=True)
class PlannerStats:
    """One planner's counts over the trees."""

    name: str
    planned: int = 0
    impossible: int = 0  # no plan: none exists (the brute-force search was exhausted)
    too_weak: int = 0  # no plan, though one exists
    unknown: int = 0  # no plan, and whether one exists is not known (too big, or bound hit)
    helpers: int = 0  # helper tasks in its plans
    seconds: float = 0.0  # planning and validation
    slowest: float = 0.0
    real_pass: int = 0
    real_fail: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)  # trees it could not plan (a few)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def mutate(table: Table, rng: random.Random) -> Table:
    """The table with one task's parent, group or session changed to another id of the table:
    a near miss that may be impossible."""
    rows = dict(table.rows)
    pid = rng.choice(sorted(rows))
    ids = sorted({*rows, *(r.pgid for r in rows.values()), *(r.sid for r in rows.values())})
    what = rng.choice(("ppid", "pgid", "sid") if pid != min(rows) else ("pgid", "sid"))
    to = rng.choice([i for i in ids if i != pid] or ids)
    r = rows[pid]
    rows[pid] = replace(r, ppid=to) if what == "ppid" else replace(r, pgid=to) if what == "pgid" else replace(r, sid=to)
    return replace(table, rows=rows)


def _exists(table: Table, origin: str, brute: PlanError | None | bool) -> tuple[str, str]:
    """Whether any plan exists: possible / impossible / unknown, and why. brute is what the
    brute-force planner gave this table if it already ran (None: a plan; False: not run)."""
    if origin == "script":
        return "possible", "the script that made it builds it"
    if len(table.rows) > MAX_TASKS:
        return "unknown", f"more than {MAX_TASKS} tasks for the brute-force planner"
    if brute is False:
        try:
            make_plan(table, Brute())
            brute = None
        except PlanError as e:
            brute = e
    if brute is None:
        return "possible", "the brute-force planner found a plan"
    return ("impossible" if isinstance(brute, NoPlan) else "unknown"), str(brute)


def draw_table(table: Table) -> str:
    """A table as a text tree, roots first."""
    lines: list[str] = []

    def walk(pid: int, prefix: str, last: bool, top: bool) -> None:
        r = table.rows[pid]
        bits = [f"pgid {r.pgid}", f"sid {r.sid}"]
        if r.zombie:
            bits.append(f"zombie {'exit ' + str(r.status >> 8) if r.status & 0x7F == 0 else 'signal ' + str(r.status)}")
        if r.stopped:
            bits.append("stopped")
        if r.subreaper:
            bits.append("subreaper")
        if r.threads > 1:
            bits.append(f"{r.threads} threads")
        lines.append(("" if top else prefix + ("└─ " if last else "├─ ")) + f"{pid} ({', '.join(bits)})")
        kids = table.children(pid)
        for i, c in enumerate(kids):
            walk(c, "" if top else prefix + ("   " if last else "│  "), i == len(kids) - 1, False)

    for root in table.roots():
        walk(root, "", True, True)
    return "\n".join(lines)


def compare(names: list[str], trees: int, seed: int, max_ops: int = 12, mutate_share: float = 0.3,
            real: int = 0, outdir: Path | None = None) -> dict[str, Any]:
    """Run the comparison; the report document (JSON-ready)."""
    planners: list[Planner] = [load(n) for n in names]
    stats = {n: PlannerStats(n) for n in names}
    rng = random.Random(seed)
    shapes: Counter[str] = Counter()
    exists: Counter[str] = Counter()
    started = time.monotonic()
    reals: list[Script] = []
    for _ in range(trees):
        script = random_script(rng, max_ops)
        table, origin = to_table(simulate(script)), "script"
        if rng.random() < mutate_share:
            table, origin = mutate(table, rng), "mutated"
        elif len(reals) < real:
            reals.append(script)
        sh = shape(script)
        shapes[f"tasks={len(table.rows)}"] += 1
        for k in ("zombies", "stopped", "dead_leaders", "subreapers", "clone_parent", "reparented"):
            shapes[f"{k}>0"] += sh[k] > 0
        verdict: tuple[str, str] | None = None
        failed: list[tuple[PlannerStats, str]] = []
        brute: PlanError | None | bool = False  # the brute-force planner's answer, once it ran
        for planner in planners:
            s = stats[planner.name]
            t0 = time.perf_counter()
            try:
                plan = make_plan(table, planner)
                ok, why = True, ""
            except PlanError as e:
                ok, why = False, str(e)
                if isinstance(planner, Brute):
                    brute = e
            dt = time.perf_counter() - t0
            s.seconds += dt
            s.slowest = max(s.slowest, dt)
            if ok:
                s.planned += 1
                s.helpers += len(plan.helpers)
                if isinstance(planner, Brute):
                    brute = None
                continue
            failed.append((s, why))
        for s, why in failed:
            verdict = verdict or _exists(table, origin, brute)
            kind = {"possible": "too_weak", "impossible": "impossible", "unknown": "unknown"}[verdict[0]]
            setattr(s, kind, getattr(s, kind) + 1)
            if len(s.examples) < 5 or (kind == "too_weak" and len(s.examples) < 10):
                s.examples.append({"kind": kind, "why": why, "exists": verdict[1], "origin": origin,
                                   "tree": draw_table(table), "script": script.text() if origin == "script" else ""})
        if verdict:
            exists[verdict[0]] += 1
    planning = round(time.monotonic() - started, 3)
    if reals and outdir is not None:
        from harness.fuzz.run import Runner

        for name in names:
            runner = Runner("ckpt", "host", outdir / "real" / name, planner=name)
            for script in reals:
                out = runner.run(script)
                s = stats[name]
                if out.failed:
                    s.real_fail += 1
                    s.examples.append({"kind": "real", "why": out.summary(), "script": script.text(),
                                       "tree": draw_table(to_table(simulate(script)))})
                else:
                    s.real_pass += 1
    return {"kind": "planner comparison", "trees": trees, "seed": seed, "max_ops": max_ops,
            "mutated_share": mutate_share, "seconds": planning, "real_trees": len(reals),
            "existence_of_unplanned": dict(exists), "shapes": dict(sorted(shapes.items())),
            "planners": [stats[n].to_dict() for n in names]}
