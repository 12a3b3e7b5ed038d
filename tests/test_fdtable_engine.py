"""Fd tables shared by processes (CLONE_FILES) through the ckpt engine: a table shared by a
parent, its child and a grandchild handed to it by CLONE_PARENT comes back as one table; a
group of sharers that hangs off no one of them is refused at dump, and the tasks run on."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from engine import fdtables
from engine.errors import CkptError, Unsupported
from engine.sharedfds import same
from native import ffi, lib
from tests.reaping import kill_all, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

# The root A clones B with CLONE_FILES; B clones C with CLONE_FILES | CLONE_PARENT, so C is
# A's child on B's table. With ARGV[2] == "split", A then takes a table of its own
# (unshare), which leaves B and C sharing one that neither got from its parent. Each writes
# its pid to ARGV[1].ROLE, then sleeps; on SIGUSR1, C opens /dev/null at fd 99.
PROGRAM = r"""
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_FILES, CLONE_PARENT = 0x400, 0x8000
def clone(flags):
    pid = libc.syscall(56, flags | signal.SIGCHLD, 0, 0, 0, 0)  # clone: a fork with these flags
    if pid < 0:
        raise OSError(ctypes.get_errno(), "clone")
    return pid
def rest(role):
    open(f"{sys.argv[1]}.{role}", "w").write(str(os.getpid()))
    while True:
        time.sleep(1)
def on_usr1(*_):
    os.dup2(os.open("/dev/null", os.O_RDONLY), 99)
if clone(CLONE_FILES) == 0:
    if clone(CLONE_FILES | CLONE_PARENT) == 0:
        signal.signal(signal.SIGUSR1, on_usr1)
        rest("c")
    rest("b")
time.sleep(0.2)
if sys.argv[2] == "split":
    libc.unshare(CLONE_FILES)
rest("a")
"""
KCMP_FILES = 2


def _start(tmp_path: Path, shape: str) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    base = tmp_path / "pid"
    p = subprocess.Popen([sys.executable, "-c", PROGRAM, str(base), shape], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    pids: dict[str, int] = {}
    while len(pids) < 3:
        assert time.monotonic() < deadline, "the program did not set up"
        time.sleep(0.01)
        for role in "abc":
            f = Path(f"{base}.{role}")
            if f.exists() and f.read_text():
                pids[role] = int(f.read_text())
    return p, pids


def _one_table(a: int, b: int) -> bool:
    r = lib.syscall(lib.SYS_kcmp, ffi.cast("long", a), ffi.cast("long", b), ffi.cast("long", KCMP_FILES),
                    ffi.cast("long", 0), ffi.cast("long", 0))
    assert r >= 0, os.strerror(ffi.errno)
    return int(r) == 0


def test_one_table_of_three_comes_back_one(tmp_path: Path) -> None:
    p, pids = _start(tmp_path, "shared")
    every = list(pids.values())
    try:
        assert _one_table(pids["a"], pids["b"]) and _one_table(pids["a"], pids["c"])
        engine.dump([pids["a"]], tmp_path / "img")
        p.wait()
        wait_gone(every)
        assert engine.restore(tmp_path / "img") == [pids["a"]]
        assert _one_table(pids["a"], pids["b"]) and _one_table(pids["a"], pids["c"])
        assert sorted(os.listdir(f"/proc/{pids['a']}/fd")) == sorted(os.listdir(f"/proc/{pids['c']}/fd"))
        # One table, not two alike: what C opens now, A has at once.
        os.kill(pids["c"], 10)
        deadline = time.monotonic() + 10
        while not os.path.exists(f"/proc/{pids['a']}/fd/99"):
            assert time.monotonic() < deadline, "fd 99 opened by C never appeared in A"
            time.sleep(0.01)
        assert same(pids["a"], 99, pids["c"], 99)
    finally:
        kill_all(every)
        wait_gone(every)


def test_a_table_shared_off_the_parent_line_is_refused(tmp_path: Path) -> None:
    p, pids = _start(tmp_path, "split")
    every = list(pids.values())
    try:
        assert _one_table(pids["b"], pids["c"]) and not _one_table(pids["a"], pids["b"])
        with pytest.raises(Unsupported, match=f"tasks {min(pids['b'], pids['c'])} and "
                                              f"{max(pids['b'], pids['c'])} share one fd table"):
            engine.dump([pids["a"]], tmp_path / "img")
        assert not (tmp_path / "img").exists()
        for pid in every:
            status = Path(f"/proc/{pid}/status").read_text()
            assert "TracerPid:\t0" in status, pid
            assert status.split("State:\t")[1][0] in "SR", pid  # let go: sleeping, or on its way back
    finally:
        kill_all(every)
        p.wait()
        wait_gone(every)


def test_kcmp_groups_name_a_task_that_is_gone() -> None:
    p = subprocess.Popen(["sleep", "60"])
    try:
        gone = subprocess.Popen(["true"])
        gone.wait()
        assert fdtables.groups([os.getpid(), p.pid]) in ([[os.getpid()], [p.pid]], [[p.pid], [os.getpid()]])
        with pytest.raises(CkptError, match=r"kcmp\(2\) over 3 tasks: No such process"):
            fdtables.groups([os.getpid(), p.pid, gone.pid])
    finally:
        p.kill()
        p.wait()
