"""Reading a task's state from its kernel structures (engine.asleep, for a task asleep in vfork
that no ptrace stop reaches) gives what ptrace and the task's own syscalls give: checked on a
task we can stop, with an alternate stack, handlers, pdeathsig, the subreaper flag, an armed
itimer and vector registers (AVX-512 ones where the CPU has them: their place in the kernel's
compacted xsave area differs from the one ptrace shows). The sigactions of every process read
at once (engine.asleep.sighands, which a dump of many tasks uses) are what rt_sigaction says,
and a dump of a tree writes the same ones either way."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import engine
from engine import asleep, dumper, questions, signals, task, tree
from engine.images import read as read_images
from engine.ptrace import Tracee

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, BPF)")

RICH_C = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <unistd.h>

static char alt[65536];
static void on_usr1(int sig) { (void)sig; }

int main(void)
{
    stack_t ss = { .ss_sp = alt, .ss_size = sizeof(alt) };
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART };
    struct itimerval it = { .it_value = { 1000, 0 } };

    sigaltstack(&ss, NULL);
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Default, with flags that matter: SA_NOCLDWAIT on SIGCHLD. */
    struct sigaction dfl = { .sa_handler = SIG_DFL, .sa_flags = SA_NOCLDWAIT | SA_NOCLDSTOP | SA_RESTART };
    sigemptyset(&dfl.sa_mask);
    sigaddset(&dfl.sa_mask, SIGINT);
    sigaction(SIGCHLD, &dfl, NULL);
    prctl(PR_SET_PDEATHSIG, SIGHUP);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    setitimer(ITIMER_REAL, &it, NULL);
    __asm__ volatile("vpcmpeqd %%ymm7, %%ymm7, %%ymm7" ::: "xmm7");
    if (__builtin_cpu_supports("avx512f"))
        __asm__ volatile("vpternlogd $0xff, %%zmm20, %%zmm20, %%zmm20\n\tvpternlogd $0x0f, %%zmm3, %%zmm3, %%zmm3\n\t"
                         "kxnorw %%k2, %%k2, %%k2" ::: "xmm20", "xmm3", "k2");
    puts("ready");
    fflush(stdout);
    for (;;)
        pause();
}
"""


@pytest.fixture
def rich(tmp_path: Path) -> Iterator[int]:
    """A running task with much state of its own: its pid (killed and reaped after)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    (tmp_path / "rich.c").write_text(RICH_C)
    subprocess.run(["gcc", "-O2", "-mavx2", "-mavx512f", "-o", str(tmp_path / "rich"), str(tmp_path / "rich.c")],
                   check=True)
    p = subprocess.Popen([str(tmp_path / "rich")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 5
        while Path(f"/proc/{p.pid}/wchan").read_text() != "do_sys_pause" and time.monotonic() < deadline:
            time.sleep(0.001)
        yield p.pid
    finally:
        p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def test_the_kernel_structures_say_what_ptrace_and_the_task_say(rich: int) -> None:
    t = Tracee(rich)
    try:
        like = t.xstate()
        got = asleep.read(rich, like)  # first: the remote calls below change the registers
        want = t.saved
        for name in ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx",
                     "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds",
                     "es", "fs", "gs"):
            assert (name, getattr(got.regs, name)) == (name, getattr(want, name))
        assert got.xstate == like
        assert got.rseq == t.rseq() and got.rseq[0]
        actions, _, alt = signals.dump(t)
        assert [(a.handler, a.flags, a.restorer, a.mask) for a in actions] == \
               [got.actions[a.sig - 1] for a in actions]
        assert got.actions[signal.SIGUSR1 - 1][0] and got.actions[signal.SIGPIPE - 1][0] == 1
        assert got.altstack == (alt.sp, alt.flags, alt.size) and alt.size == 65536
        part = task.dump(t, [])
        assert (got.pdeathsig, got.clear_tid, got.securebits) == (part.pdeathsig, part.clear_tid,
                                                                 part.creds.securebits)
        assert got.pdeathsig == signal.SIGHUP
        assert got.subreaper is questions.ask(t).subreaper is True
        assert got.itimer == "real"
    finally:
        t.detach()


def test_every_process_sigactions_at_once_are_what_rt_sigaction_says(rich: int) -> None:
    kernel = asleep.sighands({rich, os.getpid()})
    assert kernel is not None and set(kernel) == {rich, os.getpid()}  # only those asked for
    t = Tracee(rich)
    try:
        by_calls = signals.dump(t)
        by_kernel = signals.dump(t, kernel[rich])
    finally:
        t.detach()
    assert by_kernel == by_calls
    by_sig = {a.sig: a for a in by_calls[0]}
    chld = by_sig[signal.SIGCHLD]
    assert chld.handler == 0 and chld.flags & 0x2  # SA_NOCLDWAIT
    # Only actions off the default are listed: not SIGTERM's (its default here), never SIGKILL's.
    assert signal.SIGTERM not in by_sig and signal.SIGKILL not in by_sig
    assert all((a.handler, a.flags, a.restorer, a.mask) != (0, 0, 0, 0) for a in by_calls[0])
    assert by_calls[2].size == 65536


TREE = r"""
import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: None)
for i in range(9):
    if os.fork() == 0:
        signal.signal(signal.SIGUSR2 if i % 2 else signal.SIGHUP, signal.SIG_IGN)
        time.sleep(1000)
        os._exit(0)
open(sys.argv[1], "w").write("ready")
time.sleep(1000)
"""


def test_a_dump_of_many_tasks_reads_sigactions_at_once_and_writes_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", TREE, str(ready)])
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        kids = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        calls: list[bool] = []  # per pass: it read the tree's root
        real = asleep.sighands

        def counted(pids: set[int]) -> dict[int, asleep.Sighand] | None:
            got = real(pids)
            calls.append(got is not None and p.pid in got and set(got) == {p.pid, *kids})
            return got

        monkeypatch.setattr(asleep, "sighands", counted)
        engine.dump([p.pid], tmp_path / "at-once", leave_running=True)
        assert calls == [True]
        monkeypatch.setattr(dumper, "SIGHANDS_FROM", 1 << 30)
        engine.dump([p.pid], tmp_path / "by-calls", leave_running=True)
        assert calls == [True]

        def actions(d: Path) -> dict[int, list[tuple[int, int, int, int, int]]]:
            return {c.pid: [(a.sig, a.handler, a.flags, a.restorer, a.mask) for a in c.sigactions]
                    for c in read_images(d / "core.img", "core")[1]}

        got = actions(tmp_path / "at-once")
        assert len(got) == 10 and got == actions(tmp_path / "by-calls")
        assert sum(a[1] == 1 for a in got[kids[1]]) > sum(a[1] == 1 for a in got[p.pid])  # SIG_IGN set
    finally:
        for pid in [p.pid, *kids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait()
