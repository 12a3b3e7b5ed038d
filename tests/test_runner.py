"""The batch cycle on real processes: verdicts, the oracle's diff, engine failures, bad programs."""
from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from harness import build, engines, paths, proc, spec
from harness.engines import DumpRequest, RestoreRequest
from harness.runner import Batch, RunOptions
from harness.verdict import Verdict


@pytest.fixture(scope="module")
def corpus() -> dict[str, spec.Spec]:
    specs = {s.name: s for s in spec.load_all([paths.SPECS])}
    wanted = [specs["static/env_umask"], specs["static/pipe_data"]]
    build.build([(s.source, s.program) for s in wanted if s.source])
    return specs


def run(specs: list[spec.Spec], engine: object, tmp_path: Path, flavor: str = "host", **kw: object) -> dict:
    batch = Batch("t", specs, flavor, engine, RunOptions(outdir=tmp_path, **kw))  # type: ignore[arg-type]
    return {r.test: r for r in batch.run()}


@pytest.mark.parametrize("flavor", ["host", "ns"])
def test_nocr_passes_restart_fails_at_verify(corpus: dict, tmp_path: Path, flavor: str) -> None:
    specs = [corpus["static/env_umask"], corpus["static/pipe_data"]]
    ok = run(specs, engines.load("nocr"), tmp_path, flavor, iters=2)
    assert [r.verdict for r in ok.values()] == [Verdict.PASS, Verdict.PASS], ok
    bad = run(specs, engines.load("restart"), tmp_path, flavor)
    for r in bad.values():
        assert r.verdict is Verdict.FAIL and r.step == "verify", r
    assert "umask is 0022, expected 0247" in bad["static/env_umask"].reason
    assert (tmp_path / "logs" / "restart" / flavor / "static" / "pipe_data.out").exists()


def test_norst_leaves_running_and_checks(corpus: dict, tmp_path: Path) -> None:
    r = run([corpus["static/pipe_data"]], engines.load("nocr"), tmp_path, norst=True)
    assert r["static/pipe_data"].verdict is Verdict.PASS


class StopsRoots:
    """An engine whose restore leaves every root stopped: the oracle must notice."""

    name, restores_state = "stopper", True

    def unavailable(self) -> None:
        return None

    def version(self) -> str:
        return "0"

    def dump(self, req: DumpRequest) -> None:
        pass

    def restore(self, req: RestoreRequest) -> list[int]:
        for pid in req.roots:
            os.kill(pid, signal.SIGSTOP)
            while (st := proc.read_stat(pid)) and st.state != "T":  # the stop lands asynchronously
                time.sleep(0.001)
        return list(req.roots)


class FailsDump(StopsRoots):
    """An engine whose dump fails."""

    name = "faildump"

    def dump(self, req: DumpRequest) -> None:
        raise RuntimeError("cannot freeze pid 4242")


def test_oracle_diff_fails_the_restore_step(corpus: dict, tmp_path: Path) -> None:
    r = run([corpus["static/env_umask"]], StopsRoots(), tmp_path)["static/env_umask"]
    assert r.verdict is Verdict.FAIL and r.step == "restore"
    assert any("state" in line and "stopped" in line for line in r.diff), r.diff


def test_engine_failure_is_the_dump_step(corpus: dict, tmp_path: Path) -> None:
    r = run([corpus["static/env_umask"], corpus["static/pipe_data"]], FailsDump(), tmp_path)
    assert {x.step for x in r.values()} == {"dump"}
    assert all("cannot freeze pid 4242" in x.reason for x in r.values())


def script(tmp_path: Path, name: str, body: str, timeout: float = 10) -> spec.Spec:
    d = tmp_path / "specs" / "static"
    d.mkdir(parents=True, exist_ok=True)
    exe = d / name
    exe.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    exe.chmod(0o755)
    (d / f"{name}.yaml").write_text(f"description: {name}\nfeatures: [env.umask]\nprogram: ./{name}\n"
                                    f"timeout: {timeout}\nflavors: [host]\n")
    return spec.load_spec(d / f"{name}.yaml", tmp_path / "specs")


def test_bad_programs_get_clear_verdicts(tmp_path: Path) -> None:
    escapee = tmp_path / "escapee.pid"
    crash = script(tmp_path, "crash", f"""
        setsid sleep 60 </dev/null >/dev/null 2>&1 &
        echo $! > {escapee}
        echo 'setup exploded' >&2; exit 3
        """)
    silent = script(tmp_path, "silent", "exec sleep 60\n", timeout=1)
    garbage = script(tmp_path, "garbage", """
        for a; do case "$a" in --pidfile=*) P=${a#*=};; --outfile=*) O=${a#*=};; esac; done
        setsid sleep 60 </dev/null >/dev/null 2>&1 &
        echo 'la la la' > "$O"; echo $! > "$P"
        """)
    r = run([crash, silent, garbage], engines.load("nocr"), tmp_path)
    c, s, g = r["static/crash"], r["static/silent"], r["static/garbage"]
    assert c.verdict is Verdict.BROKEN and c.step == "start" and "setup exploded" in c.output
    assert s.verdict is Verdict.BROKEN and s.step == "start" and "not ready within 1s" in s.reason
    assert g.verdict is Verdict.FAIL and g.step == "verify" and "la la la" in g.reason
    # What the crashed program left running in its directory went with the batch.
    assert not proc.wait_gone([int(escapee.read_text())], 5)


def test_needs_missing_is_a_skip(corpus: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from harness import needs

    monkeypatch.setitem(needs.PROBES, "avx", lambda: "no AVX here")
    needs.missing.cache_clear()
    s = replace(corpus["static/env_umask"], needs=("avx",))
    r = run([s], engines.load("nocr"), tmp_path)["static/env_umask"]
    needs.missing.cache_clear()
    assert r.verdict is Verdict.SKIP and "no AVX here" in r.reason


def test_tests_comparing_nothing_skip_the_oracle(corpus: dict, tmp_path: Path) -> None:
    """compare: [] (transition tests) means no aspect is diffed, not even the set of tasks."""
    from dataclasses import replace

    s = replace(corpus["static/env_umask"], compare=(), timeout=1.0)
    r = run([s], StopsRoots(), tmp_path)["static/env_umask"]
    # Past the restore step unchallenged; the stopped root then cannot answer SIGTERM.
    assert (r.verdict, r.step) == (Verdict.BROKEN, "verify"), r
