"""Remote syscalls in a real, seized test program: results come back, the task goes on intact."""
from __future__ import annotations

import os
import signal
import sys
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.errors import CkptError, ProcessGone
from engine import ptrace
from engine.ptrace import Tracee, home_cpus, others_busy, pinned
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
    from engine.check import PROBES

    assert len(lines) == len(PROBES) == 13 and all(line.endswith(" ok") for line in lines), r.stdout + r.stderr
    assert r.returncode == 0


# Sleeps in one syscall (pause, or a 2 s nanosleep) with a SIGUSR1 handler (no SA_RESTART),
# then writes the call's result and errno.
SLEEPER = r"""
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
class Ts(ctypes.Structure):
    _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
signal.signal(signal.SIGUSR1, lambda *_: None)
rc = libc.pause() if sys.argv[2] == "pause" else libc.nanosleep(ctypes.byref(Ts(2, 0)), None)
with open(sys.argv[1], "w") as f:
    f.write(f"{rc} {ctypes.get_errno()}")
"""


def _sleeping(tmp_path: Path, call: str) -> tuple[subprocess.Popen[bytes], Path]:
    """The sleeper, once it is inside its syscall (34 pause, 230 clock_nanosleep)."""
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-c", SLEEPER, str(out), call])
    nr = {"pause": "34", "nanosleep": "230"}[call]
    deadline = time.monotonic() + 10
    while Path(f"/proc/{p.pid}/syscall").read_text().split()[0] != nr:
        assert time.monotonic() < deadline, f"the sleeper never entered {call}"
        time.sleep(0.01)
    return p, out


def _result(p: subprocess.Popen[bytes], out: Path) -> str:
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "still inside its syscall"
    return out.read_text()


def test_a_signal_that_came_while_traced_interrupts_the_syscall(tmp_path: Path) -> None:
    """A handled signal sent while the task was ours (blocked, so pending) arrives at detach:
    the interrupted pause returns EINTR after the handler, as it would have untraced, instead
    of being restarted and sleeping on (the kernel's restart rules, not a rewind of ours)."""
    p, out = _sleeping(tmp_path, "pause")
    t = Tracee(p.pid)
    try:
        assert t.syscall(SYS_getpid) == p.pid  # leaves it at a syscall-exit stop
        os.kill(p.pid, signal.SIGUSR1)
    finally:
        t.detach()
    assert _result(p, out) == "-1 4"


@pytest.mark.parametrize("own, expected", [(True, "0 0"), (False, "-1 4")])
def test_an_interrupted_sleep_restarts_only_with_its_own_restart_block(tmp_path: Path, own: bool, expected: str) -> None:
    """clock_nanosleep goes on for its remaining time when the task keeps its restart block
    (a dump that leaves it running); a restored task's block is not its own: EINTR."""
    p, out = _sleeping(tmp_path, "nanosleep")
    t = Tracee(p.pid)
    try:
        assert t.syscall(SYS_getpid) == p.pid
    finally:
        t.detach(own_restart_block=own)
    assert _result(p, out) == expected


