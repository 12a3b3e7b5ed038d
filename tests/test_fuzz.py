"""Fuzzing process trees: the script model, the native builder against it, the property
through real engines, shrinking and saving, and the planner experiments."""
from __future__ import annotations

import json
import tempfile
import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.plan import Table, TaskRow
from engine.planners import make_plan
from engine.planners.brute import Brute, NoPlan
from harness import cli, spec
from harness.fuzz import driver
from harness.fuzz.run import Outcome, Runner
from harness.fuzz.script import Script, ScriptError, parse, simulate
from harness.fuzz.strategies import random_script, scripts
from harness.fuzz.table import to_table
from harness.verdict import Verdict

# Shapes that break restores: an orphan handed to a subreaper in the middle, a session whose
# leader died with members left, a zombie with children, CLONE_PARENT, threads, stops.
SHAPES = {
    "orphan_to_middle_subreaper": "fork 0\nsubreaper 1 1\nfork 1\nfork 2\nexit 2 5\n",
    "dead_session_leader": "fork 0\nsetsid 1\nfork 1\nsetpgid 2 2\nfork 2\nexit 1 3\n",
    "zombie_reaped_by_a_subreaper": "fork 0\nfork 1\nfork 2\nkill 1 9\nsubreaper 2 1\nfork 3\nfork 4\nexit 3 1\n"
                                    "reap 2 3\n",
    "clone_parent_threads_stop": "fork 0\nthread 1\nclone_parent 1\nthread 2\nthread 2\nstop 2\n",
}


def test_parse_round_trip_and_errors() -> None:
    text = "fork 0  # the first child\n\nsetpgid 1 1\nexit 1 7\n"
    s = parse(text)
    assert s.text() == "fork 0\nsetpgid 1 1\nexit 1 7\n"
    assert parse(s.text()) == s
    with pytest.raises(ScriptError, match=r"line 2 \(spawn 0\): unknown operation 'spawn'"):
        parse("fork 0\nspawn 0\n")
    with pytest.raises(ScriptError, match=r"line 1 \(setpgid 1\): expected setpgid and 2 number"):
        parse("setpgid 1\n")


@pytest.mark.parametrize("text, why", [
    ("setsid 0", "task 0 leads a process group"),
    ("fork 0\nsetsid 1\nsetpgid 1 0", "task 1 leads a session"),
    ("fork 0\nfork 0\nsetpgid 1 2", "no task is in the group of task 2"),
    ("fork 0\nsetsid 1\nfork 1\nsetpgid 2 0", "the group of task 0 is in another session"),
    ("fork 0\nexit 1 0\nfork 1", "task 1 is dead"),
    ("fork 0\nstop 1\nfork 0\nexit 2 0", "an exit after a stop"),
    ("fork 0\nfork 1\nreap 0 2", "task 2 is not a child of task 0"),
    ("clone_parent 0", "the root cannot clone parent"),
    ("subreaper 0 0", "the root stays a subreaper"),
])
def test_model_refuses_what_the_kernel_refuses(text: str, why: str) -> None:
    with pytest.raises(ScriptError, match=why):
        simulate(parse(text))


def test_model_reparents_to_the_nearest_live_subreaper() -> None:
    m = simulate(parse(SHAPES["orphan_to_middle_subreaper"]))
    assert [(t.idx, t.parent, t.state) for t in m.tasks] == [(0, -1, "R"), (1, 0, "R"), (2, 1, "Z"), (3, 1, "R")]


@settings(max_examples=300, deadline=None)
@given(scripts(20))
def test_generated_scripts_are_valid(script: Script) -> None:
    simulate(script)  # raises on a line the model refuses


