"""Signal state only visible from inside a task, read by remote syscalls: every sigaction,
the blocked mask and the alternate signal stack."""
from __future__ import annotations

import os
import signal
import struct

from engine.errors import CkptError
from engine.images.core_pb2 import SigAction, SigAltStack
from engine.ptrace import Tracee

SYS_RT_SIGACTION, SYS_RT_SIGPROCMASK, SYS_SIGALTSTACK = 13, 14, 131
KSIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask (the kernel's layout)
STACK_T = struct.Struct("<Qi4xQ")  # ss_sp, ss_flags, ss_size
NSIG = 64
SIGSET = 8  # bytes of a kernel sigset on x86-64


def _call(t: Tracee, what: str, nr: int, *args: int) -> None:
    rc = t.syscall(nr, *args)
    if rc < 0:
        raise CkptError(f"pid {t.pid}: remote {what}: {os.strerror(-rc)}")


def dump(t: Tracee) -> tuple[list[SigAction], int, SigAltStack]:
    """The task's sigactions (all but SIGKILL and SIGSTOP), blocked mask and sigaltstack."""
    actions = []
    with t.scratch() as buf:
        for sig in range(1, NSIG + 1):
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            _call(t, f"rt_sigaction({sig})", SYS_RT_SIGACTION, sig, 0, buf, SIGSET)
            handler, flags, restorer, mask = KSIGACTION.unpack(t.read(buf, KSIGACTION.size))
            actions.append(SigAction(sig=sig, handler=handler, flags=flags, restorer=restorer, mask=mask))
        _call(t, "rt_sigprocmask", SYS_RT_SIGPROCMASK, signal.SIG_BLOCK, 0, buf, SIGSET)
        (blocked,) = struct.unpack("<Q", t.read(buf, 8))
        _call(t, "sigaltstack", SYS_SIGALTSTACK, 0, buf)
        sp, flags, size = STACK_T.unpack(t.read(buf, STACK_T.size))
    return actions, blocked, SigAltStack(sp=sp, flags=flags, size=size)
