"""Remote syscalls in a real, seized test program: results come back, the task goes on intact."""
from __future__ import annotations

import os
import signal
import sys
import subprocess
import time
from pathlib import Path

import pytest

from engine.errors import CkptError, ProcessGone
from engine.ptrace import Tracee, pinned
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


def test_a_batch_runs_in_order_and_names_the_call_that_failed(umask_test: tuple[int, Path]) -> None:
    pid, out = umask_test
    t = Tracee(pid)
    try:
        assert t.batch([(SYS_umask, 0o22), (SYS_getpid,), (SYS_umask, 0o247)]) == [0o247, pid, 0o22]
        assert t.batch([(SYS_close, -1), (SYS_getpid,)], must=False) == [-9, pid]
        with pytest.raises(CkptError, match=r"remote close\(-1\): Bad file descriptor"):
            # The failed call stops the batch: the umask after it is not run.
            t.batch([(SYS_getpid,), (SYS_close, -1), (SYS_umask, 0)], ["getpid", "close(-1)", "umask"])
        assert t.syscall(SYS_umask, 0o247) == 0o247
    finally:
        t.detach()
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    assert out.read_text().splitlines()[-1] == "PASS"


def test_pinned_work_leaves_every_affinity_as_it_was(umask_test: tuple[int, Path]) -> None:
    """While pinned, the tracer and the tasks it seizes share one CPU; after, both have their
    own masks back (the task's set apart from ours, so a swap would show)."""
    pid, _ = umask_test
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(pid, {cpus[-1]})
    mine = os.sched_getaffinity(0)
    with pinned():
        here = os.sched_getaffinity(0)
        t = Tracee(pid)
        try:
            assert len(here) == 1 and os.sched_getaffinity(pid) == here
            assert t.cpus == {cpus[-1]} and t.syscall(SYS_getpid) == pid
        finally:
            t.detach()
        assert os.sched_getaffinity(pid) == {cpus[-1]}
    assert os.sched_getaffinity(0) == mine


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