def _spinners(until_none: float = 0.0) -> dict[int, set[int]]:
    """Our threads but this one that are running, with their affinity; with until_none, asked
    again until there are none or that many seconds passed (a joined thread is a moment in
    its exit still)."""
    deadline = time.monotonic() + until_none
    while True:
        out = {}
        for tid in map(int, os.listdir("/proc/self/task")):
            if tid == threading.get_native_id():
                continue
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                if state == "R":
                    out[tid] = os.sched_getaffinity(tid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        if not out or time.monotonic() > deadline:
            return out
        time.sleep(0.01)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_the_other_cpus_are_kept_busy_while_frozen_and_let_go_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """others_busy: a running thread on each other CPU (none on ours) while inside, gone
    after; one nobody stops ends by itself."""
    assert not _spinners(until_none=1)
    with pinned():
        ours = os.sched_getaffinity(0)
        with others_busy():
            spinning = _spinners()
            assert spinning and all(len(c) == 1 and c <= home_cpus() - ours for c in spinning.values()), spinning
        assert not _spinners(until_none=1)
        monkeypatch.setattr(ptrace, "SPIN_LIMIT_MS", 50)
        busy = others_busy()
        busy.__enter__()
        try:
            assert _spinners()
            time.sleep(0.3)
            assert not _spinners(until_none=1), "a spinning thread outlived its limit"
        finally:
            busy.__exit__(None, None, None)
    with others_busy():  # not pinned: nothing
        assert not _spinners()


def test_a_parked_task_waits_untraced_with_nothing_run_until_seized_again(umask_test: tuple[int, Path]) -> None:
    """park(): let go into pause(2) with every signal blocked: it runs none of its code (a
    signal stays pending), another seizure finds it asleep, and it goes on intact after."""
    pid, out = umask_test
    t = Tracee(pid)
    mask = t.mask
    t.park()
    time.sleep(0.05)
    with open(f"/proc/{pid}/status") as f:
        st = f.read()
    assert "TracerPid:\t0\n" in st and "State:\tS" in st
    os.kill(pid, signal.SIGTERM)  # blocked: its handler would end the test program
    time.sleep(0.05)
    assert proc.alive(pid)
    again = Tracee(pid)
    try:
        assert again.syscall(SYS_getpid) == pid
        again.saved, again.mask = t.saved, mask  # where it was before the park
    finally:
        again.detach()
    assert not proc.wait_gone([pid], 10)  # the pending SIGTERM ends it now
    assert out.read_text().splitlines()[-1] == "PASS"


_HOLDER = r"""
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
at = int(sys.argv[1])
if at:
    got = libc.mmap(at, 4096, 3, 0x22 | 0x100000, -1, 0)  # private anonymous, MAP_FIXED_NOREPLACE
    assert got == at, got
    ctypes.memmove(at, b"mine" * 1024, 4096)
print("ready", flush=True)
time.sleep(60)
"""


def _holder(at: int) -> subprocess.Popen[str]:
    """A task that maps a page of its own at `at` (0: none) before it says ready."""
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, str(at)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    return p


def _areas(pid: int) -> list[tuple[int, int]]:
    with open(f"/proc/{pid}/maps") as f:
        return [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f]  # type: ignore[misc]


@pytest.mark.parametrize("taken", [False, True])
def test_a_kept_scratch_area_is_mapped_by_the_batch_that_uses_it(taken: bool) -> None:
    """A task that keeps its scratch area gets it at SCRATCH_AT in the batch of its first
    calls; where that place is the task's own, elsewhere, and the task's page is left as it was."""
    p = _holder(ptrace.SCRATCH_AT if taken else 0)
    try:
        t = Tracee(p.pid, keep_scratch=True)
        try:
            results, raw = t.with_scratch(lambda buf: [(39,), (157, 2, buf, 0, 0, 0)],  # getpid, PR_GET_PDEATHSIG
                                          ["getpid", "prctl(PR_GET_PDEATHSIG)"], 4)
            assert results == [p.pid, 0] and raw == b"\0\0\0\0"
            kept = t.kept_scratch()
            assert kept is not None and kept in _areas(p.pid)
            assert (kept[0] == ptrace.SCRATCH_AT) is not taken
            if taken:
                assert t.read(ptrace.SCRATCH_AT, 4096) == b"mine" * 1024
            t.detach()
            assert kept not in _areas(p.pid)  # gone with the detach
        except BaseException:
            ptrace.abandon(p.pid)
            raise
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()


def test_the_syscall_address_of_a_known_vdso_comes_from_auxv(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second task's syscall address, found through its auxv and the vDSO image found
    before, is the one its maps give; an auxv block that does not hold that image is not used."""
    a, b = _holder(0), _holder(0)
    try:
        monkeypatch.setattr(ptrace, "_vdso", None)
        ta = Tracee(a.pid)
        tb = Tracee(b.pid)
        try:
            assert ta._known_vdso() is None  # nothing known yet
            found = ta.syscall_address()
            assert ptrace._vdso is not None and ta.read(found, 2) == b"\x0f\x05"
            known = tb._known_vdso()
            assert known is not None and known == tb._scan_vdso()
            monkeypatch.setattr(ptrace, "_vdso", (b"not the vDSO", 0))
            assert tb._known_vdso() is None
        finally:
            ta.detach()
            tb.detach()
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
