"""ckpt: our parasite-less checkpoint/restore engine. The Python API is `engine.dump` and
`engine.restore`; the `ckpt` command line and the harness plugin are thin fronts over it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def dump(roots: Sequence[int], images: str | os.PathLike[str], leave_running: bool = False, *,
         cgroup: str | Path | None = None) -> list[int]:
    """Checkpoint the trees of `roots` into the empty directory `images`; or, with roots empty,
    every task of a cgroup v2 directory and its descendants (`cgroup`: absolute, or relative to
    the cgroup2 mount): the roots are its tasks with no ancestor in it, and each is dumped with
    its whole tree. The roots dumped, in image order."""
    from engine.dumper import dump as _dump

    return _dump(roots, Path(images), leave_running, cgroup)


def restore(images: str | os.PathLike[str], planner: str | None = None, new_pidns: bool = False) -> list[int]:
    """Restore a checkpoint; the roots come back as children of the caller, in dump order
    (with new_pidns: children of an init of ours in a new pid namespace, where they keep
    their pids; the init is the caller's child). `planner` names a restore planner (entry
    point group ckpt.planners; default standard)."""
    from engine.restorer import restore as _restore

    return _restore(Path(images), planner, new_pidns)
