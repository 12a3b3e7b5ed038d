"""Proof that every test checks something: each spec'd program PASSES with the `nocr` engine
and FAILS at `verify` with `restart` (state never built), in every flavor it declares. And
the `ckpt` engine's standing: every test passes with it or fails exactly as its spec declares,
with the reason it names.

The whole corpus runs once per engine through `zdtm run --all -j 2` (batched, both flavors);
each (test, flavor) is then one assertion here, so a program that checks nothing is named."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness import paths, spec

SPECS = spec.load_all([paths.SPECS])
CASES = [pytest.param(s.name, f, id=f"{s.name}-{f}") for s in SPECS for f in s.flavors if "noauto" not in s.flags]


def _run(tmp: Path, *args: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    r = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--all", "-j", "2",
                        "--report", str(tmp), *args], capture_output=True, text=True, timeout=1800)
    doc_path = tmp / "report.json"
    assert doc_path.exists(), f"no report from zdtm run {args}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    doc = json.loads(doc_path.read_text())
    return {(x["test"], x["flavor"], x["engine"]): x for x in doc["results"]}


@pytest.fixture(scope="session")
def corpus_results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The corpus run through both engines (one zdtm run each)."""
    out = _run(tmp_path_factory.mktemp("nocr"), "--engine", "nocr")
    out.update(_run(tmp_path_factory.mktemp("restart"), "--engine", "restart"))
    return out


# With --norst nothing is restored: an expected failure at restore or verify is not expected
# then, and the test must pass (a dump that disturbed the task it leaves running would show).
CKPT_RUNS = {"one cycle": (), "three cycles": ("--iters", "3"), "left running": ("--norst",)}


@pytest.fixture(scope="session")
def ckpt_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[tuple[str, str, str], dict[str, Any]]]:
    """The corpus through the ckpt engine, once per way of running it."""
    return {name: _run(tmp_path_factory.mktemp("ckpt"), "--engine", "ckpt", *args) for name, args in CKPT_RUNS.items()}


@pytest.mark.parametrize("run", list(CKPT_RUNS))
@pytest.mark.parametrize("test, flavor", CASES)
def test_ckpt_passes_or_fails_as_declared(ckpt_results: dict, run: str, test: str, flavor: str) -> None:
    r = _get(ckpt_results[run], test, flavor, "ckpt")
    declared = next(s for s in SPECS if s.name == test).expectation("ckpt", flavor, restored=run != "left running")
    if declared is None:
        assert r["verdict"] == "pass", f"{r['verdict']} at {r['step']}: {r['reason']}\n" + "\n".join(r["diff"]) + r["output"]
    else:
        # An expected failure is a debt with a reason: it must still fail (else drop the entry).
        assert r["verdict"] == "xfail", f"declared to fail ({declared.reason}) but got {r['verdict']}: {r['reason']}"


def _get(results: dict, test: str, flavor: str, engine: str) -> dict[str, Any]:
    r = results.get((test, flavor, engine))
    assert r is not None, f"{test} [{flavor}] was not run with {engine}"
    if r["verdict"] == "skip":
        pytest.skip(f"{engine}: {r['reason']}")
    return r


@pytest.mark.parametrize("test, flavor", CASES)
def test_passes_with_nocr(corpus_results: dict, test: str, flavor: str) -> None:
    r = _get(corpus_results, test, flavor, "nocr")
    assert r["verdict"] == "pass", f"{r['verdict']} at {r['step']}: {r['reason']}\n" + "\n".join(r["diff"]) + r["output"]


@pytest.mark.parametrize("test, flavor", CASES)
def test_fails_with_restart(corpus_results: dict, test: str, flavor: str) -> None:
    r = _get(corpus_results, test, flavor, "restart")
    assert (r["verdict"], r["step"]) == ("fail", "verify"), (
        f"{test} [{flavor}] must FAIL at verify when its state was never built; got {r['verdict']} "
        f"at {r['step']}: {r['reason']}")
    assert r["reason"], "a failure must say what differed"


def test_pytest_specs_gives_the_same_verdicts(corpus_results: dict, tmp_path: Path) -> None:
    """`pytest specs/ -n 2` runs the same items as `zdtm run --all -j 2`."""
    r = subprocess.run([sys.executable, "-m", "pytest", str(paths.SPECS), "-n", "2", "-q", "-p", "no:cacheprovider",
                        "--zdtm-engine=restart", f"--zdtm-report={tmp_path}"],
                       capture_output=True, text=True, timeout=1800, cwd=paths.ROOT)
    doc = json.loads((tmp_path / "report.json").read_text())
    mine = {(x["test"], x["flavor"]): (x["verdict"], x["step"]) for x in doc["results"]}
    theirs = {(t, f): (x["verdict"], x["step"]) for (t, f, e), x in corpus_results.items() if e == "restart"}
    assert mine == theirs, r.stdout[-2000:]


def test_every_expected_failure_names_its_step() -> None:
    """A debt says where it shows (dump, restore or verify), so --norst knows which apply."""
    missing = [f"{s.name} ({e.engine})" for s in SPECS for e in s.expect if not e.at]
    assert not missing, f"expectations without `at`: {missing}"


def test_corpus_size_and_feature_coverage() -> None:
    """The corpus issue's floor: 100 static, 12 transition, every feature covered."""
    kinds = [s.kind for s in SPECS]
    assert kinds.count("static") >= 100 and kinds.count("transition") >= 12, (kinds.count("static"), kinds.count("transition"))
    uncovered = set(spec.load_features()) - {f for s in SPECS for f in s.features}
    assert not uncovered, f"features no test covers: {sorted(uncovered)}"
