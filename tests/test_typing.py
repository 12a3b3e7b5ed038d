"""The Python packages stay mypy clean (strict on definitions: every function typed)."""
from __future__ import annotations

import subprocess
import sys

from harness import paths


def test_mypy_clean() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "harness", "native", "engine"], cwd=paths.ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
