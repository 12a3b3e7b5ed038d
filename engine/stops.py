"""Stop reports, dump and restore side by side. A task in group stop has a report its parent
may take once with wait (WSTOPPED); one the parent took already must not show up again after
restore, where the task is stopped anew. At dump a remote waitid(WNOWAIT) in the parent tells
whether the report is still there; at restore the parent takes the new one itself (a remote
waitid) before it runs, and the SIGCHLD the new stop sent it is dropped."""
from __future__ import annotations

import signal
import struct

from engine.errors import Unsupported
from engine.images.core_pb2 import PendingSignal
from engine.ptrace import Tracee
from engine.tree import Frozen
from native import lib

P_PID = 1
SYS_WAITID = 247  # asm/unistd_64.h: not in native.lib
WSTOPPED, WNOHANG, WNOWAIT = 2, 1, 0x01000000  # uapi/linux/wait.h
SIGINFO = 128
SI_PID = 16  # offset of si_pid in siginfo_t (x86-64: signo, errno, code, pad, then the union)


def reported(parent: Tracee, child: int, buf: int) -> bool:
    """Whether `child` (its pid in the parent's pid namespace) has a stop report the parent has
    not taken yet; asked in the parent without taking it (buf: scratch memory there)."""
    parent.write(buf, bytes(SIGINFO))
    parent.call(f"waitid(P_PID, {child}, WSTOPPED|WNOWAIT)", SYS_WAITID, P_PID, child, buf,
                WSTOPPED | WNOHANG | WNOWAIT, 0)
    (pid,) = struct.unpack_from("<i", parent.read(buf, SIGINFO), SI_PID)
    return pid == child


def take(parent: Tracee, child: int, buf: int, pending: list[PendingSignal]) -> None:
    """In the parent: take the stop report of `child` (stopped again by the restore), and drop
    the SIGCHLD that stop queued unless the parent had one pending at dump (a standard signal
    is queued once: that one is the dumped one)."""
    parent.call(f"waitid(P_PID, {child}, WSTOPPED)", SYS_WAITID, P_PID, child, buf, WSTOPPED | WNOHANG, 0)
    if any(struct.unpack_from("<i", p.siginfo)[0] == signal.SIGCHLD for p in pending):
        return
    # sigset {SIGCHLD}, then a zero timeout: dequeue it if it is there, never wait.
    parent.write(buf, struct.pack("<QQQ", 1 << (signal.SIGCHLD - 1), 0, 0))
    parent.syscall(lib.SYS_rt_sigtimedwait, buf, buf + 24, buf + 8, 8)


def mark(frozen: Frozen) -> None:
    """Set stop_collected on every stopped task of the dump whose live parent (also dumped)
    took its stop report already."""
    for task in frozen.tasks.values():
        e = task.entry
        parent = frozen.tasks.get(e.ppid)
        if not e.stopped or e.zombie or parent is None or parent.zombie:
            continue
        if parent.in_vfork:
            # Asleep since it made its vfork child, it cannot have taken that one's report; it
            # cannot be asked about others'.
            if e.pid != parent.entry.vfork_child:
                raise Unsupported(f"pid {e.pid} is stopped and its parent {e.ppid} waits in vfork: whether the "
                                  "parent took its stop report cannot be asked")
            continue
        asker = parent.acting
        assert asker is not None  # alive and not in vfork: seized
        with asker.scratch() as buf:  # waitid in any thread: children of every thread count
            e.stop_collected = not reported(asker, seen_by(list(e.nspids), list(parent.entry.nspids), e.pid), buf)


def seen_by(child: list[int], parent: list[int], pid: int) -> int:
    """A child's pid as its parent sees it: at the parent's pid namespace level."""
    return child[len(parent) - 1] if child and parent else pid
