"""The `ckpt` engine: our own, called in-process through its Python API."""
from __future__ import annotations

from functools import lru_cache

import engine
from engine.dumper import VERSION
from harness.engines import DumpRequest, RestoreRequest


@lru_cache(maxsize=1)
def _missing() -> str | None:
    """What `ckpt check` finds missing on this kernel (probed once per process)."""
    from engine import check

    gone = [f"{name}: {why}" for name, why in check.run().items() if why is not None]
    return "ckpt check: " + "; ".join(gone) if gone else None


class Ckpt:
    """Dump and restore with the parasite-less engine in `engine/`."""

    name = "ckpt"
    restores_state = True

    def unavailable(self) -> str | None:
        """None when every kernel interface the engine uses answers."""
        return _missing()

    def version(self) -> str:
        """The engine's version."""
        return VERSION

    def dump(self, req: DumpRequest) -> None:
        """All roots in one call; they are killed unless --norst."""
        engine.dump(req.roots, req.images, req.leave_running)

    def restore(self, req: RestoreRequest) -> list[int]:
        """The roots come back as children of this process, in dump order."""
        return engine.restore(req.images)
