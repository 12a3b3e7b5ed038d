"""Checkpoint images: protobuf messages in framed files, one image kind per file.

File grammar (all integers little-endian):

    image   := header entry*
    header  := "CKPT" kind-magic:u32 version:u32
    entry   := length:u32 message[length]          (a protobuf message of the kind's type)
    pages-PID.img := page[4096]*                   (raw, no header: the pages of the runs of
                                                    the task's PageMap entry, in order; absent
                                                    and zero pages are not stored)
    pages-memfd-DEV-INO.img := page[4096]*         (raw: one memfd's data, the runs of its
                                                    Memfd entry in order, written once per dump
                                                    however many tasks hold it)

Files of a checkpoint directory: inventory.img (one Inventory), tree.img (one Tree: every
task, live or zombie, parents first), pipes.img (PipeData entries: queued pipe contents),
ns.img (one Namespaces: the namespaces the tasks made, with their state); one entry per live
task, each naming its pid, in core.img (Core), files.img (Files), task.img (Task) and
timers.img (Timers), and per memory in mm.img (Mm) and pagemap.img (PageMap): a vfork child has
none there, its memory is its parent's (tree.img says whose); and pages-PID.img for each task
with stored pages of its own. Per-task state shares a file per kind because a file costs more to create
than its entries to write (20-500 µs on ext4 here). The generated *_pb2 modules come from the .proto files beside this one
by `python -m engine.images.generate`; a test proves they are current.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from google.protobuf.message import DecodeError, Message

from engine.errors import CkptError
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files, PipeData
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageMap
from engine.images.ns_pb2 import Namespaces
from engine.images.task_pb2 import Task
from engine.images.timers_pb2 import Timers
from engine.images.tree_pb2 import Tree

MAGIC = b"CKPT"
VERSION = 2  # 2: per-task kinds share one file per kind
HEADER = struct.Struct("<4sII")
LENGTH = struct.Struct("<I")
PAGE_SIZE = 4096


class ImageError(CkptError):
    """An image that cannot be read: where, and why."""

    def __init__(self, path: str, offset: int, why: str) -> None:
        super().__init__(path, offset, why)
        self.path, self.offset, self.why = path, offset, why

    def __str__(self) -> str:
        return f"{self.path}: at byte {self.offset}: {self.why}"


@dataclass(frozen=True, slots=True)
class Kind:
    """One image kind: its magic, message type and file name pattern."""

    name: str
    magic: int
    message: type[Message]
    pattern: str  # its file name
    per_task: bool = False  # one entry per live task, each with its pid
    memory: bool = False  # per task, but none for a task on another's memory (a vfork child)


KINDS = {k.name: k for k in (
    Kind("inventory", 0x31564E49, Inventory, "inventory.img"),  # "INV1"
    Kind("core", 0x31524F43, Core, "core.img", True),  # "COR1"
    Kind("mm", 0x31304D4D, Mm, "mm.img", True, True),  # "MM01"
    Kind("pagemap", 0x31504D50, PageMap, "pagemap.img", True, True),  # "PMP1"
    Kind("files", 0x31534946, Files, "files.img", True),  # "FIS1"
    Kind("task", 0x31534154, Task, "task.img", True),  # "TAS1"
    Kind("timers", 0x31524D54, Timers, "timers.img", True),  # "TMR1"
    Kind("tree", 0x31455254, Tree, "tree.img"),  # "TRE1"
    Kind("pipes", 0x31455050, PipeData, "pipes.img"),  # "PPE1"
    Kind("ns", 0x3153534E, Namespaces, "ns.img"),  # "NSS1"
)}
BY_MAGIC = {k.magic: k for k in KINDS.values()}


def path_of(directory: Path, kind: str) -> Path:
    """Where the image of that kind lives."""
    return directory / KINDS[kind].pattern


PAGES = "pages-{pid}.img"
PACKED = "pages-of-{writer}.img"  # small tasks' pages, one after another (PageMap.pages, pages_at)


def pages_path(directory: Path, pid: int) -> Path:
    """The raw pages file of a task."""
    return directory / PAGES.format(pid=pid)


def pages_of(directory: Path, pagemap: Any, owner: int) -> tuple[Path, int]:
    """The file that holds a page map's runs (of task `owner`), and where they begin in it."""
    if not pagemap.pages:
        return pages_path(directory, owner), 0
    name = pagemap.pages
    if "/" in name or not name.startswith("pages-") or not name.endswith(".img"):
        raise ImageError(str(path_of(directory, "pagemap")), 0,
                         f"task {owner}: its pages file {name!r} is not a pages-*.img of the image directory")
    if pagemap.pages_at % PAGE_SIZE:
        raise ImageError(str(path_of(directory, "pagemap")), 0,
                         f"task {owner}: its pages begin at byte {pagemap.pages_at} of {name}, not at a page")
    return directory / name, pagemap.pages_at


def write(path: Path, kind: str, messages: list[Any]) -> None:
    """Write a framed image file, readable by its owner only."""
    k = KINDS[kind]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(HEADER.pack(MAGIC, k.magic, VERSION))
        for m in messages:
            if not isinstance(m, k.message):
                raise TypeError(f"{kind} image takes {k.message.__name__}, not {type(m).__name__}")
            data = m.SerializeToString()
            f.write(LENGTH.pack(len(data)) + data)


def read(path: Path, kind: str | None = None) -> tuple[Kind, list[Any]]:
    """Read a framed image; its kind comes from its magic (and must be `kind` if given)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImageError(str(path), 0, f"cannot read: {e.strerror}") from None
    if len(raw) < HEADER.size:
        raise ImageError(str(path), 0, f"truncated header ({len(raw)} bytes)")
    magic, kmagic, version = HEADER.unpack_from(raw)
    if magic != MAGIC or kmagic not in BY_MAGIC:
        raise ImageError(str(path), 0, "not a ckpt image (bad magic)")
    k = BY_MAGIC[kmagic]
    if kind and k.name != kind:
        raise ImageError(str(path), 4, f"a {k.name} image where a {kind} image was expected")
    if version != VERSION:
        raise ImageError(str(path), 8, f"image version {version}, this engine reads {VERSION}")
    return k, list(_entries(path, raw, k))


def read_tasks(directory: Path, kind: str, pids: list[int]) -> dict[int, Any]:
    """The per-task image of that kind: exactly one entry for each of `pids`, by pid."""
    path = path_of(directory, kind)
    _, entries = read(path, kind)
    out: dict[int, Any] = {}
    for i, m in enumerate(entries):
        if m.pid in out or m.pid not in pids:
            raise ImageError(str(path), 0, f"entry {i} is of task {m.pid}, "
                             f"{'given twice' if m.pid in out else 'not a live task of the inventory'}")
        out[m.pid] = m
    missing = sorted(set(pids) - set(out))
    if missing:
        raise ImageError(str(path), 0, f"no entry for task {missing[0]}")
    return out


def _entries(path: Path, raw: bytes, k: Kind) -> Iterator[Any]:
    off = HEADER.size
    while off < len(raw):
        if off + LENGTH.size > len(raw):
            raise ImageError(str(path), off, "truncated entry length")
        (n,) = LENGTH.unpack_from(raw, off)
        if off + LENGTH.size + n > len(raw):
            raise ImageError(str(path), off, f"entry of {n} bytes runs past the end of the file")
        m = k.message()
        try:
            m.ParseFromString(raw[off + LENGTH.size:off + LENGTH.size + n])
        except DecodeError as e:
            raise ImageError(str(path), off, f"undecodable {k.message.__name__}: {e}") from None
        yield m
        off += LENGTH.size + n
