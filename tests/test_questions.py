"""The dump's questions (engine.questions) told by the kernel: for real tasks that set each
thing the questions read, what the BPF pass tells (engine.asleep.sighands) is what the remote
calls answer; a task whose itimer, POSIX timer or THP switch needs a call's own reading is
asked; a dump asks the others nothing and its images hold what they set."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

import engine
from engine import asleep, images, questions
from engine.ptrace import Tracee, abandon
from native import lib

# Each mode sets one thing a question reads, then says "ready" and sleeps.
PROGRAM = r"""
import ctypes, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
mode = sys.argv[1]
if mode == "pdeathsig":
    assert libc.prctl(1, signal.SIGHUP, 0, 0, 0) == 0  # PR_SET_PDEATHSIG
elif mode == "personality":
    assert libc.personality(0x0040000) >= 0  # ADDR_NO_RANDOMIZE
elif mode == "subreaper":
    assert libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
elif mode == "undumpable":
    assert libc.prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE
elif mode == "securebits":
    assert libc.prctl(28, 0x10, 0, 0, 0) == 0  # PR_SET_SECUREBITS: SECBIT_KEEP_CAPS
elif mode == "brk":
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk(1 << 20)
elif mode == "itimer":
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_REAL, 100, 50)
elif mode == "interval":  # fired, its SIGALRM blocked: not queued again until taken, interval kept
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    signal.setitimer(signal.ITIMER_REAL, 0.001, 5)
    time.sleep(0.05)
elif mode == "virt_interval":  # disarmed, its interval kept: getitimer shows it
    signal.setitimer(signal.ITIMER_VIRTUAL, 0, 5)
elif mode == "posix_timer":
    tid = ctypes.c_void_p()
    assert libc.timer_create(1, None, ctypes.byref(tid)) == 0  # CLOCK_MONOTONIC, SIGALRM, unarmed
elif mode == "thp":
    assert libc.prctl(41, 1, 0, 0, 0) == 0  # PR_SET_THP_DISABLE
elif mode == "thp_advised":
    assert libc.prctl(41, 1, 2, 0, 0) == 0  # PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED
print("ready", flush=True)
time.sleep(60)
"""
QUESTIONS = {lib.SYS_brk, lib.SYS_getitimer, lib.SYS_personality}  # in every questions' batch
TOLD = ["plain", "pdeathsig", "personality", "subreaper", "undumpable", "securebits", "brk"]
ASKED = ["itimer", "interval", "virt_interval", "posix_timer", "thp", "thp_advised"]


@pytest.fixture
def tasks() -> Iterator[dict[str, int]]:
    """One running task per mode, by mode; killed and reaped afterwards."""
    started: dict[str, subprocess.Popen[str]] = {}
    try:
        for mode in TOLD + ASKED:
            p = subprocess.Popen([sys.executable, "-c", PROGRAM, mode], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
            started[mode] = p
            assert p.stdout is not None and p.stdout.readline() == "ready\n", mode
        yield {mode: p.pid for mode, p in started.items()}
    finally:
        for p in started.values():
            if p.poll() is None:
                p.kill()
            p.wait()


def test_what_the_kernel_tells_is_what_the_calls_answer(tasks: dict[str, int]) -> None:
    kernel = asleep.sighands(set(tasks.values()))
    assert kernel is not None and set(kernel) == set(tasks.values())
    for mode, pid in tasks.items():
        told = kernel[pid].told
        assert told is not None
        t = Tracee(pid, keep_scratch=True)
        try:
            from_kernel = questions.from_kernel(t, told)
            t.answers = None
            asked = questions.ask(t)
        except BaseException:
            abandon(pid)
            raise
        t.detach()
        if mode in ASKED:
            assert from_kernel is None, mode
            continue
        assert from_kernel is not None, mode
        # The same answers, but for the timers' /proc reading the kernel spares.
        assert (from_kernel.brk, from_kernel.itimers, from_kernel.task, from_kernel.subreaper) == \
               (asked.brk, asked.itimers, asked.task, asked.subreaper), mode
        assert from_kernel.no_posix_timers
    # Each mode did set what it reads (so the comparisons above could differ).
    by_mode = {mode: kernel[pid].told for mode, pid in tasks.items()}
    plain = by_mode["plain"]
    assert plain is not None
    checks = {"pdeathsig": lambda k: k.pdeathsig == signal.SIGHUP, "personality": lambda k: k.personality == 0x0040000,
              "subreaper": lambda k: k.subreaper, "undumpable": lambda k: k.mm_flags & 3 == 0,
              "securebits": lambda k: k.securebits == 0x10}
    for mode, check in checks.items():
        assert check(by_mode[mode]) and not check(plain), mode
    brk = by_mode["brk"]
    assert brk is not None and brk.brk - _start_brk(tasks["brk"]) >= 1 << 20


def _start_brk(pid: int) -> int:
    """proc(5) field 47 of the task's stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rindex(")") + 2:].split()[47 - 3])


def test_a_dump_asks_only_the_tasks_the_kernel_cannot_answer_for(tasks: dict[str, int], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The questions' calls go only to the tasks the kernel cannot answer for (other remote
    calls may go to any: these Python tasks are large, and their pages are spliced)."""
    asked: list[int] = []  # tasks a batch with a question's call went to
    real = Tracee._run

    def run(self: Tracee, calls: list[tuple[int, ...]], *args: object, **kw: object) -> list[int]:
        if {c[0] for c in calls} & QUESTIONS:
            asked.append(self.pid)
        return real(self, calls, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Tracee, "_run", run)
    pids = list(tasks.values())
    engine.dump(pids, tmp_path / "img", leave_running=True)
    for mode in TOLD:
        assert tasks[mode] not in asked, f"{mode}: asked"
    for mode in ASKED:
        assert tasks[mode] in asked, f"{mode}: not asked"
    _, parts = images.read(images.path_of(tmp_path / "img", "task"), "task")
    by_pid = {p.pid: p for p in parts}
    assert by_pid[tasks["pdeathsig"]].pdeathsig == signal.SIGHUP
    assert by_pid[tasks["personality"]].personality == 0x0040000
    assert by_pid[tasks["undumpable"]].dumpable == 0 and by_pid[tasks["plain"]].dumpable == 1
    assert by_pid[tasks["securebits"]].creds.securebits == 0x10
    assert by_pid[tasks["thp"]].thp_disable == 1 and by_pid[tasks["plain"]].thp_disable == 0
    _, tree = images.read(images.path_of(tmp_path / "img", "tree"), "tree")
    subreaper = {e.pid: e.subreaper for e in tree[0].tasks}
    assert subreaper[tasks["subreaper"]] and not subreaper[tasks["plain"]]
    _, timers = images.read(images.path_of(tmp_path / "img", "timers"), "timers")
    by_pid_t = {m.pid: m for m in timers}
    assert by_pid_t[tasks["itimer"]].real.interval_us == 50_000_000
    assert by_pid_t[tasks["interval"]].real.interval_us == 5_000_000 and by_pid_t[tasks["interval"]].real.pending
    assert by_pid_t[tasks["virt_interval"]].virt.interval_us == 5_000_000
    assert len(by_pid_t[tasks["posix_timer"]].posix) == 1 and not by_pid_t[tasks["plain"]].posix
    for pid in pids:  # left running as they were
        os.kill(pid, 0)
