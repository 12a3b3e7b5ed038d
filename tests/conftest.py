"""Shared fixtures: the suite must leave no process of this checkout behind."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness import build, paths, proc, spec

ROOT = Path(__file__).resolve().parent.parent


def strays() -> list[str]:
    """Live processes whose executable lies in this checkout's build tree."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{name}/exe")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if exe.startswith(str(ROOT / "build")) and state != "Z":
            out.append(f"{name}:{exe.rsplit('/', 1)[-1]}")
    return out


@pytest.fixture(scope="session", autouse=True)
def no_stray_processes():
    """Fail the session if a test left a test program or helper running."""
    before = set(strays())
    yield
    deadline = time.monotonic() + 5
    left = [p for p in strays() if p not in before]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in strays() if p not in before]
    assert not left, f"processes left behind: {left}"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, Path]]]:
    """Start corpus programs under their protocol: (root pid, outfile); all killed and reaped after."""
    started: list[int] = []

    def start(name: str) -> tuple[int, Path]:
        s = next(x for x in spec.load_all([paths.SPECS]) if x.name == name)
        build.build([(s.source, s.program)] if s.source else [])
        proc.become_subreaper()
        d = tmp_path / f"run{len(started)}"
        d.mkdir()
        subprocess.run([str(s.program), f"--pidfile={d}/pid", f"--outfile={d}/out"], check=True, timeout=30)
        started.append(int((d / "pid").read_text()))
        return started[-1], d / "out"

    yield start
    proc.kill_trees(started)
    proc.reap_children()
