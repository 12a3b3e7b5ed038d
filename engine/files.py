"""File descriptors of plain files, directories, devices, O_PATH fds, pipes, memfds, pidfds
and namespace fds, plus cwd, root and umask: dump from /proc/PID/{fd,fdinfo}, restore by
remote open/dup3/lseek in the task (pipes, memfds, pidfds and namespace fds are made by the
restorer and handed over: engine.pipes, engine.memfd, engine.kernfds; files and directories
removed while held: engine.removed; open file descriptions several tasks share are opened
once: engine.sharedfds)."""
from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass

from engine.errors import Unsupported
from engine import kernfds, memfd, pipes, proc, removed, sharedfds
from engine.handover import Handover
from engine.images.files_pb2 import Fd, Files, PipeData
from engine.mm import Layout, open_in
from engine.ptrace import Tracee
from engine.removed import DELETED
from native import lib

MQUEUE_MAGIC = 0x19800202  # include/uapi/linux/magic.h
O_PATH = 0o10000000  # uapi asm-generic/fcntl.h


def _umask(pid: int) -> int:
    return int(proc.status_field(pid, "Umask") or "022", 8)


def dump(pid: int, pipe_data: dict[int, PipeData], with_fds: bool = True) -> Files:
    """Every fd of the task (refusing kinds not supported yet, by name; none without with_fds:
    its table is another task's), cwd, root, umask."""
    out = Files(pid=pid, cwd=os.readlink(f"/proc/{pid}/cwd"), root=os.readlink(f"/proc/{pid}/root"),
                umask=_umask(pid))
    if out.root.endswith(DELETED):
        raise Unsupported(f"pid {pid}: its root {out.root} was removed")
    if out.cwd.endswith(DELETED) and removed.removed(out.cwd, os.stat(f"/proc/{pid}/cwd")):
        out.cwd_removed.CopyFrom(removed.cwd_dir(pid))
        out.cwd = out.cwd.removesuffix(DELETED)
    if not with_fds:
        return out
    opened = proc.fds(pid)
    live = [o.link for o in opened.values() if o.link.startswith("/") and not o.link.endswith(DELETED)]
    for fd, o in sorted(opened.items()):
        link = o.link
        if pipes.inode(link):
            entry = Fd(fd=fd, cloexec=bool(o.flags & os.O_CLOEXEC), path=link, flags=o.flags & ~os.O_CLOEXEC,
                       mode=o.st_mode)
            pipes.dump(pid, fd, entry, pipe_data)
            out.fds.append(entry)
            continue
        if not link.startswith("/"):
            kernel = kernfds.dump(pid, fd, link)
            if kernel is None:
                raise Unsupported(f"pid {pid}: fd {fd} is {link}")
            out.fds.append(kernel)
            continue
        mem = memfd.fd_entry(pid, fd, link, proc.fdinfo(pid, fd)) if link.startswith(memfd.PREFIX) else None
        out.fds.append(mem or _dump_path_fd(pid, fd, o, live))
    _mark_dups(pid, out)
    return out


def _dump_path_fd(pid: int, fd: int, st: proc.OpenFd, live: list[str]) -> Fd:
    """An fd opened by a path (`live`: the task's fds' paths that still exist, for links); its
    stat is the open file's itself (a symlink for O_PATH|O_NOFOLLOW)."""
    link, flags = st.link, st.flags
    opath = bool(flags & O_PATH)
    # An O_PATH fd is reopened by its path whatever it names: no I/O state to carry.
    if not opath and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise Unsupported(f"pid {pid}: fd {fd} is {link} (mode {st.st_mode:o})")
    if not opath and stat.S_ISREG(st.st_mode) and proc.fs_type(f"/proc/{pid}/fd/{fd}", st.st_dev) == MQUEUE_MAGIC:
        raise Unsupported(f"pid {pid}: fd {fd} ({link}) is a POSIX message queue: not supported yet")
    entry = Fd(fd=fd, cloexec=bool(flags & os.O_CLOEXEC), path=link, flags=flags & ~os.O_CLOEXEC,
               pos=st.pos, mode=st.st_mode, dev=st.st_dev, ino=st.st_ino)
    if not removed.removed(link, st):
        return entry
    entry.unlinked = True
    entry.path = link.removesuffix(DELETED)
    what = f"pid {pid}: fd {fd}"
    if st.st_nlink > 0 and not stat.S_ISDIR(st.st_mode):
        entry.link = removed.other_link(entry.path, st, live, what)
    elif stat.S_ISREG(st.st_mode):
        entry.size = st.st_size
        entry.extents.extend(removed.extents(f"/proc/{pid}/fd/{fd}", st.st_size, what))
    else:
        raise Unsupported(f"{what}: removed {link} is not a regular file")
    return entry


