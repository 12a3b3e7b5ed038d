"""Open file descriptions shared by several tasks (an fd inherited at fork, or passed over a
socket), dump and restore side by side. At dump, fds of different tasks that kcmp(2) calls
one description (KCMP_FILE) get a common `shared` id in the files image. At restore the
first task rebuilt that holds one opens it as engine.files does for any fd; the restorer
takes a copy of it (pidfd_getfd(2)) and hands that to every later holder (engine.handover),
so all share one offset and one set of status flags again. Close-on-exec is per fd: each
holder's own is set where the copy is placed.

Pipe ends are left out: engine.pipes makes each end once and hands it to every holder
already. Dups within one task stay `dup_of` references (engine.files)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from engine import handover
from engine.errors import CkptError
from engine.images.files_pb2 import Fd, Files
from native import ffi, lib

KCMP_FILE = 0  # uapi/linux/kcmp.h

Key = tuple[int, int, int, int]  # (device, inode, flags, offset): cheap, before kcmp


def same(pid_a: int, fd_a: int, pid_b: int, fd_b: int) -> bool:
    """Whether fd_a of task pid_a and fd_b of task pid_b are one open file description."""
    r = int(lib.syscall(lib.SYS_kcmp, ffi.cast("long", pid_a), ffi.cast("long", pid_b),
                        ffi.cast("long", KCMP_FILE), ffi.cast("long", fd_a), ffi.cast("long", fd_b)))
    if r < 0:
        raise CkptError(f"kcmp(KCMP_FILE) of fd {fd_a} of task {pid_a} and fd {fd_b} of task {pid_b}: "
                        f"{os.strerror(ffi.errno)}")
    return r == 0


# --- dump ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Held:
    """One fd of one task: `pid` is a thread of the task as we see it (its fd table)."""

    pid: int
    entry: Fd


def _key(e: Fd) -> Key | None:
    """What every fd of one description has in common (the dump noted the file's device and
    inode: files by path and memfds; kernel fds have none, and kcmp alone tells them apart);
    None for the fds left out."""
    if e.dup or e.pipe:
        return None
    return e.dev, e.ino, e.flags, e.pos


def mark(tasks: list[tuple[int, Files]]) -> None:
    """Give the fds of different tasks that share one open file description a common id
    (`tasks`: each task's files with a thread of it, as we see it; all frozen)."""
    groups: dict[Key, list[_Held]] = {}
    for pid, files in tasks:
        for e in files.fds:
            key = _key(e)
            if key is not None:
                groups.setdefault(key, []).append(_Held(pid, e))
    ids = 0
    for group in groups.values():
        if len({h.pid for h in group}) < 2:
            continue
        firsts: list[_Held] = []  # one fd of each description seen in the group
        for h in group:
            # Two fds of one task are never one description here: dups are marked already.
            match = next((f for f in firsts if f.pid != h.pid and same(f.pid, f.entry.fd, h.pid, h.entry.fd)),
                         None)
            if match is None:
                firsts.append(h)
                continue
            if not match.entry.shared:
                ids += 1
                match.entry.shared = ids
            h.entry.shared = match.entry.shared


# --- restore ---------------------------------------------------------------------------------

def _what(e: Fd) -> tuple[str, int, int, int]:
    """What must agree between the holders of one description in a sound image."""
    return e.path, e.flags, e.pos, e.mode


class Shared:
    """The restorer's copies of the shared descriptions opened so far, by id; they close
    when this goes (the tasks keep theirs)."""

    def __init__(self) -> None:
        self.ours: dict[int, int] = {}
        self.first: dict[int, tuple[int, Fd]] = {}  # id -> (pid, entry) of the task that opened it

    def get(self, pid: int, e: Fd) -> int | None:
        """Our copy of the description of a task's fd, if another holder opened it already."""
        if not e.shared or e.shared not in self.ours:
            return None
        opener, first = self.first[e.shared]
        if _what(first) != _what(e):
            raise CkptError(f"fd {e.fd} of task {pid}: shares description {e.shared} with fd {first.fd} "
                            f"of task {opener}, but its image says {_what(e)}, not {_what(first)}")
        return self.ours[e.shared]

    def keep(self, pid: int, e: Fd) -> None:
        """Take a copy of a shared description the task just opened at fd e.fd."""
        self.ours[e.shared] = handover.take(pid, e.fd, "shared by other tasks")
        self.first[e.shared] = (pid, e)

    def close(self) -> None:
        """Our copies go (the restorer closes them at the end, on failure too)."""
        for fd in self.ours.values():
            os.close(fd)
        self.ours.clear()
