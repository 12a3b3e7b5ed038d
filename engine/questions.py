"""A task's read-only remote questions of a dump, asked in one batch: its brk (engine.mm), its
three itimers (engine.timers), the task part's prctls and personality (engine.task) and its
subreaper flag (engine.tree's entry). A batch costs a stop and a wakeup of the task whatever it
holds; the batch also maps the task's scratch area when it has none yet (Tracee.with_scratch).
The answers wait on the Tracee, and each module takes its own there instead of asking again."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from engine import task, timers
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
