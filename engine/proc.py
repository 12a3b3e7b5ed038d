"""The engine's reading of /proc: task identity and memory areas."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from engine.errors import CkptError, ProcessGone
from native import ffi, lib


@dataclass(frozen=True, slots=True)
class TaskStat:
    """Fields of /proc/PID/stat the engine uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    flags: int


@dataclass(frozen=True, slots=True)
class Area:
    """One line of /proc/PID/maps with its smaps VmFlags."""

    start: int
    end: int
    perms: str
    pgoff: int
    path: str
    vmflags: str
    inode: int = 0


def read(pid: int, name: str) -> str:
    """A /proc/PID file's text (pid may be a thread's id); ProcessGone once the task is."""
    return _read(pid, name)


_HELD = ("stat", "status")  # what held() keeps
_held: dict[tuple[int, str], str] | None = None
_types: dict[int, int] = {}  # device -> its file system magic, within held()
_parsed: dict[int, dict[str, str]] = {}  # pid -> its status parsed, within held()


@contextmanager
def held() -> Iterator[None]:
    """Within: each task's stat and status are read once and kept (its state cannot change
    while it is frozen: a dump reads them a dozen times a task), and so is the file system
    type of each device fs_type is asked about."""
    global _held
    _held = {}
    try:
        yield
    finally:
        _held = None
        _types.clear()
        _parsed.clear()


def _read(pid: int, name: str) -> str:
    if _held is not None and name in _HELD:
        text = _held.get((pid, name))
        if text is None:
            text = _held[(pid, name)] = _read_now(pid, name)
        return text
    return _read_now(pid, name)


def _read_now(pid: int, name: str) -> str:
    try:
        # errors="replace": a task may name itself with any bytes (comm is not UTF-8 by contract).
        with open(f"/proc/{pid}/{name}", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid) from None


def stat(pid: int) -> TaskStat:
    """Parse /proc/PID/stat (comm may hold spaces and parentheses)."""
    raw = _read(pid, "stat")
    rest = raw[raw.rindex(")") + 2:].split()
    return TaskStat(pid, raw[raw.index("(") + 1:raw.rindex(")")], rest[0], int(rest[1]), int(rest[2]),
                    int(rest[3]), int(rest[6]))


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status as name -> value (a thread's own with its tid); parsed once within
    held() (a dump asks for it about five times a task): the caller gets its own copy."""
    if _held is not None:
        if pid not in _parsed:
            _parsed[pid] = _parse_status(_read(pid, "status"))
        return dict(_parsed[pid])
    return _parse_status(_read_now(pid, "status"))


def _parse_status(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def status_field(pid: int, key: str) -> str | None:
    """One field of /proc/PID/status (None when absent), without parsing the rest."""
    text = "\n" + _read(pid, "status")
    at = text.find(f"\n{key}:")
    if at < 0:
        return None
    start = at + len(key) + 2
    end = text.find("\n", start)
    return text[start:end if end >= 0 else len(text)].strip()


def levels(st: dict[str, str], key: str, default: int) -> list[int]:
    """An id at every pid namespace level, outermost first (NSpid, NSpgid, NSsid of status)."""
    return [int(x) for x in st[key].split()] if key in st else [default]


def threads(pid: int) -> int:
    """How many threads the task has."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise ProcessGone(pid) from None


def children(pid: int) -> list[int]:
    """Children of every thread of the task."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread exited since the listing; the process may well live on
    return out


def maps(pid: int) -> list[Area]:
    """Every memory area from /proc/PID/maps (cheaper than smaps: no VmFlags)."""
    out: list[Area] = []
    for line in _read(pid, "maps").splitlines():
        f = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in f[0].split("-"))
        out.append(Area(start, end, f[1], int(f[2], 16), f[5].strip() if len(f) > 5 else "", ""))
    return out


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat split into fields after comm; field n of proc(5) is index n - 3."""
    raw = _read(pid, "stat")
    return raw[raw.rindex(")") + 2:].split()


def vmas(pid: int) -> list[Area]:
    """Every memory area, from /proc/PID/smaps (maps fields plus VmFlags)."""
    return _parse_smaps(_read(pid, "smaps"))


def _parse_smaps(text: str) -> list[Area]:
    """The areas of an smaps text. VmFlags is the last line of each area's block (and a path's
    newline shows escaped), so splitting at it leaves each area's flags followed by the next
    area's header line: a few splits a task instead of a Python step per line (~20 a block)."""
    out: list[Area] = []
    blocks = text.split("\nVmFlags:")
    head = blocks[0].partition("\n")[0]
    for block in blocks[1:]:
        flags, _, rest = block.partition("\n")
        f = head.split(maxsplit=5)
        if len(f) < 5 or "-" not in f[0]:
            raise CkptError(f"smaps: an area line expected before VmFlags, got {head[:80]!r}")
        start, _, end = f[0].partition("-")
        out.append(Area(int(start, 16), int(end, 16), f[1], int(f[2], 16), f[5].strip() if len(f) > 5 else "",
                        flags.strip(), int(f[4])))
        head = rest.partition("\n")[0]
    return out


@dataclass(frozen=True, slots=True)
class OpenFd:
    """One fd as /proc shows it: its link, stat(2) of the open file, fdinfo flags and position."""

    link: str
    flags: int
    pos: int
    st_mode: int
    st_dev: int
    st_ino: int
    st_nlink: int
    st_size: int


FDS_MAX = 1 << 20  # fds a task may have (fs.nr_open's default)


def fds(pid: int) -> dict[int, OpenFd]:
    """Every fd of the task, by number, read in one native call (native/fds.c); an fd closed
    meanwhile is left out. ProcessGone once the task is."""
    room = 64
    while True:
        buf = ffi.new("struct ckpt_fd[]", room)
        n = lib.ckpt_read_fds(pid, buf, room)
        if n == -28 and room < FDS_MAX:  # ENOSPC
            room *= 8
            continue
        if n < 0:
            if not os.path.exists(f"/proc/{pid}"):
                raise ProcessGone(pid)
            raise CkptError(f"pid {pid}: reading its fds: {os.strerror(-n)}")
        out = {}
        for e in buf[0:n]:
            link = (ffi.unpack(e.link, e.link_len).decode(errors="surrogateescape") if e.link_len >= 0
                    else os.readlink(f"/proc/{pid}/fd/{e.fd}"))
            out[e.fd] = OpenFd(link, e.flags, e.pos, e.mode, e.dev, e.ino, e.nlink, e.size)
        return out


def fdinfo(pid: int, fd: int) -> dict[str, str]:
    """/proc/PID/fdinfo/FD as key -> value, both stripped."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}


def fs_type(path: str, dev: int | None = None) -> int:
    """The magic number of the file system a path (a /proc link, followed) is on; with its
    device, asked once a device within held() (device numbers are reused after an unmount:
    not longer)."""
    if dev is not None and _held is not None and dev in _types:
        return _types[dev]
    buf = ffi.new("struct statfs *")
    if lib.statfs(path.encode(), buf) < 0:
        raise CkptError(f"statfs({path}): {os.strerror(ffi.errno)}")
    if dev is not None and _held is not None:
        _types[dev] = int(buf.f_type)
    return int(buf.f_type)
