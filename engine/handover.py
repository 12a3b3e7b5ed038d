"""Fds of the restorer given to a task being rebuilt: pidfd_getfd in the task, on a pidfd of
the restorer that every stub inherited at its fork (inside a new pid namespace the restorer
has no pid the task could open a pidfd of). The copy shares the restorer's open file
description: pipe ends and shared memory objects stay one object across tasks."""
from __future__ import annotations

import os

from engine.errors import CkptError
from engine.ptrace import Tracee
from native import ffi, lib

F_DUPFD_CLOEXEC = 1030
PIDFD_THREAD = os.O_EXCL  # pidfd_open(2): a pidfd of that thread, not of its process


class Handover:
    """One task's way to take fds of the restorer."""

    def __init__(self, t: Tracee, inherited: int) -> None:
        self.t, self.pidfd = t, inherited

    def keep(self, above: int) -> int:
        """Move the inherited pidfd above every dumped fd (their numbers are taken one by
        one after this); its new number."""
        self.pidfd = self.t.call("fcntl(F_DUPFD_CLOEXEC)", lib.SYS_fcntl, self.pidfd, F_DUPFD_CLOEXEC, above)
        return self.pidfd

    def give(self, ours: int) -> int:
        """A copy of our fd in the task (close-on-exec, at some free number)."""
        return self.t.call(f"pidfd_getfd({ours})", lib.SYS_pidfd_getfd, self.pidfd, ours, 0)

    def close(self) -> None:
        """The task's pidfd of us goes."""
        if self.pidfd >= 0:
            self.t.call("close(pidfd)", lib.SYS_close, self.pidfd)
            self.pidfd = -1


def take(pid: int, fd: int, what: str, pidfd_flags: int = 0) -> int:
    """The other way round: a copy of fd `fd` of task `pid` in the restorer (pidfd_getfd);
    `what` names the fd in an error. pidfd_flags: for pidfd_open (PIDFD_THREAD: pid is a
    thread's, whose fd table is used even when its leader has exited)."""
    pidfd = os.pidfd_open(pid, pidfd_flags)
    try:
        got = int(lib.syscall(lib.SYS_pidfd_getfd, ffi.cast("long", pidfd), ffi.cast("long", fd),
                              ffi.cast("long", 0)))
        err = ffi.errno
    finally:
        os.close(pidfd)
    if got < 0:
        raise CkptError(f"pidfd_getfd of fd {fd} ({what}) of task {pid}: {os.strerror(err)}")
    return got
