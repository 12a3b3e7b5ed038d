"""Files removed while a task held them, dump and restore side by side: a ghost (an unlinked
file with no name left) keeps its size and data extents and comes back sparse; an unlinked
file that still has another hard link is reopened through that link; a removed working
directory is made again for the task to enter, then removed again.

At restore the names these need exist only while the task opens or enters them
(`Temporary`); the restorer makes them, so paths are as the restorer sees them, as
everywhere in engine.files."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterator, Protocol

from engine.errors import CkptError, Unsupported
from engine.images.files_pb2 import Extent, Fd, RemovedDir

DELETED = " (deleted)"  # what d_path(9) appends to an unlinked dentry's path
GHOST_MAX = 64 << 20  # data of an unlinked file kept in the image, at the most (holes are free)


class Inode(Protocol):
    """What these functions look at of a stat(2) result (os.stat_result, proc.OpenFd)."""

    @property
    def st_dev(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...


def removed(link: str, st: Inode) -> bool:
    """Whether a /proc link names a removed file, not a live one whose name ends so."""
    if not link.endswith(DELETED):
        return False
    try:
        now = os.lstat(link)
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)


def extents(path: str, size: int, what: str) -> list[Extent]:
    """The data runs of a file up to `size`, holes left out (lseek(2) SEEK_DATA/SEEK_HOLE);
    `path` is a /proc fd link, opened anew so the task's file offset stays as it is."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out: list[Extent] = []
        stored = 0
        for start, end in data_runs(fd, size):
            stored += end - start
            if stored > GHOST_MAX:
                raise Unsupported(f"{what}: unlinked file with more than {GHOST_MAX} bytes of data")
            out.append(Extent(offset=start, data=_pread(fd, end - start, start)))
        return out
    finally:
        os.close(fd)


def data_runs(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of data of an open file up to `size`, in order: holes are
    left out (lseek(2) SEEK_DATA/SEEK_HOLE). Moves the fd's offset."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole from `off` to the end
                return
            raise
        # A file system without hole tracking reports one run: the whole file.
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end <= start:  # the file shrank under us
            return
        yield start, end
        off = end


def _pread(fd: int, n: int, off: int) -> bytes:
    parts = []
    while n > 0:
        got = os.pread(fd, n, off)
        if not got:  # the file shrank under us: what is left reads as zeros
            break
        parts.append(got)
        n, off = n - len(got), off + len(got)
    return b"".join(parts)


def other_link(path: str, st: Inode, fd_paths: list[str], what: str) -> str:
    """A live name of the inode `st` an unlinked `path` was: one of the task's fds' paths
    or an entry of the directory `path` was in (where hard links usually live)."""
    candidates = list(fd_paths)
    parent = os.path.dirname(path)
    try:
        with os.scandir(parent) as it:
            candidates += [e.path for e in it if e.inode() == st.st_ino]
    except OSError:
        pass  # the directory went too: only the fds are left to look at
    for c in candidates:
        try:
            cst = os.lstat(c)
        except OSError:
            continue
        if (cst.st_dev, cst.st_ino) == (st.st_dev, st.st_ino):
            return c
    raise Unsupported(f"{what}: unlinked {path} has {st.st_nlink} other link(s), none in {parent} or open by the task")


def cwd_dir(pid: int) -> RemovedDir:
    """What a removed working directory is made again with."""
    st = os.stat(f"/proc/{pid}/cwd")
    return RemovedDir(mode=st.st_mode, uid=st.st_uid, gid=st.st_gid)


class Temporary:
    """Names made for a restore and removed again once the task holds what they name."""

    def __init__(self) -> None:
        self.made: dict[str, Path] = {}  # the path dumped -> the name made for it

    def ghost(self, e: Fd) -> None:
        """Make an unlinked file again at its old path: its size, its data runs, its holes."""
        if e.path in self.made:  # another fd of the same file
            return
        path = _free(e.path)
        for x in e.extents:
            if x.offset + len(x.data) > e.size:
                raise CkptError(f"image of unlinked file {path}: data at {x.offset} runs past its size {e.size}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.made[e.path] = path
        try:
            os.ftruncate(fd, e.size)  # all a hole, until the runs are written
            for x in e.extents:
                _pwrite(fd, x.data, x.offset)
            os.fchmod(fd, stat.S_IMODE(e.mode))  # the exact mode: os.open's is masked by our umask
        finally:
            os.close(fd)

    def link(self, e: Fd) -> None:
        """Give an unlinked file its old name again, as a hard link of its surviving name."""
        if e.path in self.made:
            return
        path = _free(e.path)
        try:
            os.link(e.link, path, follow_symlinks=False)
        except OSError as err:
            raise CkptError(f"cannot restore unlinked {path} through its other link {e.link}: "
                            f"{err.strerror}") from None
        self.made[e.path] = path

    def remove(self) -> None:
        """Remove every name made: the files stay open in the task, unlinked as dumped."""
        for path in self.made.values():
            path.unlink()
        self.made.clear()


def _free(name: str) -> Path:
    """The path of an unlinked file, which must not have been taken again since."""
    path = Path(name)
    if os.path.lexists(path):
        raise CkptError(f"cannot restore unlinked file {path}: that path exists again")
    return path


def _pwrite(fd: int, data: bytes, off: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view, off = view[n:], off + n


def make_dir(path: str, d: RemovedDir) -> Path:
    """Make a removed directory again (its mode and owner) for a task to enter; rmdir it after."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700)
    except OSError as err:
        raise CkptError(f"cannot restore the removed working directory {path}: {err.strerror}") from None
    try:
        os.chown(p, d.uid, d.gid)
        os.chmod(p, stat.S_IMODE(d.mode))  # after chown, which may clear set-id bits
    except BaseException:
        p.rmdir()
        raise
    return p
