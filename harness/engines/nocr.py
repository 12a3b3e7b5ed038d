"""The `nocr` engine: no checkpoint/restore at all; the cycle runs around untouched trees."""
from __future__ import annotations

from harness.engines import DumpRequest, RestoreRequest


class NoCr:
    """Dump writes nothing and kills nothing; restore hands back the same roots."""

    name = "nocr"
    restores_state = True

    def unavailable(self) -> str | None:
        """Always usable."""
        return None

    def version(self) -> str:
        """No external engine, no version."""
        return "-"

    def dump(self, req: DumpRequest) -> None:
        """Nothing to do: the trees keep running."""

    def restore(self, req: RestoreRequest) -> list[int]:
        """The trees never went away."""
        return list(req.roots)
