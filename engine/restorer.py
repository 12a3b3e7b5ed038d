"""Restore of single-thread processes: each comes back as a child of the caller with its own
pid (clone3 set_tid), rebuilt by remote syscalls in a stub, then detached. A failed restore
leaves no process behind."""
from __future__ import annotations

import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from engine import cpu, files, images, mm, signals, threads
from engine.errors import CkptError
from engine.images.core_pb2 import Core
from engine.images.files_pb2 import Files
from engine.images.mm_pb2 import Mm, PageRun
from engine.parts import PARTS
from engine.ptrace import Tracee
from native import ffi, lib

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class TaskImages:
    """Everything dumped about one task, read and checked before any process is created."""

    core: Core
    mm: Mm
    runs: list[PageRun]
    files: Files
    pages: Path
    parts: dict[str, object]  # image kind -> its message, for each of PARTS


def _one(path: Path, kind: str) -> object:
    _, entries = images.read(path, kind)
    if len(entries) != 1:
        raise images.ImageError(str(path), 0, f"expected one {kind} entry, found {len(entries)}")
    return entries[0]


def load(directory: Path) -> tuple[list[int], dict[int, TaskImages]]:
    """The roots and every task's images; a missing or damaged image is an error here."""
    if not (directory / "inventory.img").exists():
        raise CkptError(f"{directory}: no inventory.img (not a checkpoint directory?)")
    inv = _one(images.path_of(directory, "inventory"), "inventory")
    tasks: dict[int, TaskImages] = {}
    for pid in inv.pids:  # type: ignore[attr-defined]
        _, runs = images.read(images.path_of(directory, "pagemap", pid), "pagemap")
        pages = images.pages_path(directory, pid)
        stored = sum(r.nr_pages for r in runs) * images.PAGE_SIZE
        size = pages.stat().st_size if pages.exists() else -1
        if size != stored:
            raise images.ImageError(str(pages), max(size, 0),
                                    f"holds {size} bytes, the page map says {stored}")
        tasks[pid] = TaskImages(_one(images.path_of(directory, "core", pid), "core"),  # type: ignore[arg-type]
                                _one(images.path_of(directory, "mm", pid), "mm"),  # type: ignore[arg-type]
                                runs, _one(images.path_of(directory, "files", pid), "files"),  # type: ignore[arg-type]
                                pages, {p.KIND: _one(images.path_of(directory, p.KIND, pid), p.KIND) for p in PARTS})
    return list(inv.roots), tasks  # type: ignore[attr-defined]


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
    t.write(lay.scratch, core.comm.encode()[:15] + b"\0")
    t.call("prctl(PR_SET_NAME)", lib.SYS_prctl, 15, lay.scratch, 0, 0, 0)
    signals.restore(t, lay, core)
    t.call("prctl(PR_SET_PDEATHSIG)", lib.SYS_prctl, PR_SET_PDEATHSIG, 0, 0, 0, 0)
    # Threads before the parts: creating one with its tid needs privileges creds may drop;
    # per-thread parts (creds, seccomp) then run in each thread too.
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
