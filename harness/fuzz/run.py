"""One tree script through one engine for real: the builder makes the tree, the runner dumps,
restores, compares and collects the builder's own verdict."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import build, engines, paths
from harness.errors import UsageError
from harness.fuzz.script import Script, ScriptError, simulate
from harness.fuzz.table import BuiltRow, differences, parse_built
from harness.runner import Batch, RunOptions
from harness.spec import Spec
from harness.verdict import Verdict

BUILDER = "zdtm-treebuild"
SOURCE = paths.NATIVE / "treebuild.c"


def digest(script: Script) -> str:
    """A short stable name for a script."""
    return hashlib.sha256(script.text().encode()).hexdigest()[:12]


def features(script: Script) -> tuple[str, ...]:
    """The taxonomy's features a script's tree covers (of a script the model refuses: forks)."""
    try:
        m = simulate(script)
    except ScriptError:
        return ("tree.fork",)
    kinds = {op.kind for op in script.ops}
    out = ["tree.fork"]
    for kind, feat in (("thread", "tree.threads"), ("setsid", "tree.session"), ("setpgid", "tree.pgrp"),
                       ("subreaper", "tree.subreaper"), ("clone_parent", "tree.clone_parent"),
                       ("stop", "tree.stopped")):
        if kind in kinds:
            out.append(feat)
    present = m.present()
    if any(t.state == "Z" for t in present):
        out.append("tree.zombie")
    if any(m.tasks[t.sid].state in "ZX" for t in present):
        out.append("tree.dead_session_leader")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one real run of a script gave."""

    script: Script
    engine: str
    flavor: str
    verdict: Verdict
    step: str = ""
    reason: str = ""
    diff: tuple[str, ...] = ()
    output: str = ""
    built: tuple[BuiltRow, ...] = ()
    model: tuple[str, ...] = field(default=())  # where the builder's tree differs from the model's
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        """The engine lost the tree, or the builder did not make the model's tree."""
        return self.verdict is not Verdict.PASS or bool(self.model)

    def summary(self) -> str:
        """One line: what went wrong (empty when nothing did)."""
        if self.verdict is not Verdict.PASS:
            return f"{self.verdict.value} at {self.step or 'run'}: {self.reason}"
        if self.model:
            return f"the builder's tree differs from the model: {self.model[0]}"
        return ""


def make_spec(script: Script, script_file: Path, flavor: str, name: str) -> Spec:
    """A spec that runs the builder on a script file (what `zdtm run -t fuzz/NAME` loads)."""
    return Spec(name=f"fuzz/{name}", path=script_file, description=f"fuzzed tree script {name}",
                features=features(script), program=build.helper(BUILDER), source=SOURCE,
                options=(("script", str(script_file)),), flavors=(flavor,), timeout=10.0)


class Runner:
    """Runs scripts through an engine in a flavor; every run's files go below outdir."""

    def __init__(self, engine: str, flavor: str, outdir: Path, planner: str | None = None) -> None:
        self.engine = engines.load(engine)
        if planner is not None:
            if not hasattr(self.engine, "planner"):
                raise UsageError(f"--planner {planner}: engine '{engine}' has no restore planner to choose")
            from engine import planners

            planners.load(planner)  # an unknown name is a usage error now, not a failed restore later
            setattr(self.engine, "planner", planner)
        self.flavor, self.outdir = flavor, outdir
        self.runs = 0
        build.build([])

    def unavailable(self) -> str | None:
        """Why this engine cannot run here (None: it can)."""
        return self.engine.unavailable()

    def run(self, script: Script) -> Outcome:
        """Build the script's tree, C/R it, and judge."""
        self.runs += 1
        name = digest(script)
        sdir = self.outdir / "scripts"
        sdir.mkdir(parents=True, exist_ok=True)
        script_file = sdir / f"{name}.tree"
        script_file.write_text(script.text())
        spec = make_spec(script, script_file, self.flavor, name)
        t0 = time.monotonic()
        opts = RunOptions(outdir=self.outdir / "runs")
        [res] = Batch(f"fuzz-{self.runs}", [spec], self.flavor, self.engine, opts).run()
        log = opts.outdir / "logs" / self.engine.name / self.flavor / f"{spec.name}.out"
        text = log.read_text(errors="replace") if log.exists() else ""
        built = parse_built(text)
        try:
            model = differences(simulate(script), built) if res.verdict is not Verdict.BROKEN or built else []
        except ScriptError as e:  # the builder had to refuse it too
            model = [] if res.verdict is Verdict.BROKEN else [f"the builder took a script the model refuses: {e}"]
        return Outcome(script, self.engine.name, self.flavor, res.verdict, res.step, res.reason, res.diff,
                       res.output, tuple(built), tuple(model), round(time.monotonic() - t0, 3))
