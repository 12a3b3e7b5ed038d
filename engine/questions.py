"""A task's read-only remote questions of a dump, asked in one batch: its brk (engine.mm), its
three itimers (engine.timers), the task part's prctls and personality (engine.task) and its
subreaper flag (engine.tree's entry). A batch costs a stop and a wakeup of the task whatever it
holds; the batch also maps the task's scratch area when it has none yet (Tracee.with_scratch).
The answers wait on the Tracee, and each module takes its own there instead of asking again.

A single-threaded task is mostly not asked at all: the kernel fields those calls read come with
its sigactions (engine.asleep.sighands), and from_kernel() answers from them, unless a timer or
a THP switch would need a call's own reading (then it is asked)."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from engine import task, timers
from engine.asleep import Told
from engine.ptrace import Tracee
from native import lib

SUBREAPER_AT = timers.ITIMERS_SIZE + task.CALLS_SIZE  # where PR_GET_CHILD_SUBREAPER writes its int
SIZE = SUBREAPER_AT + 4


@dataclass(frozen=True, slots=True)
class Answers:
    """What the batch told."""

    brk: int
    itimers: bytes  # three struct itimerval (timers.itimer_calls)
    task: tuple[list[int], bytes]  # the task part's call results and what they wrote (task.calls)
    subreaper: bool  # PR_GET_CHILD_SUBREAPER
    no_posix_timers: bool = False  # known from the kernel: the task has none (no /proc/PID/timers to read)


DUMPABLE_MASK = 3  # the low bits of mm->flags that PR_GET_DUMPABLE returns (MMF_DUMPABLE_BITS)
# mm->flags bits that PR_GET_THP_DISABLE reports (24: disabled, 23: disabled except where
# advised, on 6.18): set, the task is asked; clear, the call returns 0. A kernel that kept the
# switch elsewhere would be answered 0 wrongly: tests/test_questions.py checks it here.
THP_BITS = 1 << 24 | 1 << 23


def from_kernel(t: Tracee, told: Told) -> Answers | None:
    """The answers of main thread t as the kernel told them (engine.asleep.Told), set on t;
    None (t asked nothing) when a call would read more than those fields, or when the task has
    POSIX timers (their reading needs a scratch area, which only the questions' batch maps
    before the page worker reads the task's areas)."""
    if t.pid != t.tgid or not told.itimers_idle or not told.no_posix_timers or told.mm_flags & THP_BITS:
        return None
    results = [told.securebits, told.mm_flags & DUMPABLE_MASK, 0, 0, 0, told.personality]  # task.CALLS' order
    t.answers = Answers(brk=told.brk, itimers=bytes(timers.ITIMERS_SIZE),
                        task=(results, struct.pack("<i4xQ", told.pdeathsig, told.clear_tid)),
                        subreaper=told.subreaper, no_posix_timers=told.no_posix_timers)
    return t.answers


def _calls(buf: int) -> list[tuple[int, ...]]:
    return [(lib.SYS_brk, 0), *timers.itimer_calls(buf), *task.calls(buf + timers.ITIMERS_SIZE),
            (lib.SYS_prctl, lib.PR_GET_CHILD_SUBREAPER, buf + SUBREAPER_AT, 0, 0, 0)]


WHAT = ["brk(0)", *timers.ITIMER_CALLS, *task.CALLS, "prctl(PR_GET_CHILD_SUBREAPER)"]


def ask(t: Tracee) -> Answers:
    """Ask task t (seized) every question at once; t.answers holds them too."""
    got, raw = t.with_scratch(_calls, WHAT, SIZE)
    first = 1 + len(timers.ITIMER_CALLS)
    t.answers = Answers(brk=got[0], itimers=raw[:timers.ITIMERS_SIZE],
                        task=(got[first:first + len(task.CALLS)], raw[timers.ITIMERS_SIZE:SUBREAPER_AT]),
                        subreaper=struct.unpack_from("<i", raw, SUBREAPER_AT)[0] != 0)
    return t.answers
