"""memfds (memfd_create(2)), dump and restore side by side: a memfd is named by the device and
inode it had at dump, described (name, size, mode, owner, seals, data runs) in the Mm of
every task that maps it or holds an fd of it, and its data stored once per dump, holes left
out, in pages-memfd-DEV-INO.img. At restore the restorer makes each memfd once, in itself,
fills it, and hands it to every task that had it (engine.handover): areas map it, fds get a
new open file description of it at their flags and offset, so tasks share ONE memfd again.

Seals come last: after the data (F_SEAL_WRITE, GROW, SHRINK), after the mode (F_SEAL_EXEC),
and after every shared area that was mapped writable before a write seal (the kernel keeps
those writable, F_SEAL_FUTURE_WRITE allows them; a new one it would refuse)."""
from __future__ import annotations

import errno
import fcntl
import functools
import os
import stat
import weakref
from pathlib import Path

from engine import images, proc, removed
from engine.errors import CkptError, Unsupported
from engine.handover import Handover
from engine.images.files_pb2 import Fd
from engine.images.mm_pb2 import Memfd, MemfdRun, Mm, Vma

PREFIX = "/memfd:"  # what d_path shows for a memfd: "/memfd:NAME (deleted)" (mm/memfd.c)
PAGE = images.PAGE_SIZE
F_ADD_SEALS, F_GET_SEALS = 1033, 1034  # uapi/linux/fcntl.h
F_SEAL_SEAL, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 0x1, 0x8, 0x10
WRITE_SEALS = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_EXEC = 0x1, 0x2, 0x10  # uapi/linux/memfd.h
HUGETLBFS_MAGIC = 0x958458F6
O_PATH = 0o10000000
FASYNC = 0o20000
CHUNK = 8 << 20

Key = tuple[int, int]  # (device, inode) at dump


def data_path(directory: Path, key: Key) -> Path:
    """The raw pages file of a memfd (named "pages-..." so image tools take it for raw pages)."""
    return directory / f"pages-memfd-{key[0]:x}-{key[1]}.img"


# --- dump ------------------------------------------------------------------------------------

@functools.cache
def _shm_dev() -> int:
    """The device of the kernel's internal tmpfs mount, where every memfd but hugetlb ones lives."""
    fd = os.memfd_create("ckpt-probe", os.MFD_CLOEXEC)
    try:
        return os.fstat(fd).st_dev
    finally:
        os.close(fd)


def is_memfd(link: str, where: str, st: os.stat_result) -> bool:
    """Whether a /proc link (fd or map_files) names a memfd: its path says so, and it lives on
    the internal tmpfs mount, which no path reaches (a removed file named /memfd:x does not).
    A hugetlb memfd is refused here by name."""
    if not (link.startswith(PREFIX) and link.endswith(removed.DELETED)) or st.st_nlink:
        return False
    if st.st_dev == _shm_dev():
        return True
    if proc.fs_type(where) == HUGETLBFS_MAGIC:
        raise Unsupported(f"{where} is a hugetlb memfd ({link}): not supported yet")
    return False


def _open(where: str) -> int:
    """Our own read-only open of a task's memfd; O_NOATIME where allowed: our reads must not
    show in its times."""
    try:
        return os.open(where, os.O_RDONLY | os.O_CLOEXEC | os.O_NOATIME)
    except PermissionError:
        return os.open(where, os.O_RDONLY | os.O_CLOEXEC)


