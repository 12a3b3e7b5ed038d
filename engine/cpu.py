"""CPU state, dump and restore side by side: general registers (fs/gs base included),
the extended FPU state (xstate) and the rseq registration."""
from __future__ import annotations

from typing import Any

from engine.images.core_pb2 import Core, Regs, Rseq
from engine.ptrace import Tracee
from native import ffi, lib

RSEQ_FLAG_UNREGISTER = 1


def regs_message(regs: Any) -> Regs:
    """A struct user_regs_struct as the image's Regs."""
    return Regs(**{f: getattr(regs, f) for f in Regs.DESCRIPTOR.fields_by_name})


def regs_struct(msg: Regs) -> Any:
    """The image's Regs as a struct user_regs_struct."""
    regs = ffi.new("struct user_regs_struct *")
    for f in Regs.DESCRIPTOR.fields_by_name:
        setattr(regs, f, getattr(msg, f))
    return regs


def dump(t: Tracee, core: Core) -> None:
    """Registers as the task was stopped (restart rules are applied at restore), xstate, rseq."""
    fill(core, t.saved, t.xstate(), t.rseq())


def fill(core: Core, regs: Any, xstate: bytes, rseq: tuple[int, int, int]) -> None:
    """The image's CPU state from values read one way or another (engine.asleep reads them
    where ptrace cannot)."""
    core.regs.CopyFrom(regs_message(regs))
    core.xstate = xstate
    ptr, size, sig = rseq
    core.rseq.CopyFrom(Rseq(ptr=ptr, size=size, sig=sig))


def unregister_rseq(t: Tracee) -> None:
    """Drop the stub's inherited rseq area before its memory goes (KERNEL-FACTS: rseq)."""
    ptr, size, sig = t.rseq()
    if ptr:
        t.call("rseq(unregister)", lib.SYS_rseq, ptr, size, RSEQ_FLAG_UNREGISTER, sig)


def restore(t: Tracee, core: Core) -> None:
    """Register rseq (a remote call: before the registers), then xstate; the general
    registers are put back at detach, which resolves an interrupted syscall."""
    if core.rseq.ptr:
        t.call("rseq(register)", lib.SYS_rseq, core.rseq.ptr, core.rseq.size, 0, core.rseq.sig)
    t.set_xstate(core.xstate)
    t.saved = regs_struct(core.regs)
