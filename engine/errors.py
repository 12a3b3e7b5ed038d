"""One root exception for the engine; subclasses carry the pid and the resource."""
from __future__ import annotations

import errno as _errno
import os
from typing import NoReturn


class CkptError(Exception):
    """Root of every engine error; str() is one line for the user."""


class ProcessGone(CkptError):
    """The task exited (or never existed)."""

    def __init__(self, pid: int) -> None:
        super().__init__(pid)
        self.pid = pid

    def __str__(self) -> str:
        return f"no such process (pid={self.pid})"


class PtraceError(CkptError):
    """A ptrace request failed."""

    def __init__(self, pid: int, request: str, err: int) -> None:
        super().__init__(pid, request, err)
        self.pid, self.request, self.err = pid, request, err

    def __str__(self) -> str:
        return f"ptrace {self.request}: {os.strerror(self.err)} (pid={self.pid})"


def raise_for(pid: int, request: str, err: int) -> NoReturn:
    """Translate an errno from a ptrace-family call in one place."""
    if err == _errno.ESRCH and not os.path.exists(f"/proc/{pid}"):
        raise ProcessGone(pid)
    raise PtraceError(pid, request, err)


class Unsupported(CkptError):
    """State this engine cannot checkpoint yet: names the feature."""
