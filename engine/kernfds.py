"""Fds of kernel objects no path reopens, dump and restore side by side: pidfds (of a live
task, a zombie, or a task already reaped) and namespace fds (/proc/PID/ns/KIND opened).

A pidfd is made again by the restorer with pidfd_open on the restored task (a zombie keeps
its pidfd-able pid until reaped); one of a reaped task on a child of the restorer that is
reaped at once, so it reads Pid -1 as before. A namespace fd names a namespace of the holder or of
an ancestor in the dump (opened again from the rebuilt task's /proc/PID/ns), or one of the
restorer's.
Either is handed to the task like a pipe end (engine.handover)."""
from __future__ import annotations

import os

from engine import proc
from engine.errors import CkptError, Unsupported
from engine.images.files_pb2 import Fd, KernelFd
from native import ffi, lib

PIDFD_LINKS = ("anon_inode:[pidfd]", "pidfd:")  # the second: pidfs (Linux 6.9+) may name it so
NS_KINDS = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children",
            "user", "uts")
O_PIDFD_FLAGS = os.O_NONBLOCK | os.O_EXCL  # PIDFD_NONBLOCK, PIDFD_THREAD: pidfd_open takes them


def _ns_link(link: str) -> str | None:
    """The namespace type of a /proc fd link such as "pid:[4026531836]", else None."""
    head = link.split(":[", 1)[0]
    return head if link.endswith("]") and head in NS_KINDS else None


def dump(pid: int, fd: int, link: str) -> Fd | None:
    """The entry of fd `fd` of task `pid` if it is a pidfd or a namespace fd, else None."""
    if link.startswith(PIDFD_LINKS):
        info = proc.fdinfo(pid, fd)
        flags = int(info["flags"], 8)
        # "Pid:" is the target as our /proc sees it (-1 once reaped); NSpid would give its
        # inner pids, which the restore maps the same way through the table.
        return Fd(fd=fd, cloexec=bool(flags & os.O_CLOEXEC), path=link, flags=flags & ~os.O_CLOEXEC,
                  kernel=KernelFd(pidfd_pid=int(info.get("Pid", "0"))))
    kind = _ns_link(link)
    if kind is None:
        return None
    info = proc.fdinfo(pid, fd)
    flags = int(info["flags"], 8)
    ino = os.stat(f"/proc/{pid}/fd/{fd}").st_ino
    entry = Fd(fd=fd, cloexec=bool(flags & os.O_CLOEXEC), path=link, flags=flags & ~os.O_CLOEXEC)
    # The holder's own, or an ancestor's (a task that unshared for its children and forked
    # them with the fd open), or ours.
    for owner in _ancestors(pid):
        for name in NS_KINDS:
            if _ino(f"/proc/{owner}/ns/{name}") == ino:
                entry.kernel.CopyFrom(KernelFd(ns=name, ns_pid=0 if owner == pid else owner))
                return entry
    for name in NS_KINDS:
        if _ino(f"/proc/self/ns/{name}") == ino:
            entry.kernel.CopyFrom(KernelFd(ns=name, ns_ours=True))
            return entry
    raise Unsupported(f"pid {pid}: fd {fd} is {link}, a namespace of no task from it up to the dumper")


def _ancestors(pid: int) -> list[int]:
    """The task and its ancestors below the dumper (outermost last)."""
    out, me = [], os.getpid()
    while pid > 1 and pid != me:
        out.append(pid)
        pid = proc.stat(pid).ppid
    return out


def _ino(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def open_ours(e: Fd, holder: int, pids: dict[int, int]) -> int:
    """An fd of ours for the object the entry names (the caller closes it): `holder` is the
    rebuilt task as we see it, `pids` maps dumped pids to restored ones (others are kept)."""
    k = e.kernel
    if k.ns:
        owner = pids.get(k.ns_pid, k.ns_pid) if k.ns_pid else holder
        path = f"/proc/self/ns/{k.ns}" if k.ns_ours else f"/proc/{owner}/ns/{k.ns}"
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as err:
            raise CkptError(f"fd {e.fd} of task {holder}: cannot open its namespace {path}: {err.strerror}") from None
    if k.pidfd_pid <= 0:
        return _dead_pidfd(holder)
    target = pids.get(k.pidfd_pid, k.pidfd_pid)
    try:
        return os.pidfd_open(target, e.flags & O_PIDFD_FLAGS)
    except OSError as err:
        raise CkptError(f"fd {e.fd} of task {holder}: pidfd_open({target}) for its pidfd: {err.strerror}") from None


def _dead_pidfd(holder: int) -> int:
    """A pidfd of a task that exited and was reaped (its fdinfo reads Pid: -1), of the holder's
    pid namespace: signals through a pidfd of a task outside the sender's namespace give
    EINVAL, not the ESRCH of a dead task. Our children are born there for the moment."""
    ours = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY | os.O_CLOEXEC)
    theirs = os.open(f"/proc/{holder}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if lib.setns(theirs, lib.CLONE_NEWPID) < 0:
            raise CkptError(f"setns into the pid namespace of task {holder}: {os.strerror(ffi.errno)}")
        try:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        finally:
            lib.setns(ours, lib.CLONE_NEWPID)  # back: later forks of ours are ours again
        try:
            return os.pidfd_open(pid)  # a zombie until we reap it just below
        finally:
            os.waitpid(pid, 0)
    finally:
        os.close(ours)
        os.close(theirs)
