"""One root exception for the harness; subclasses say what and where, and stay picklable."""
from __future__ import annotations


class ZdtmError(Exception):
    """Root of every harness error; str() is one line for the user."""

    exit_code = 1


class UsageError(ZdtmError):
    """Bad command-line input (unknown test, engine, flavor, bad --shard)."""

    exit_code = 2


class SpecError(ZdtmError):
    """A spec file that does not follow the schema."""

    exit_code = 2

    def __init__(self, path: str, key: str, why: str) -> None:
        super().__init__(path, key, why)
        self.path, self.key, self.why = path, key, why

    def __str__(self) -> str:
        where = f"key '{self.key}'" if self.key else "document"
        return f"{self.path}: {where}: {self.why}"


class BuildError(ZdtmError):
    """A C program did not compile; carries the compiler's message."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(source, message)
        self.source, self.message = source, message

    def __str__(self) -> str:
        return f"build of {self.source} failed:\n{self.message.rstrip()}"


class EngineError(ZdtmError):
    """An engine's dump or restore failed; `step` is which."""

    def __init__(self, engine: str, step: str, why: str) -> None:
        super().__init__(engine, step, why)
        self.engine, self.step, self.why = engine, step, why

    def __str__(self) -> str:
        return f"{self.engine} {self.step} failed: {self.why}"


class FlavorError(ZdtmError):
    """A flavor could not set up or enter its namespaces."""
