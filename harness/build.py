"""Incremental, parallel build of the C test library, test programs and native helpers."""
from __future__ import annotations

import fcntl
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from harness import paths
from harness.errors import BuildError

CC = os.environ.get("CC", "gcc")
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-pthread"]
LDLIBS = ["-lpthread", "-lrt"]

#: Helper programs of the harness itself, built like tests: name -> source.
HELPERS = {"zdtm-nsinit": paths.NATIVE / "nsinit.c", "zdtm-treebuild": paths.NATIVE / "treebuild.c"}


@dataclass(frozen=True, slots=True)
class Target:
    """One output file, the sources it is made of and the command that makes it."""

    output: Path
    inputs: tuple[Path, ...]
    command: tuple[str, ...]


def _headers() -> list[Path]:
    return sorted(paths.LIB.glob("*.h")) + [paths.NATIVE / "compat.h"]


def _lib_targets(out: Path) -> tuple[list[Target], Target]:
    """Objects of zdtm/lib and the archive made of them."""
    objs = []
    for src in sorted(paths.LIB.glob("*.c")):
        obj = out / "lib" / (src.stem + ".o")
        # The library is held to -Wshadow too: a shadowed global there breaks every test.
        objs.append(Target(obj, (src, *_headers()),
                           (CC, *CFLAGS, "-Wshadow", "-I", str(paths.LIB), "-I", str(paths.NATIVE), "-c", str(src), "-o")))
    archive = out / "lib" / "libzdtm.a"
    return objs, Target(archive, tuple(t.output for t in objs), ("ar", "rcs"))


def _program_target(source: Path, output: Path, archive: Path) -> Target:
    return Target(
        output,
        (source, archive, *_headers()),
        (CC, *CFLAGS, "-I", str(paths.LIB), "-I", str(paths.NATIVE), str(source), str(archive),
         *LDLIBS, "-o"),
    )


def _stale(t: Target) -> bool:
    try:
        built = t.output.stat().st_mtime_ns
    except FileNotFoundError:
        return True
    return any(p.stat().st_mtime_ns > built for p in t.inputs)


def _make(t: Target) -> None:
    """Run the target's command into a temporary name, then rename: readers never see half a file."""
    t.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = t.output.with_name(f".{t.output.name}.{os.getpid()}.tmp")
    if t.command[0] == "ar":
        cmd = [*t.command, str(tmp), *map(str, t.inputs)]
    else:
        cmd = [*t.command, str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        tmp.unlink(missing_ok=True)
        raise BuildError(str(t.inputs[0]), r.stderr or r.stdout)
    os.replace(tmp, t.output)


def _run(targets: list[Target], jobs: int) -> list[BuildError]:
    stale = [t for t in targets if _stale(t)]
    errors: list[BuildError] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in [pool.submit(_make, t) for t in stale]:
            try:
                fut.result()
            except BuildError as e:
                errors.append(e)
    return errors


def build(sources: Iterable[tuple[Path, Path]], jobs: int | None = None) -> int:
    """Build the library, the helpers and each (source, output) program; returns how many were stale.

    Concurrent builders (xdist workers, parallel runs) serialise on a lock file."""
    out = paths.build_dir()
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        objs, archive = _lib_targets(out)
        errors = _run(objs, jobs)
        if errors:
            raise errors[0]
        errors = _run([archive], 1)
        if errors:
            raise errors[0]
        # Several specs may run one program (variants with other options): build it once.
        unique = dict((dst, src) for src, dst in sources)
        programs = [_program_target(src, dst, archive.output) for dst, src in sorted(unique.items())]
        programs += [_program_target(src, out / "native" / name, archive.output) for name, src in HELPERS.items()
                     if out / "native" / name not in unique]
        stale = sum(_stale(t) for t in programs)
        errors = _run(programs, jobs)
        if errors:
            if len(errors) > 1:
                more = "\n".join(f"  also failed: {e.source}" for e in errors[1:])
                raise BuildError(errors[0].source, f"{errors[0].message}\n{more}")
            raise errors[0]
        return stale


def helper(name: str) -> Path:
    """Path of a built harness helper program."""
    return paths.build_dir() / "native" / name
