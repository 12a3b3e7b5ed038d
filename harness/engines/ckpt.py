"""The `ckpt` engine: our own, called in-process through its Python API."""
from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path

import engine
from engine.dumper import VERSION
from harness import proc
from harness.engines import DumpRequest, RestoreRequest


@lru_cache(maxsize=1)
def _missing() -> str | None:
    """What `ckpt check` finds missing on this kernel (probed once per process)."""
    from engine import check

    gone = [f"{name}: {why}" for name, why in check.run().items() if why is not None]
    return "ckpt check: " + "; ".join(gone) if gone else None


def _reap_dumped(images: Path, timeout: float = 5.0) -> None:
    """Reap the killed tree's tasks that were handed to us, until none holds its pid."""
    from engine import images as imgs

    _, entries = imgs.read(imgs.path_of(images, "tree"), "tree")
    pids = [t.pid for t in entries[0].tasks]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.reap_children()
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            return
        time.sleep(0.002)


class Ckpt:
    """Dump and restore with the parasite-less engine in `engine/`."""

    name = "ckpt"
    restores_state = True

    def __init__(self, planner: str | None = None) -> None:
        self.planner = planner  # the restore planner (entry-point name); None: the standard one

    def unavailable(self) -> str | None:
        """None when every kernel interface the engine uses answers."""
        return _missing()

    def version(self) -> str:
        """The engine's version."""
        return VERSION

    def dump(self, req: DumpRequest) -> None:
        """All roots in one call; they are killed unless --norst, and what of them comes to
        us (we are the tests' subreaper) is reaped, so their pids are free for the restore."""
        engine.dump(req.roots, req.images, req.leave_running)
        if not req.leave_running:
            _reap_dumped(req.images)

    def restore(self, req: RestoreRequest) -> list[int]:
        """The roots come back as children of this process, in dump order."""
        return engine.restore(req.images, planner=self.planner)