@pytest.fixture(scope="module")
def nocr(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return Runner("nocr", "host", tmp_path_factory.mktemp("fuzz-nocr"))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builder_makes_the_models_tree(nocr: Runner, name: str) -> None:
    out = nocr.run(parse(SHAPES[name]))
    assert out.verdict is Verdict.PASS, out.summary() + "\n" + out.output
    assert out.built and not out.model, out.model


def test_builder_matches_the_model_on_random_scripts(nocr: Runner) -> None:
    rng = random.Random(7)
    for _ in range(6):
        script = random_script(rng, 16)
        out = nocr.run(script)
        assert not out.failed, f"{script.text()}\n{out.summary()}\n{out.output}"


def test_builder_checks_something(tmp_path: Path) -> None:
    out = Runner("restart", "host", tmp_path).run(parse(SHAPES["dead_session_leader"]))
    assert out.verdict is Verdict.FAIL and out.step == "verify"
    assert "no tree: the setup never ran" in out.reason


def test_builder_refuses_a_bad_line_and_builds_nothing(nocr: Runner) -> None:
    out = nocr.run(Script((parse("fork 0").ops[0], parse("fork 5").ops[0])))
    assert out.verdict is Verdict.BROKEN and out.step == "start"
    assert "line 2" in out.output and "task 5" in out.output


@pytest.mark.parametrize("flavor", ["host", "ns"])
def test_ckpt_keeps_the_hard_shapes(tmp_path: Path, flavor: str) -> None:
    runner = Runner("ckpt", flavor, tmp_path)
    for name in sorted(SHAPES):
        out = runner.run(parse(SHAPES[name]))
        assert not out.failed, f"{name}: {out.summary()}\n" + "\n".join(out.diff)


def test_fuzz_campaign_through_ckpt(tmp_path: Path) -> None:
    # A few examples in CI; ZDTM_FUZZ_EXAMPLES=2000 for a long campaign on demand.
    examples = os.environ.get("ZDTM_FUZZ_EXAMPLES", "8")
    rc = cli.main(["fuzz", "--engine", "ckpt", "--examples", examples, "--seed", "1", "--max-ops", "10",
                   "--report", str(tmp_path), "--db", str(tmp_path / "db")])
    doc = json.loads((tmp_path / "fuzz.json").read_text())
    assert rc == 0, doc["failure"]
    assert doc["examples"] >= int(examples) and doc["failed"] == 0
    assert sum(doc["shapes"]["tasks"].values()) == doc["examples"]
    assert (tmp_path / "fuzz.html").read_text().startswith("<!doctype html>")


class _Breaks:
    """An engine stand-in for the property: a tree with a zombie counts as broken (no process)."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, script: Script) -> Outcome:
        self.runs += 1
        broken = any(t.state == "Z" for t in simulate(script).present())
        return Outcome(script, "fake", "host", Verdict.FAIL if broken else Verdict.PASS,
                       "restore" if broken else "", "a zombie was lost" if broken else "")


def test_failures_shrink_and_become_corpus_tests(tmp_path: Path) -> None:
    runner = _Breaks()
    camp = driver.fuzz(runner, 60, seed=3, db=tmp_path / "db")  # type: ignore[arg-type]
    assert camp.failure is not None
    # The smallest tree with a zombie: one child that exits or is killed.
    assert [op.kind for op in camp.failure.script.ops][0] in ("fork", "clone_parent")
    assert len(camp.failure.script) == 2, camp.failure.script.text()
    path = driver.save(camp.failure, tmp_path / "specs", "test")
    [s] = spec.load_all([tmp_path / "specs"])
    assert s.name == f"fuzz/{path.stem}" and s.program.name == "zdtm-treebuild"
    assert s.expectation("fake", "host") is not None and "tree.zombie" in s.features
    assert parse(Path(dict(s.options)["script"]).read_text()) == camp.failure.script
    # The database replays the failure first: the next campaign fails on its first script.
    again = _Breaks()
    assert driver.fuzz(again, 60, seed=4, db=tmp_path / "db").failure is not None  # type: ignore[arg-type]


def _table(*rows: tuple[int, int, int, int]) -> Table:
    return Table({p: TaskRow(p, pp, g, s, subreaper=pp == 0) for p, pp, g, s in rows}, outer_sid=1, outer_pgid=1)


def test_both_planners_keep_a_swapped_group_alive_with_a_helper() -> None:
    # Two siblings, each in the other's group: a helper keeps one group alive meanwhile.
    t = _table((100, 0, 100, 100), (101, 100, 102, 100), (102, 100, 101, 100))
    assert make_plan(t, "standard").helpers
    assert make_plan(t, Brute()).helpers


def test_brute_force_proves_a_table_impossible() -> None:
    # A session leader in another task's group: setpgid is refused to session leaders.
    t = _table((100, 0, 100, 100), (101, 100, 100, 101))
    with pytest.raises(NoPlan, match="no plan exists"):
        make_plan(t, Brute())


def test_brute_force_plans_every_small_scripted_tree() -> None:
    rng = random.Random(11)
    for _ in range(40):
        t = to_table(simulate(random_script(rng, 8)))
        if len(t.rows) <= 5:
            make_plan(t, Brute())


def test_planner_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["fuzz", "--compare-planners", "standard,brute", "--trees", "150", "--seed", "2",
                   "--max-ops", "8", "--report", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "fuzz.json").read_text())
    std, brute = doc["planners"]
    for p in (std, brute):
        assert p["planned"] + p["impossible"] + p["too_weak"] + p["unknown"] == 150
    assert std["impossible"] == brute["impossible"] > 0  # mutated tables no planner can build
    assert "standard: planned" in capsys.readouterr().out


def test_fuzz_usage_errors_leave_no_report_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert cli.main(["fuzz", "--compare-planners", "standard,nosuch", "--trees", "1"]) == 2
    assert cli.main(["fuzz", "--planner", "nosuch", "--examples", "1"]) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["cross_groups", "handed_across_sessions"])
def test_standard_and_brute_planners_restore_the_corpus_trees_brute_found(tmp_path: Path, name: str) -> None:
    # Trees the brute-force planner once planned alone: the standard planner now does too.
    script = parse((Path(spec.paths.SPECS) / "fuzz" / f"{name}.tree").read_text())
    make_plan(to_table(simulate(script)), "standard")
    out = Runner("ckpt", "host", tmp_path / "std").run(script)
    assert not out.failed, out.summary()
    out = Runner("ckpt", "host", tmp_path / "brute", planner="brute").run(script)
    assert not out.failed, out.summary()
