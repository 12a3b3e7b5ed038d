"""A task the engine seized is never left traced when something fails: a seizure that fails
once the task is held, or a let-go that cannot put it back as it was, still detaches it, or
collects its end if it died meanwhile. A tracee of ours left behind keeps its zombie waiting
for us: its parent could not reap it, and the init of its pid namespace could not end (a dump
that kills a tree waits for that init)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from engine import tree
from engine.errors import CkptError
from engine.ptrace import Tracee
from reaping import kill_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace)")

# A parent (our child) with one child that sleeps; the parent prints the child's pid, then the
# child's wait status once it has reaped it.
PARENT = r"""
import os, time
kid = os.fork()
if kid == 0:
    while True:
        time.sleep(1)
print(kid, flush=True)
print(os.waitpid(kid, 0)[1], flush=True)
"""


@pytest.fixture
def family() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The parent running PARENT and its child's pid; both killed and reaped after."""
    p = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    kid = int(p.stdout.readline())
    try:
        yield p, kid
    finally:
        kill_all([kid, p.pid])
        p.wait()
        p.stdout.close()


def _status(pid: int) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())}


def _running(pid: int, timeout: float = 5.0) -> dict[str, str]:
    """Its status once it is no longer stopped (a detached task goes back to sleep)."""
    deadline = time.monotonic() + timeout
    while (st := _status(pid))["State"][0] in "tT":
        assert time.monotonic() < deadline, f"pid {pid} is still stopped: {st['State']}"
        time.sleep(0.005)
    return st


def test_a_seizure_failing_once_the_task_died_leaves_its_end_to_its_parent(
        family: tuple[subprocess.Popen[str], int], monkeypatch: pytest.MonkeyPatch) -> None:
    p, kid = family

    def killed_meanwhile(self: Tracee) -> int:  # held, then SIGKILL wakes it: it is no longer stopped
        os.kill(self.pid, signal.SIGKILL)
        raise CkptError("injected failure")

    monkeypatch.setattr(Tracee, "sigmask", killed_meanwhile)
    with pytest.raises(CkptError, match="injected failure"):
        Tracee(kid)
    # Its end was collected by us as its tracer and handed on: its parent reaps it.
    out, _ = p.communicate(timeout=10)
    assert out.split() == [str(signal.SIGKILL)]


def test_a_let_go_that_fails_still_detaches_the_task_as_it_was(
        family: tuple[subprocess.Popen[str], int], monkeypatch: pytest.MonkeyPatch) -> None:
    p, kid = family
    before = _status(kid)
    frozen = tree.Frozen()
    tree.freeze([p.pid], frozen)
    assert _status(kid)["TracerPid"] != "0"
    real = Tracee.detach

    def refused(self: Tracee, own_restart_block: bool = False) -> None:
        if self.pid == kid:
            raise CkptError("injected failure")
        real(self, own_restart_block)

    monkeypatch.setattr(Tracee, "detach", refused)
    tree.let_go(frozen.traced, strict=False)
    after = _running(kid)
    assert after["TracerPid"] == "0"
    assert after["SigBlk"] == before["SigBlk"]  # not the everything-blocked mask we held it with
    # It runs on as it was: its parent still waits for it.
    assert p.poll() is None
