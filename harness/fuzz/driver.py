"""`zdtm fuzz`: hypothesis generates tree scripts, each runs for real through an engine, and a
failing one is shrunk to the smallest script that still fails, then saved as a corpus test."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky

from harness.fuzz.run import Outcome, Runner, digest, features
from harness.fuzz.script import Script
from harness.fuzz.strategies import scripts
from harness.spec import STEPS


class TreeBroke(AssertionError):
    """The property failed for one script: what the engine got wrong."""


@dataclass(slots=True)
class Campaign:
    """Everything one fuzzing run tried, and the smallest failure it found."""

    outcomes: list[Outcome] = field(default_factory=list)
    failure: Outcome | None = None
    flaky: str = ""  # set when a failure did not fail again on replay

    @property
    def examples(self) -> int:
        """Scripts run (shrinking included)."""
        return len(self.outcomes)


def fuzz(runner: Runner, examples: int, seed: int | None = None, db: Path | None = None,
         max_ops: int = 12) -> Campaign:
    """Run the property on up to `examples` scripts; the failures of the database come first."""
    camp = Campaign()
    database = DirectoryBasedExampleDatabase(str(db)) if db else None
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]

    @settings(max_examples=examples, database=database, deadline=None, phases=phases, print_blob=False,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(scripts(max_ops))
    def prop(script: Script) -> None:
        out = runner.run(script)
        camp.outcomes.append(out)
        if out.failed:
            raise TreeBroke(out.summary())

    test = hseed(seed)(prop) if seed is not None else prop
    try:
        test()
    except TreeBroke:
        # Hypothesis replays the shrunk example last: that is the smallest failing script.
        camp.failure = next(o for o in reversed(camp.outcomes) if o.failed)
    except Flaky as e:
        camp.flaky = str(e).splitlines()[0]
        camp.failure = next((o for o in reversed(camp.outcomes) if o.failed), None)
    return camp


def save(out: Outcome, specs: Path, note: str) -> Path:
    """Write a failure as a corpus test (`fuzz/NAME`: a script file and its spec, with the
    engine's failure expected and its reason) below the spec directory specs; the spec's path."""
    name = digest(out.script)
    d = specs / "fuzz"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.tree").write_text(f"# shrunk by zdtm fuzz: {out.engine} in {out.flavor}: {out.summary()}\n"
                                    + out.script.text())
    doc = {
        "description": f"a fuzzed process tree ({len(out.script)} operations) that {out.engine} got wrong",
        "features": list(features(out.script)),
        "program": "treebuild",
        "options": {"script": f"{name}.tree"},
        "flavors": [out.flavor],
        "expect": {out.engine: {"fail": out.summary()[:300], "tracking": note,
                                **({"at": out.step} if out.step in STEPS else {})}},
    }
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
    return path
