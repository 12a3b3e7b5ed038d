"""Pipes: their queued contents are copied at dump without being consumed (tee from a read
end opened through /proc), and at restore the restorer makes each pipe once, refills it,
and hands its ends to every task that held them (engine.handover), so tasks that shared
an end share one open file description again."""
from __future__ import annotations

import fcntl
import os

from engine.errors import CkptError
from engine.images.files_pb2 import Fd, PipeData
from native import ffi, lib

SPLICE_F_NONBLOCK = 2
ACCESS = 3  # O_ACCMODE


def inode(link: str) -> int:
    """The pipe's inode from a /proc/PID/fd link "pipe:[N]" (0 when not a pipe)."""
    return int(link[6:-1]) if link.startswith("pipe:[") and link.endswith("]") else 0


def dump(pid: int, fd: int, entry: Fd, seen: dict[int, PipeData]) -> None:
    """Record the pipe of this fd, and its queued data once per pipe."""
    entry.pipe = ino = inode(entry.path)
    entry.path = ""
    if ino in seen:
        return
    # A read end of our own on the same pipe: tee copies what is queued without taking it.
    src = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = fcntl.fcntl(src, fcntl.F_GETPIPE_SZ)
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, size)
            n = int(lib.syscall(lib.SYS_tee, ffi.cast("long", src), ffi.cast("long", w), ffi.cast("long", size),
                                ffi.cast("long", SPLICE_F_NONBLOCK)))
            if n < 0 and ffi.errno != 11:  # EAGAIN: nothing queued
                raise CkptError(f"pid {pid}: fd {fd}: tee of pipe {ino}: {os.strerror(ffi.errno)}")
            data = os.read(r, n) if n > 0 else b""
        finally:
            os.close(r)
            os.close(w)
    finally:
        os.close(src)
    seen[ino] = PipeData(id=ino, size=size, data=data)


class Pipes:
    """The restorer's side: every dumped pipe made once and refilled, its ends handed over."""

    def __init__(self, pipes: list[PipeData]) -> None:
        self.ends: dict[int, tuple[int, int]] = {}
        try:
            for p in pipes:
                r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                self.ends[p.id] = (r, w)
                if p.size:
                    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, p.size)
                if p.data and os.write(w, p.data) != len(p.data):
                    raise CkptError(f"pipe {p.id}: its {len(p.data)} queued bytes do not fit again")
                # Blocking or not is the tasks' flag (one description each end): set at handover.
                for end in (r, w):
                    os.set_blocking(end, True)
        except BaseException:
            self.close()
            raise

    def end(self, e: Fd) -> int:
        """Our fd of the end this task's fd is (by its access mode)."""
        if e.pipe not in self.ends:
            raise CkptError(f"fd {e.fd}: pipe {e.pipe} is not in pipes.img")
        r, w = self.ends[e.pipe]
        return w if e.flags & ACCESS == os.O_WRONLY else r

    def close(self) -> None:
        """Our ends go; the tasks keep theirs."""
        for r, w in self.ends.values():
            os.close(r)
            os.close(w)
        self.ends.clear()
