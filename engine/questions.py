"""A task's read-only remote questions of a dump, asked in one batch: its brk (engine.mm), its
three itimers (engine.timers) and the task part's prctls and personality (engine.task). A batch
costs a stop and a wakeup of the task whatever it holds; these three were one each. The answers
wait on the Tracee, and each module takes its own there instead of asking again."""
from __future__ import annotations

from dataclasses import dataclass

from engine import task, timers
from engine.ptrace import Tracee
from native import lib


@dataclass(frozen=True, slots=True)
class Answers:
    """What the batch told."""

    brk: int
    itimers: bytes  # three struct itimerval (timers.itimer_calls)
    task: tuple[list[int], bytes]  # the task part's call results and what they wrote (task.calls)


def ask(t: Tracee) -> None:
    """Ask task t (seized, its scratch area kept) every question at once; t.answers holds them."""
    with t.scratch() as buf:
        at = buf + timers.ITIMERS_SIZE
        got = t.batch([(lib.SYS_brk, 0), *timers.itimer_calls(buf), *task.calls(at)],
                      ["brk(0)", *timers.ITIMER_CALLS, *task.CALLS])
        raw = t.read(buf, timers.ITIMERS_SIZE + task.CALLS_SIZE)
    t.answers = Answers(brk=got[0], itimers=raw[:timers.ITIMERS_SIZE],
                        task=(got[1 + len(timers.ITIMER_CALLS):], raw[timers.ITIMERS_SIZE:]))