def _kind(e: Fd) -> tuple[int, int, int]:
    """What the fds of one open file description have in common: the file's device and inode
    (files by path, memfds), the pipe; kernel fds have neither, and kcmp alone tells them apart."""
    return e.dev, e.ino, e.pipe


def _share(pid: int, fds: list[Fd]) -> dict[int, int]:
    """fd -> the first fd sharing its open file description (kcmp within each kind of fd)."""
    first: dict[int, int] = {}
    kinds: dict[tuple[int, int, int], list[Fd]] = {}
    for e in fds:
        kinds.setdefault(_kind(e), []).append(e)
    for group in kinds.values():
        for i, a in enumerate(group):
            if a.fd in first:
                continue
            first[a.fd] = a.fd
            for b in group[i + 1:]:
                if b.fd not in first and sharedfds.same(pid, a.fd, pid, b.fd):
                    first[b.fd] = a.fd
    return first


def _mark_dups(pid: int, files: Files) -> None:
    """Record dups: an fd sharing another's open file description keeps only a reference."""
    first = _share(pid, list(files.fds))
    for e in files.fds:
        if first[e.fd] != e.fd:
            fd, cloexec = e.fd, e.cloexec
            e.Clear()
            e.fd, e.cloexec, e.dup, e.dup_of = fd, cloexec, True, first[fd]


@dataclass(frozen=True, slots=True)
class Sources:
    """What the restorer made for the tasks' fds: pipe ends, memfds, the restored pids
    (dumped pid -> pid as the restorer sees it) pidfds point at, and its copies of the open
    file descriptions tasks share, as they are opened."""

    pipes: pipes.Pipes
    memfds: memfd.Memfds
    pids: dict[int, int]
    shared: sharedfds.Shared


def restore(t: Tracee, lay: Layout, files: Files, src: Sources, hand: Handover) -> None:
    """Close the stub's fds and open the dumped ones at their numbers, positions and flags;
    pipe ends, memfds, pidfds and namespace fds come from the restorer. The handover's pidfd is
    left open, above them all: the caller closes it (hand.close())."""
    keep = hand.keep(max((e.fd for e in files.fds), default=0) + 1)  # above fd 0: two ranges
    t.call("close_range", lib.SYS_close_range, 0, keep - 1, 0)
    t.call("close_range", lib.SYS_close_range, keep + 1, 0xFFFFFFFF, 0)
    temps = removed.Temporary()  # one name per removed file, however many fds open it
    try:
        _open_all(t, lay, list(files.fds), temps, src, hand)
    finally:
        temps.remove()
    _cwd_root(t, lay, files)


def alike(child: Files, parent: Files) -> set[int]:
    """The child's fds a fork from its rebuilt parent gave it as they are: the parent's fd of
    that number and close-on-exec flag shares the open file description (or is the same end of
    a pipe: one description an end at restore, engine.pipes; or the same dup of one alike)."""
    theirs = {e.fd: e for e in parent.fds}
    out: set[int] = set()
    for e in sorted(child.fds, key=lambda e: e.dup):  # dups after the fds they copy
        p = theirs.get(e.fd)
        if p is None or (e.cloexec, e.dup, e.dup_of) != (p.cloexec, p.dup, p.dup_of):
            continue
        if e.dup:
            same = e.dup_of in out
        elif e.pipe:
            same = (e.pipe, e.flags) == (p.pipe, p.flags)
        else:
            same = e.shared != 0 and e.shared == p.shared
        if same:
            out.add(e.fd)
    return out


def restore_forked(t: Tracee, lay: Layout, files: Files, parent: Files, src: Sources, hand: Handover) -> None:
    """The fds of a child forked from its rebuilt parent (it has the parent's, and the
    handover's pidfd): those alike stay, the parent's others are closed, the rest opened as in
    restore(); cwd, root and umask set where they are not the parent's."""
    kept = alike(files, parent)
    top = max((e.fd for e in files.fds), default=-1)
    drop = [e.fd for e in parent.fds if e.fd not in kept]
    if hand.pidfd <= top:  # a number the child's own fds may need
        drop.append(hand.pidfd)
        hand.keep(top + 1)
    if drop:
        t.batch([(lib.SYS_close, fd) for fd in drop], must=False)
    temps = removed.Temporary()
    try:
        _open_all(t, lay, [e for e in files.fds if e.fd not in kept], temps, src, hand)
    finally:
        temps.remove()
    if not _same_fs(files, parent):
        _cwd_root(t, lay, files)


def _same_fs(child: Files, parent: Files) -> bool:
    """Whether cwd, root and umask are the parent's (a forked child has them then)."""
    return ((child.cwd, child.root, child.umask) == (parent.cwd, parent.root, parent.umask)
            and not child.HasField("cwd_removed") and not parent.HasField("cwd_removed"))


