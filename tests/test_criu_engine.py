"""The `criu` engine plugin: discovery, its probe, its CLI calls, and a skipped run end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness import engines
from harness.engines import DumpRequest, RestoreRequest, criu

CHECK_ERROR = "vdso: Unexpected rt vDSO area bounds (fake)"

# A stand-in for criu: `check` fails like Debian's 3.17 does on this kernel; dump and
# restore record their argv, write the log named by -o, and restore writes its pidfile.
FAKE = f"""#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
case "$1" in
--version) echo "Version: 9.9.9"; echo "GitID: fake"; exit 0 ;;
check)
    echo "Error (criu/util.c:642): exited, status=1" >&2
    echo "Error (criu/vdso.c:381): {CHECK_ERROR}" >&2
    echo "Error (criu/crtools.c:260): Could not initialize kernel features detection." >&2
    exit 1 ;;
esac
log= pidfile= pid=
while [ $# -gt 0 ]; do
    case "$1" in
    -o) log=$2; shift ;;
    --pidfile) pidfile=$2; shift ;;
    -t) pid=$2; shift ;;
    esac
    shift
done
if [ "$pid" = 666 ]; then
    echo "Error (criu/cr-dump.c:1): cannot dump task 666" > "$log"
    exit 1
fi
echo "fake log" > "$log"
[ -n "$pidfile" ] && echo "$(( $(cat "$(dirname "$0")/next" 2>/dev/null || echo 100) ))" > "$pidfile"
[ -n "$pidfile" ] && echo "$(( $(cat "$pidfile") + 1 ))" > "$(dirname "$0")/next"
exit 0
"""


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    """Each case probes again: the cache is per process and ZDTM_CRIU changes between cases."""
    criu.cache_clear()
    yield
    criu.cache_clear()


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ZDTM_CRIU points to the fake criu above."""
    d = tmp_path / "bin"
    d.mkdir()
    exe = d / "criu"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    monkeypatch.setenv("ZDTM_CRIU", str(exe))
    return exe


def test_found_through_entry_point() -> None:
    assert "criu" in engines.names()
    e = engines.load("criu")
    assert isinstance(e, criu.Criu) and e.name == "criu" and e.restores_state


def test_missing_binary_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDTM_CRIU", str(tmp_path / "nope" / "criu"))
    e = engines.load("criu")
    why = e.unavailable()
    assert why and "\n" not in why and str(tmp_path / "nope" / "criu") in why
    assert e.version() == "-"


def test_failing_check_gives_its_error(fake: Path) -> None:
    e = engines.load("criu")
    why = e.unavailable()
    assert why == f"criu check failed: {CHECK_ERROR}"
    assert e.version() == "Version: 9.9.9"


def test_probe_is_cached(fake: Path) -> None:
    e = engines.load("criu")
    e.unavailable(), e.unavailable(), e.version(), e.version()
    calls = (fake.parent / "calls").read_text().splitlines()
    assert calls == ["check", "--version"]


def test_first_error_skips_helper_exits() -> None:
    assert criu.first_error("Error (criu/util.c:642): exited, status=1\nError (x.c:1): the cause\n") == "the cause"
    assert criu.first_error("Error (criu/util.c:642): exited, status=1\n") == "exited, status=1"
    assert criu.first_error("\nsomething odd\n") == "something odd"
    assert criu.first_error("") == ""


class _NoBatch:
    def kill(self) -> None:
        raise AssertionError("criu must not kill the batch")

    def relaunch(self, check_only: bool) -> None:
        raise AssertionError("criu must not relaunch the batch")


def test_dump_and_restore_one_call_per_root(fake: Path, tmp_path: Path) -> None:
    e = engines.load("criu")
    images = tmp_path / "images"
    images.mkdir()
    e.dump(DumpRequest([11, 22], images, True, images / "dump.log", _NoBatch()))
    pids = e.restore(RestoreRequest([11, 22], images, images / "restore.log", _NoBatch()))
    assert pids == [100, 101]
    calls = [c.split() for c in (fake.parent / "calls").read_text().splitlines()]
    assert calls[0][:5] == ["dump", "-t", "11", "-D", str(images / "0")] and "--leave-running" in calls[0]
    assert calls[1][:5] == ["dump", "-t", "22", "-D", str(images / "1")]
    assert calls[2][:4] == ["restore", "-D", str(images / "0"), "-d"]
    assert calls[3][:4] == ["restore", "-D", str(images / "1"), "-d"]
    assert "--pidfile" in calls[2] and "--tcp-established" in calls[2]
    assert (images / "dump.log").read_text().count("fake log") == 2


def test_dump_failure_carries_the_log(fake: Path, tmp_path: Path) -> None:
    e = engines.load("criu")
    req = DumpRequest([666], tmp_path, False, tmp_path / "dump.log", _NoBatch())
    with pytest.raises(RuntimeError, match="cannot dump task 666"):
        e.dump(req)
    assert "--leave-running" not in (fake.parent / "calls").read_text()


def _zdtm_run(report: Path, env: dict[str, str]) -> dict:
    r = subprocess.run([sys.executable, "-m", "harness.cli", "run", "-t", "static/env_umask", "--engine", "criu",
                        "-f", "host", "--report", str(report)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    results = json.loads((report / "report.json").read_text())["results"]
    assert len(results) == 1
    res: dict = results[0]
    assert (res["test"], res["flavor"], res["engine"]) == ("static/env_umask", "host", "criu")
    return res


def test_cli_run_skips_with_the_reason(fake: Path, tmp_path: Path) -> None:
    res = _zdtm_run(tmp_path / "report", dict(os.environ))
    assert res["verdict"] == "skip" and res["reason"] == f"criu check failed: {CHECK_ERROR}"


def test_cli_run_with_this_machines_criu(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ZDTM_CRIU"}
    why = criu.Criu().unavailable() if "ZDTM_CRIU" not in os.environ else None
    if why is None:
        pytest.skip("criu usable here (or ZDTM_CRIU set): the run would be real, not a skip")
    res = _zdtm_run(tmp_path / "report", env)
    assert res["verdict"] == "skip" and res["reason"] == why
