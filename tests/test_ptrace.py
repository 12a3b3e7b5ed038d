"""Remote syscalls in a real, seized test program: results come back, the task goes on intact."""
from __future__ import annotations

import os
import signal
import sys
import subprocess
import time
from pathlib import Path

import pytest

from engine.errors import ProcessGone
from engine.ptrace import Tracee
from harness import proc

SYS_getpid, SYS_umask, SYS_close = 39, 95, 3


@pytest.fixture
def umask_test(launch):
    """env_umask running under its protocol (umask 0247 set by its setup)."""
    return launch("static/env_umask")


def test_remote_syscalls_and_detach(umask_test: tuple[int, Path]) -> None:
    pid, out = umask_test
    t = Tracee(pid)
    try:
        assert t.syscall(SYS_getpid) == pid
        assert t.syscall(SYS_umask, 0o22) == 0o247  # the state its setup built
        assert t.syscall(SYS_umask, 0o247) == 0o22
        assert t.syscall(SYS_close, -1) == -9  # EBADF comes back as -errno
        assert t.read(t.syscall_address(), 2) == b"\x0f\x05"
    finally:
        t.detach()
    # Detached mid-futex-wait: the task must resume its wait, then check and pass.
    time.sleep(0.05)
    assert proc.alive(pid)
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    assert out.read_text().splitlines()[-1] == "PASS"


def test_seizing_a_missing_task_is_process_gone() -> None:
    with pytest.raises(ProcessGone, match=r"pid=999999"):
        Tracee(999999)


def test_ckpt_check_probes_for_real() -> None:
    """Every interface the engine needs is there on this kernel, and each line says so."""
    r = subprocess.run(["ckpt", "check"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    lines = r.stdout.splitlines()
    assert len(lines) == 12 and all(line.endswith(" ok") for line in lines), r.stdout + r.stderr
    assert r.returncode == 0
