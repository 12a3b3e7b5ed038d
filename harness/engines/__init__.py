"""The engine plugin protocol, and discovery through the `zdtm.engines` entry-point group."""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.errors import UsageError

GROUP = "zdtm.engines"


class BatchControl(Protocol):
    """What the runner lets an engine do to the batch (for engines that are not real C/R)."""

    def kill(self) -> None:
        """Kill every task of every test of the batch."""

    def relaunch(self, check_only: bool) -> None:
        """Start every test's program again (in the batch's flavor); they write new pidfiles."""


@dataclass(frozen=True, slots=True)
class DumpRequest:
    """Dump these trees (ALL roots in one call) into `images`."""

    roots: list[int]
    images: Path
    leave_running: bool
    log: Path
    batch: BatchControl


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """Restore what `images` holds; `roots` are the roots that were dumped, in order."""

    roots: list[int]
    images: Path
    log: Path
    batch: BatchControl


@runtime_checkable
class Engine(Protocol):
    """A C/R engine: a third party adds one with an entry point in `zdtm.engines`."""

    name: str
    #: True when the visible state must come back (the oracle compares it after restore).
    restores_state: bool

    def unavailable(self) -> str | None:
        """None when usable here, else why not (every test is then skipped with that reason)."""

    def version(self) -> str:
        """The engine's version, for reports."""

    def dump(self, req: DumpRequest) -> None:
        """Checkpoint every tree of req.roots; unless leave_running they are gone afterwards."""

    def restore(self, req: RestoreRequest) -> list[int]:
        """Restore the trees; return their roots (host pids) in the order they were dumped."""


def names() -> list[str]:
    """Engines installed, by entry-point name."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


def load(name: str) -> Engine:
    """Instantiate the engine registered under `name`."""
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            engine = ep.load()()
            if not isinstance(engine, Engine):
                raise UsageError(f"engine '{name}' ({ep.value}) does not follow the Engine protocol")
            return engine
    raise UsageError(f"unknown engine '{name}'; installed: {', '.join(names()) or 'none'}")
