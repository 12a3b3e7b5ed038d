"""The `restart` engine: kill the trees, start every program again in check-only mode.

The restarted programs skip their setup, so the state they check was never built: every
test must FAIL here. A test that passes checks nothing a fresh process lacks."""
from __future__ import annotations

from harness.engines import DumpRequest, RestoreRequest


class Restart:
    """Loses all state on purpose; the oracle is not consulted (nothing is expected back)."""

    name = "restart"
    restores_state = False

    def unavailable(self) -> str | None:
        """Always usable."""
        return None

    def version(self) -> str:
        """No external engine, no version."""
        return "-"

    def dump(self, req: DumpRequest) -> None:
        """Kill the trees (unless asked to leave them running)."""
        if not req.leave_running:
            req.batch.kill()

    def restore(self, req: RestoreRequest) -> list[int]:
        """Start the programs again with --check-only; the runner re-reads their pidfiles."""
        req.batch.relaunch(check_only=True)
        return []
