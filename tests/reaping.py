"""Killing and waiting out the processes a test made: shared by the engine tests."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness import proc as hproc


def kill_all(pids: list[int]) -> None:
    """SIGKILL each (gone ones are skipped); a child of ours among them is collected if dead."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    """Until these pids are free (killed tasks reaped by whoever got them: children of ours, and
    orphans handed to us as subreaper, are reaped here); fail after timeout."""
    deadline = time.monotonic() + timeout
    while any(os.path.exists(f"/proc/{p}") for p in pids):
        assert time.monotonic() < deadline, "the killed tasks were not reaped"
        for p in pids:
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        hproc.reap_children()
        time.sleep(0.005)


def ready_pids(directory: Path, count: int, timeout: float = 10.0) -> list[int]:
    """The pids of `count` tasks once each has noted DIR/ready-PID (sorted); fail after timeout."""
    deadline = time.monotonic() + timeout
    while len(list(directory.glob("ready-*"))) < count:
        assert time.monotonic() < deadline, "the tasks never said they were ready"
        time.sleep(0.01)
    return sorted(int(p.name.split("-")[1]) for p in directory.glob("ready-*"))