def _describe(where: str, link: str, out: Path) -> Memfd:
    """A memfd as `where` (a /proc link) opens it; its data, if any, goes to its pages file
    unless an earlier task of the dump stored it."""
    fd = _open(where)
    try:
        st = os.fstat(fd)
        m = Memfd(dev=st.st_dev, ino=st.st_ino, name=link[len(PREFIX):-len(removed.DELETED)], size=st.st_size,
                  mode=st.st_mode, uid=st.st_uid, gid=st.st_gid, seals=fcntl.fcntl(fd, F_GET_SEALS))
        for start, end in removed.data_runs(fd, st.st_size):
            start -= start % PAGE
            pages = -(-(end - start) // PAGE)
            last = m.runs[-1] if m.runs else None
            if last is not None and last.offset + last.nr_pages * PAGE >= start:
                last.nr_pages = (start + pages * PAGE - last.offset) // PAGE
            else:
                m.runs.append(MemfdRun(offset=start, nr_pages=pages))
        path = data_path(out, (m.dev, m.ino))
        if m.runs and not path.exists():
            _store(fd, m, path)
        return m
    finally:
        os.close(fd)


def _store(fd: int, m: Memfd, path: Path) -> None:
    """Write the data runs of a memfd, whole pages (zeros past its end), in order; unless the
    file exists: the page worker and the dumper may meet one memfd at once (either writes it all)."""
    try:
        dst = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    try:
        for r in m.runs:
            for off in range(r.offset, r.offset + r.nr_pages * PAGE, CHUNK):
                n = min(CHUNK, r.offset + r.nr_pages * PAGE - off)
                data = os.pread(fd, n, off)
                _write_all(dst, data + bytes(n - len(data)))  # short only at its end
    finally:
        os.close(dst)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def dump(pid: int, vmas: list[Vma], out: Path) -> list[Memfd]:
    """Every memfd the task maps or holds an fd of, described; its areas are marked (memfd,
    dev, inode)."""
    found: dict[Key, Memfd] = {}

    def note(where: str, link: str) -> Key | None:
        st = os.stat(where)
        if not is_memfd(link, where, st):
            return None
        key = (st.st_dev, st.st_ino)
        if key not in found:
            found[key] = _describe(where, link, out)
        return key

    for v in vmas:
        if v.path.startswith(PREFIX):
            where = f"/proc/{pid}/map_files/{v.start:x}-{v.end:x}"
            key = note(where, os.readlink(where))
            if key is not None:
                v.memfd = True
                v.dev, v.inode = key
    for n in os.listdir(f"/proc/{pid}/fd"):
        where = f"/proc/{pid}/fd/{n}"
        try:
            link = os.readlink(where)
        except FileNotFoundError:
            continue
        if link.startswith(PREFIX):
            note(where, link)
    return list(found.values())


def fd_entry(pid: int, fd: int, link: str, info: dict[str, str]) -> Fd | None:
    """The Fd of a memfd fd, or None when the fd is no memfd."""
    where = f"/proc/{pid}/fd/{fd}"
    st = os.stat(where)
    if not is_memfd(link, where, st):
        return None
    flags = int(info["flags"], 8)
    if flags & FASYNC:
        raise Unsupported(f"pid {pid}: fd {fd} ({link}) has O_ASYNC: not supported yet")
    return Fd(fd=fd, cloexec=bool(flags & os.O_CLOEXEC), path=link.removesuffix(removed.DELETED),
              flags=flags & ~os.O_CLOEXEC, pos=int(info["pos"]), mode=st.st_mode, memfd=True, dev=st.st_dev,
              ino=st.st_ino)


# --- restore ---------------------------------------------------------------------------------

def _key(m: Memfd) -> Key:
    return m.dev, m.ino


def _early(v: Vma, m: Memfd) -> bool:
    """A shared area that was mapped writable ("mw") before a write seal: mapped before it."""
    return v.perms[3] == "s" and "mw" in v.vmflags.split() and bool(m.seals & WRITE_SEALS)


class Memfds:
    """The memfds of one restore, each made once in the restorer and handed to every task
    that had it; our fds of them close when this goes."""

    def __init__(self, mms: list[Mm]) -> None:
        self.want: dict[Key, Memfd] = {}
        self.early: dict[Key, int] = {}  # areas still to map before the memfd's seals
        for mm in mms:
            described = {_key(m): m for m in mm.memfds}
            for key, m in described.items():
                if self.want.setdefault(key, m).size != m.size:
                    raise CkptError(f"task {mm.pid}: memfd {m.name} ({key[0]}:{key[1]}) has size {m.size} "
                                    f"in its mm image, {self.want[key].size} in another task's")
            for v in mm.vmas:
                if not v.memfd:
                    continue
                if (v.dev, v.inode) not in described:
                    raise CkptError(f"task {mm.pid}: area {v.start:#x} maps memfd {v.dev}:{v.inode}, "
                                    "which its mm image does not describe")
                if _early(v, described[(v.dev, v.inode)]):
                    self.early[(v.dev, v.inode)] = self.early.get((v.dev, v.inode), 0) + 1
        self.ours: dict[Key, int] = {}
        self._closer = weakref.finalize(self, _close_all, self.ours)

    def make(self, mm: Mm, directory: Path) -> None:
        """Make every memfd the task refers to that no task made yet (`directory`: the images)."""
        for m in mm.memfds:
            key = _key(m)
            if key in self.ours:
                continue
            self.ours[key] = _create(m, data_path(directory, key))
            if not self.early.get(key):
                _seal(self.ours[key], m)

    def give(self, hand: Handover, key: Key, flags: int, pos: int = 0) -> int:
        """A new open file description of a memfd, at these open flags and offset, as an fd
        of the task being rebuilt (close-on-exec, some free number)."""
        if key not in self.ours:
            raise CkptError(f"memfd {key[0]}:{key[1]} is not described by the mm image of any task "
                            "restored so far")
        # Reopening through /proc makes a new description of the same inode, as the task's
        # own reopen would have (proc(5): /proc/PID/fd).
        try:
            ours = os.open(f"/proc/self/fd/{self.ours[key]}", flags | os.O_CLOEXEC)
        except OSError as e:
            raise CkptError(f"memfd {self.want[key].name}: reopening it with flags {flags:#o}: {e.strerror}") from None
        try:
            if pos and not flags & O_PATH:
                os.lseek(ours, pos, os.SEEK_SET)
            return hand.give(ours)
        finally:
            os.close(ours)

    def area(self, hand: Handover, v: Vma) -> int:
        """An fd of the task to map area v with: read-only for a shared area that could not
        become writable ("mw" missing), as the kernel then left it."""
        shared_rw = v.perms[3] == "s" and "mw" in v.vmflags.split()
        return self.give(hand, (v.dev, v.inode), os.O_RDWR if shared_rw else os.O_RDONLY)

    def mapped(self, v: Vma) -> None:
        """Area v is mapped: seal its memfd once no area that must come first is left."""
        key = (v.dev, v.inode)
        if _early(v, self.want[key]):
            self.early[key] -= 1
            if not self.early[key]:
                _seal(self.ours[key], self.want[key])

    def close(self) -> None:
        """Our fds go; the tasks keep theirs."""
        self._closer()


def _close_all(fds: dict[Key, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def _create(m: Memfd, data: Path) -> int:
    """The memfd made again: its name, data (holes kept), size, mode and owner, unsealed."""
    try:
        # MFD_EXEC: exec bits as the mode says (a kernel before 6.3 does not know the flag;
        # vm.memfd_noexec=2 refuses it): chmod sets them right after either way.
        fd = os.memfd_create(m.name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EACCES):
            raise CkptError(f"memfd_create({m.name}): {e.strerror}") from None
        fd = os.memfd_create(m.name, MFD_CLOEXEC | MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, m.size)
        _fill(fd, m, data)
        st = os.fstat(fd)
        if (st.st_uid, st.st_gid) != (m.uid, m.gid):
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, stat.S_IMODE(m.mode))  # after chown, which may clear set-id bits
    except OSError as e:
        os.close(fd)
        raise CkptError(f"memfd {m.name}: restoring its data, mode or owner: {e.strerror}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fill(fd: int, m: Memfd, data: Path) -> None:
    """Write the stored runs back; what is past the memfd's end was padding."""
    want = sum(r.nr_pages for r in m.runs) * PAGE
    try:
        src = os.open(data, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if want:
            raise CkptError(f"{data}: missing (memfd {m.name} has {want} bytes of data)") from None
        return
    try:
        have = os.fstat(src).st_size
        if have != want:
            raise images.ImageError(str(data), have, f"holds {have} bytes, memfd {m.name} has {want}")
        at = 0
        for r in m.runs:
            if r.offset % PAGE or r.offset >= m.size:
                raise images.ImageError(str(data), at, f"a run at {r.offset} of memfd {m.name} "
                                        f"(size {m.size}) is not a page inside it")
            for off in range(r.offset, min(r.offset + r.nr_pages * PAGE, m.size), CHUNK):
                n = min(CHUNK, m.size - off, r.offset + r.nr_pages * PAGE - off)
                chunk = os.pread(src, n, at + off - r.offset)
                view = memoryview(chunk)
                while view:
                    done = os.pwrite(fd, view, off + len(chunk) - len(view))
                    view = view[done:]
            at += r.nr_pages * PAGE
    finally:
        os.close(src)


def _seal(fd: int, m: Memfd) -> None:
    """Add the dumped seals (all at once: F_SEAL_SEAL would refuse any after it)."""
    if m.seals:
        try:
            fcntl.fcntl(fd, F_ADD_SEALS, m.seals)
        except OSError as e:
            raise CkptError(f"memfd {m.name}: F_ADD_SEALS({m.seals:#x}): {e.strerror}") from None
