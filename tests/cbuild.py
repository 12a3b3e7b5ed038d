"""Test programs in C (tests/data, or source written by a test) built for one test module."""
from __future__ import annotations

import subprocess
from pathlib import Path


def compile_c(source: Path, out: Path) -> Path:
    """Build source into the executable out (warnings are errors; pthreads linked)."""
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-pthread", "-o", str(out), str(source)],
                   check=True, timeout=60)
    return out
