"""The pytest plugin end to end (pytester): user spec dirs, batching over xdist, reports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness import build, paths, spec


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    specs = {s.name: s for s in spec.load_all([paths.SPECS])}
    wanted = [specs["static/env_umask"], specs["static/pipe_data"]]
    build.build([(s.source, s.program) for s in wanted if s.source])
    return {s.name.rsplit("/", 1)[1]: s.program for s in wanted}


@pytest.fixture
def user_specs(pytester: pytest.Pytester, binaries: dict[str, Path]) -> Path:
    """A user's own spec directory whose programs are prebuilt binaries given by path."""
    d = pytester.path / "mine" / "static"
    d.mkdir(parents=True)
    for n in range(3):
        for name, exe in binaries.items():
            (d / f"{name}_{n}.yaml").write_text(
                f"description: {name} copy {n}\nfeatures: [env.umask]\nprogram: {exe}\nflavors: [host]\n")
    (d / "later.yaml").write_text(
        f"description: not in --all\nfeatures: [env.umask]\nprogram: {binaries['env_umask']}\nflags: [noauto]\nflavors: [host]\n")
    return pytester.path / "mine"


def run(pytester: pytest.Pytester, specs: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(str(specs), f"--zdtm-specs={specs}", "-p", "no:cacheprovider",
                                         f"--zdtm-report={pytester.path / 'rep'}", "--zdtm-batch=4", *args,
                                         timeout=600)


def test_nocr_passes_across_two_workers(pytester: pytest.Pytester, user_specs: Path) -> None:
    r = run(pytester, user_specs, "-n", "2", "-v")
    r.assert_outcomes(passed=6)
    # Each batch is one dump: all its items on one worker (xdist's loadgroup; pytest 9.2 broke
    # it, pytest-xdist#1386, hence the pin in pyproject.toml).
    workers: dict[str, set[str]] = {}
    for m in re.finditer(r"\[(gw\d+)\].* PASSED \S+@(\S+)", r.stdout.str()):
        workers.setdefault(m.group(2), set()).add(m.group(1))
    assert sum(1 for _ in re.finditer(r" PASSED ", r.stdout.str())) == 6
    assert len(workers) == 2 and all(len(w) == 1 for w in workers.values()), (workers, r.stdout.str()[-2000:])
    doc = json.loads((pytester.path / "rep" / "report.json").read_text())
    assert {"kernel", "engine", "started", "results", "coverage"} <= set(doc)
    assert len(doc["results"]) == 6
    assert all({"test", "flavor", "engine", "verdict", "step", "reason", "features", "seconds"} <= set(x)
               for x in doc["results"])
    assert doc["coverage"]["env.umask"]["pass"] == 6
    assert len({x["batch"] for x in doc["results"]}) == 2  # six tests, four per dump
    for name in ("junit.xml", "report.md", "report.html"):
        assert (pytester.path / "rep" / name).stat().st_size > 0


def test_restart_fails_every_test_at_verify(pytester: pytest.Pytester, user_specs: Path) -> None:
    r = run(pytester, user_specs, "--zdtm-engine=restart")
    r.assert_outcomes(failed=6)
    doc = json.loads((pytester.path / "rep" / "report.json").read_text())
    assert {(x["verdict"], x["step"]) for x in doc["results"]} == {("fail", "verify")}
    r.stdout.fnmatch_lines(["*FAIL at verify*"])


def test_selection_shards_and_noauto(pytester: pytest.Pytester, user_specs: Path) -> None:
    r = run(pytester, user_specs, "--zdtm-shard=1/2")
    r.assert_outcomes(passed=3)
    r = run(pytester, user_specs, "--zdtm-test=later", "--zdtm-regex=pipe_data_0")
    r.assert_outcomes(passed=2)


def test_expected_failures_are_counted(pytester: pytest.Pytester, user_specs: Path, binaries: dict) -> None:
    (user_specs / "static" / "env_umask_0.yaml").write_text(
        f"description: d\nfeatures: [env.umask]\nprogram: {binaries['env_umask']}\nflavors: [host]\n"
        "expect:\n  restart: {fail: 'restart loses the umask', tracking: 'by design'}\n")
    r = run(pytester, user_specs, "--zdtm-engine=restart", "--zdtm-test=env_umask_0", "--zdtm-test=env_umask_1")
    r.assert_outcomes(failed=1, xfailed=1)
    (user_specs / "static" / "env_umask_1.yaml").write_text(
        f"description: d\nfeatures: [env.umask]\nprogram: {binaries['env_umask']}\nflavors: [host]\n"
        "expect:\n  nocr: {fail: 'believed broken'}\n")
    r = run(pytester, user_specs, "--zdtm-test=env_umask_1")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*XPASS*believed broken*"])


def test_bad_spec_is_a_collection_error(pytester: pytest.Pytester, user_specs: Path) -> None:
    (user_specs / "static" / "bad.yaml").write_text("description: d\nfeatures: [nope.nope]\n")
    r = run(pytester, user_specs)
    assert r.ret == 2
    r.stdout.fnmatch_lines(["*bad.yaml: key 'program': expected a C source at*"])
