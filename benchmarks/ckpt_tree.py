"""Process trees through the ckpt engine: dump and restore time of a 4-ary tree of sleeping
tasks (1, 10, 100, 500 tasks; variants with threads and with zombies), next to the time a
plain fork of the same tree takes, measured in the same run. Issue 5's reference (CRIU 4.2 on
this machine kind): 100 tasks dump 0.22 s, restore 0.17 s; 500 tasks dump 1.09 s, restore 0.82 s.

Run on demand, never in CI: python benchmarks/ckpt_tree.py [--sizes 1,10,100,500] [--repeat N]
Images go to the temporary directory (TMPDIR): on an ext4 without a journal that just had many
files deleted, each file created costs up to ~0.8 ms, which the dump pays once per writer.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import engine

HELPER_SRC = Path(__file__).with_name("ckpt_tree_helper.c")
CRIU = {100: (0.22, 0.17), 500: (1.09, 0.82)}  # tasks -> (dump s, restore s)
VARIANTS = {"plain": (0, 0), "threads": (2, 0), "zombies": (0, 1)}  # name -> (threads, zombies)


def _build(work: Path) -> Path:
    exe = work / "ckpt_tree_helper"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(HELPER_SRC)], check=True)
    return exe


def _tree(root: int) -> list[int]:
    """Every task under root (zombies included)."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                todo += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    return out


def _start(exe: Path, n: int, variant: str, work: Path) -> tuple[int, float]:
    """The tree's root and the seconds from exec to a standing tree."""
    threads, zombies = VARIANTS[variant]
    out = work / "ready"
    out.unlink(missing_ok=True)
    with open(out, "w") as f:
        t0 = time.perf_counter()
        pid = os.posix_spawn(str(exe), [str(exe), str(n), str(threads), str(zombies)], os.environ,
                             file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                                           (os.POSIX_SPAWN_DUP2, f.fileno(), 1)])
        while "ready" not in out.read_text():
            time.sleep(0.0005)
        return pid, time.perf_counter() - t0


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pids)


def _reap(pids: list[int]) -> None:
    """We are the subreaper: collect until none of these pids is left."""
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.0005)


def _round(exe: Path, n: int, variant: str, work: Path, dump: Callable[[int, Path], object],
           restore: Callable[[Path], object]) -> tuple[float, float, float]:
    """Seconds of (plain fork of the tree, dump(root, images), restore(images)) of a fresh
    tree; the restored tree is checked whole, and every task of it killed after."""
    root, fork_s = _start(exe, n, variant, work)
    pids = sorted(_tree(root))
    images = work / "img"
    shutil.rmtree(images, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        dump(root, images)
        dump_s = time.perf_counter() - t0
        _reap(pids)
        t0 = time.perf_counter()
        restore(images)
        restore_s = time.perf_counter() - t0
        got = sorted(_tree(root))
        if got != pids:
            raise SystemExit(f"{variant} {n}: restored {len(got)} tasks, dumped {len(pids)}")
    finally:
        _kill([p for p in pids if os.path.exists(f"/proc/{p}")])
    return fork_s, dump_s, restore_s


def measure(exe: Path, n: int, variant: str, work: Path) -> tuple[float, float, float]:
    """Seconds of (plain fork of the tree, engine.dump, engine.restore), in this process."""
    return _round(exe, n, variant, work, lambda root, images: engine.dump([root], images), engine.restore)


def _ckpt() -> list[str]:
    """The ckpt command of this Python (its console script, else the module)."""
    script = Path(sys.executable).with_name("ckpt")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def measure_command(exe: Path, n: int, work: Path) -> tuple[float, float]:
    """Seconds of `ckpt dump` and `ckpt restore --detach` of a plain tree, each a new process
    (Python's start, the imports and the first use of everything included, as a user pays)."""
    _, dump_s, restore_s = _round(
        exe, n, "plain", work,
        lambda root, images: subprocess.run([*_ckpt(), "dump", "-t", str(root), "-D", str(images)], check=True),
        lambda images: subprocess.run([*_ckpt(), "restore", "-D", str(images), "--detach"], check=True,
                                      stdout=subprocess.DEVNULL))
    return dump_s, restore_s


def main() -> int:
    """Print one table row per (variant, size): best and median of --repeat runs (fresh trees)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,100,500")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the dumped trees come to us
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        exe = _build(work)
        print("| variant | tasks | fork s | dump s | restore s | dump/task ms | restore/task ms | dump median s "
              "| restore median s | CRIU 4.2 dump / restore s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for variant in args.variants.split(","):
            for n in (int(x) for x in args.sizes.split(",")):
                runs = [measure(exe, n, variant, work) for _ in range(args.repeat)]
                f, dmp, rst = (min(r[i] for r in runs) for i in range(3))
                dmp_med, rst_med = (statistics.median(r[i] for r in runs) for i in (1, 2))
                ref = CRIU.get(n) if variant == "plain" else None
                print(f"| {variant} | {n} | {f:.3f} | {dmp:.3f} | {rst:.3f} | {dmp / n * 1000:.2f} | "
                      f"{rst / n * 1000:.2f} | {dmp_med:.3f} | {rst_med:.3f} | {f'{ref[0]} / {ref[1]}' if ref else ''} |",
                      flush=True)
        sizes = [n for n in (int(x) for x in args.sizes.split(",")) if n in CRIU]
        if sizes:
            print("\nAs commands, a new process each (`ckpt dump`, `ckpt restore --detach`):\n")
            print("| tasks | dump s | restore s | dump median s | restore median s | CRIU 4.2 dump / restore s |")
            print("|---|---|---|---|---|---|")
        for n in sizes:
            runs2 = [measure_command(exe, n, work) for _ in range(args.repeat)]
            (dmp, rst), (dmp_med, rst_med) = ((min(r[i] for r in runs2) for i in (0, 1)),
                                              (statistics.median(r[i] for r in runs2) for i in (0, 1)))
            print(f"| {n} | {dmp:.3f} | {rst:.3f} | {dmp_med:.3f} | {rst_med:.3f} | {CRIU[n][0]} / {CRIU[n][1]} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
