"""Remote calls gathered with the bytes their arguments point to, then run together: the
bytes go to the scratch area in one write, the calls in one native batch (Tracee.batch).
A batch that would overflow the scratch area is run first and a new one started."""
from __future__ import annotations

from engine.ptrace import Tracee


class Calls:
    """A batch of remote calls in one task, with their argument bytes staged in its scratch."""

    def __init__(self, t: Tracee, scratch: int, size: int) -> None:
        self.t, self.scratch, self.size = t, scratch, size
        self.data = bytearray()
        self.calls: list[tuple[int, ...]] = []
        self.what: list[str] = []
        self.results: list[int] = []  # of every call run so far, in order

    def put(self, raw: bytes) -> int:
        """Stage bytes for a call added next; their address in the task."""
        if len(raw) > self.size:
            raise ValueError(f"{len(raw)} bytes of arguments do not fit a {self.size}-byte scratch area")
        if len(self.data) + len(raw) > self.size:
            self.run()
        at = self.scratch + len(self.data)
        self.data += raw
        # Keep the next one 8-byte aligned: structs are read in place.
        self.data += bytes(-len(self.data) % 8)
        return at

    def add(self, what: str, nr: int, *args: int) -> int:
        """Queue a call (it must succeed); its index in `results` once run."""
        self.calls.append((nr, *args))
        self.what.append(what)
        return len(self.results) + len(self.calls) - 1

    def run(self) -> list[int]:
        """Run what is queued; every result so far."""
        if self.calls:
            if self.data:
                self.t.write(self.scratch, bytes(self.data))
            self.results += self.t.batch(self.calls, self.what)
        self.data.clear()
        self.calls, self.what = [], []
        return self.results
