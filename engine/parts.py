"""Per-task state beyond the core (CPU, memory, signals, files): one module per kind, each
with KIND (its image kind, registered in engine.images), `dump(t, others) -> message` (the
task and its other threads are seized, its signals blocked) and `restore(t, lay, message)`
(remote calls in the stub's main thread, with the scratch area `lay`). Restored in this
order: credentials and seccomp come last, as they may take away what the others need."""
from __future__ import annotations

from types import ModuleType

from engine import task, timers

PARTS: tuple[ModuleType, ...] = (timers, task)