def restore_fs(t: Tracee, lay: Layout, files: Files) -> None:
    """cwd, root and umask alone: for a task whose fd table another task's restore fills."""
    _cwd_root(t, lay, files)


O_TMPFILE = 0o20200000  # __O_TMPFILE | O_DIRECTORY (uapi asm-generic/fcntl.h)


def _open_all(t: Tracee, lay: Layout, fds: list[Fd], temps: removed.Temporary, src: Sources,
              hand: Handover) -> None:
    """Every fd at its number: a dup shares the description of the fd it copies, an fd that
    shares one with other tasks gets it from the first of them restored (engine.sharedfds)."""
    for e in fds:
        if e.dup:
            t.call(f"dup3({e.dup_of}, {e.fd})", lib.SYS_dup3, e.dup_of, e.fd, os.O_CLOEXEC if e.cloexec else 0)
            continue
        ours = src.shared.get(t.pid, e)
        if ours is not None:
            _place(t, e, hand.give(ours))
            continue
        _open_one(t, lay, e, temps, src, hand)
        if e.shared:
            src.shared.keep(t.pid, e)


def _open_one(t: Tracee, lay: Layout, e: Fd, temps: removed.Temporary, src: Sources, hand: Handover) -> None:
    """One fd that is no dup, opened anew at its number, flags and offset."""
    if e.pipe:
        ours = src.pipes.end(e)
        # The status flags (O_NONBLOCK...) are the description's: set on our copy of it, they
        # are the task's too, without a remote call.
        fcntl.fcntl(ours, fcntl.F_SETFL, e.flags)
        _place(t, e, hand.give(ours))
        return
    if e.memfd:
        _place(t, e, src.memfds.give(hand, (e.dev, e.ino), e.flags, e.pos))
        return
    if e.HasField("kernel"):
        ours = kernfds.open_ours(e, t.pid, src.pids)
        try:
            _place(t, e, hand.give(ours))
        finally:
            os.close(ours)
        return
    if e.unlinked and e.link:
        temps.link(e)
    elif e.unlinked:
        temps.ghost(e)
    # A file made with O_TMPFILE keeps that in its flags; reopening by path must not
    # (O_TMPFILE holds O_DIRECTORY).
    flags = e.flags & ~O_TMPFILE if stat.S_ISREG(e.mode) else e.flags
    got = open_in(t, lay, e.path, flags)
    if got != e.fd:
        _move(t, got, e.fd, os.O_CLOEXEC)
    if not e.cloexec:
        t.call(f"fcntl({e.fd}, F_SETFD)", lib.SYS_fcntl, e.fd, 2, 0)  # F_SETFD, no FD_CLOEXEC
    if e.pos and not stat.S_ISCHR(e.mode) and not e.flags & O_PATH:
        t.call(f"lseek({e.fd})", lib.SYS_lseek, e.fd, e.pos, os.SEEK_SET)


def _place(t: Tracee, e: Fd, got: int) -> None:
    """Move an fd handed to the task (close-on-exec, at some free number) to its dumped number
    and close-on-exec flag."""
    if got != e.fd:
        _move(t, got, e.fd, os.O_CLOEXEC if e.cloexec else 0)
    elif not e.cloexec:
        t.call(f"fcntl({e.fd}, F_SETFD)", lib.SYS_fcntl, e.fd, 2, 0)  # F_SETFD, no FD_CLOEXEC


def _move(t: Tracee, got: int, fd: int, flags: int) -> None:
    """Fd `got` of the task to number fd (dup3 with flags), in one remote batch with its close."""
    t.batch([(lib.SYS_dup3, got, fd, flags), (lib.SYS_close, got)], [f"dup3({got}, {fd})", f"close({got})"])


def _cwd_root(t: Tracee, lay: Layout, files: Files) -> None:
    """chdir before chroot: the dumped cwd is a path as the restorer sees it. A removed cwd
    is made again for the chdir and removed after it: the task keeps it, removed."""
    t.write(lay.scratch, files.cwd.encode() + b"\0")
    if files.HasField("cwd_removed"):
        made = removed.make_dir(files.cwd, files.cwd_removed)
        try:
            t.call(f"chdir({files.cwd})", lib.SYS_chdir, lay.scratch)
        finally:
            made.rmdir()
    else:
        t.call(f"chdir({files.cwd})", lib.SYS_chdir, lay.scratch)
    if files.root != "/":
        t.write(lay.scratch, files.root.encode() + b"\0")
        t.call(f"chroot({files.root})", lib.SYS_chroot, lay.scratch)
    t.call("umask", lib.SYS_umask, files.umask)
