"""Test programs in C (tests/data, or source written by a test) built for one test module."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def compile_c(source: Path, out: Path) -> Path:
    """Build source into the executable out (warnings are errors; pthreads linked)."""
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-pthread", "-o", str(out), str(source)],
                   check=True, timeout=60)
    return out


def build_source(factory: pytest.TempPathFactory, name: str, source: str) -> Path:
    """Build C source a test holds into an executable `name` in a fresh directory (the test
    is skipped without gcc)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    out = factory.mktemp(name)
    (out / f"{name}.c").write_text(source)
    return compile_c(out / f"{name}.c", out / name)
