"""Restore of processes without children (any number of threads): each comes back as a child
of the caller with its own pid (clone3 set_tid), rebuilt by remote syscalls in a stub, then
detached. A failed restore leaves no process behind."""
from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from google.protobuf.message import Message

from engine import cpu, files, images, mm, signals, threads
from engine.errors import CkptError
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageRun
from engine.parts import PARTS
from engine.ptrace import Tracee
from native import ffi, lib

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class TaskImages:
    """Everything dumped about one task, read and checked before any process is created."""

    core: Core
    mm: Mm
    runs: list[PageRun]
    files: Files
    pages: Path
    parts: dict[str, Message]  # image kind -> its message, for each of PARTS


def _one(directory: Path, kind: str, pid: int | None, of: type[M]) -> M:
    """The single entry of an image that holds exactly one."""
    path = images.path_of(directory, kind, pid)
    _, entries = images.read(path, kind)
    if len(entries) != 1 or not isinstance(entries[0], of):
        raise images.ImageError(str(path), 0, f"expected one {kind} entry, found {len(entries)}")
    return entries[0]


def load(directory: Path) -> tuple[list[int], dict[int, TaskImages]]:
    """The roots and every task's images; a missing or damaged image is an error here."""
    if not (directory / "inventory.img").exists():
        raise CkptError(f"{directory}: no inventory.img (not a checkpoint directory?)")
    inv = _one(directory, "inventory", None, Inventory)
    tasks: dict[int, TaskImages] = {}
    for pid in inv.pids:
        _, runs = images.read(images.path_of(directory, "pagemap", pid), "pagemap")
        pages = images.pages_path(directory, pid)
        stored = sum(r.nr_pages for r in runs) * images.PAGE_SIZE
        size = pages.stat().st_size if pages.exists() else -1
        if size != stored:
            raise images.ImageError(str(pages), max(size, 0),
                                    f"holds {size} bytes, the page map says {stored}")
        tasks[pid] = TaskImages(_one(directory, "core", pid, Core), _one(directory, "mm", pid, Mm), runs,
                                _one(directory, "files", pid, Files), pages,
                                {p.KIND: _one(directory, p.KIND, pid, images.KINDS[p.KIND].message) for p in PARTS})
    return list(inv.roots), tasks


def _spawn(pid: int) -> int:
    """A stub child with exactly this pid."""
    tids = ffi.new("int[]", [pid])
    got = int(lib.ckpt_clone_stub(tids, 1, 0))
    if got == -errno.EEXIST:
        raise CkptError(f"pid {pid} is already taken: cannot restore it with its pid")
    if got < 0:
        raise CkptError(f"clone3 with set_tid={pid}: {os.strerror(-got)}")
    return got


def _rebuild(t: Tracee, img: TaskImages) -> list[Tracee]:
    """Turn the stub into the dumped task; return its other threads (stopped, traced)."""
    core = img.core
    cpu.unregister_rseq(t)
    lay = mm.prepare(t, img.mm)
    mm.restore(t, lay, img.mm, img.runs, img.pages)
    files.restore(t, lay, img.files)
    if core.sid == core.pid:
        t.call("setsid", lib.SYS_setsid)
    elif core.pgid == core.pid:
        t.call("setpgid", lib.SYS_setpgid, 0, 0)
    threads.set_name(t, lay, core.comm)
    signals.restore(t, lay, core)
    # Threads before the parts: creating one with its tid needs privileges creds may drop;
    # per-thread parts (creds, seccomp) then run in each thread too. The stub's pdeathsig
    # (SIGKILL while we work) is replaced by the task part with the dumped one.
    others = threads.restore(t, lay, core)
    for part in PARTS:
        for who in [t] + (others if getattr(part, "PER_THREAD", False) else []):
            part.restore(who, lay, img.parts[part.KIND])
    mm.finish(t, lay)
    cpu.restore(t, core)
    t.mask = core.blocked  # set at detach
    return others


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def restore(directory: Path) -> list[int]:
    """Restore every task of the checkpoint; return the roots' pids in dump order."""
    roots, tasks = load(directory)
    made: list[int] = []
    traced: list[Tracee] = []
    try:
        for pid in roots:
            made.append(_spawn(tasks[pid].core.pid))
            t = Tracee(made[-1])
            traced.append(t)
            traced += _rebuild(t, tasks[pid])
        # Every task is whole before any runs again.
        for t in traced:
            t.detach()
    except BaseException:
        # Threads before their leader: a traced leader is collected only after them.
        for t in reversed(traced):
            t.kill()
        for pid in made:
            _kill(pid)
        raise
    return made
