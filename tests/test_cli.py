"""The zdtm CLI: listing, bad input as one line with exit 2, report re-rendering."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import paths, spec


def zdtm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_list_json_has_every_spec() -> None:
    r = zdtm("list", "--json")
    assert r.returncode == 0, r.stderr
    tests = json.loads(r.stdout)
    assert {t["name"] for t in tests} == {s.name for s in spec.load_all([paths.SPECS])}
    assert all(t["features"] and t["flavors"] for t in tests)


@pytest.mark.parametrize("args, words", [
    (["run", "-t", "no_such_test"], "-t no_such_test: no such test"),
    (["run", "-T", "^zzz"], "matches no test"),
    (["run", "-T", "("], "regex '('"),
    (["run", "--all", "--engine", "warp"], "unknown engine 'warp'"),
    (["run", "--all", "-f", "moon"], "unknown flavor 'moon'"),
    (["run", "--all", "--shard", "3/2"], "--shard '3/2'"),
    (["run", "--all", "--shard", "x"], "--shard 'x'"),
    (["run"], "nothing selected"),
    (["run", "--all", "--specs", "/nonexistent"], "not a directory"),
    (["report", "/nonexistent"], "no readable report.json"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], words: str) -> None:
    r = zdtm(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_user_spec_stops_the_run(tmp_path: Path) -> None:
    d = tmp_path / "mine" / "static"
    d.mkdir(parents=True)
    (d / "x.yaml").write_text("description: x\nfeatures: [env.nope]\nprogram: ./x\n")
    (d / "x").write_text("#!/bin/sh\n")
    (d / "x").chmod(0o755)
    r = zdtm("run", "--all", "--specs", str(tmp_path / "mine"))
    assert r.returncode == 2
    assert f"{d / 'x.yaml'}: key 'features': unknown feature 'env.nope'" in r.stderr


def test_report_rerenders_and_merges(tmp_path: Path) -> None:
    from harness import report
    from harness.verdict import Result, Verdict

    a, b = tmp_path / "a", tmp_path / "b"
    report.write(a, report.make([Result("static/x", "host", "nocr", Verdict.PASS, features=("env.umask",))], "t0"))
    report.write(b, report.make([Result("static/x", "ns", "nocr", Verdict.FAIL, "verify", "boom",
                                        features=("env.umask",))], "t1"))
    (a / "report.html").unlink()
    r = zdtm("report", str(a), str(b))
    assert r.returncode == 0, r.stderr
    doc = json.loads((a / "report.json").read_text())
    assert doc["coverage"]["env.umask"]["pass"] == 1 and doc["coverage"]["env.umask"]["fail"] == 1
    assert doc["matrix"]["env.umask"]["nocr/ns"]["fail"] == 1
    assert "boom" in (a / "report.html").read_text()
