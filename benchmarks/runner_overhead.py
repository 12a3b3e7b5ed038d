"""Wall time per test of the whole corpus under `nocr` (no C/R: the runner's own cost), at -j 1 and -j 2.

Run on demand: python benchmarks/runner_overhead.py [--flavor host]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(jobs: int, flavor: str) -> tuple[float, int]:
    """One `zdtm run --all --engine nocr`; returns (wall seconds, test runs)."""
    with tempfile.TemporaryDirectory() as rep:
        args = [sys.executable, "-m", "harness.cli", "run", "--all", "--engine", "nocr", "-j", str(jobs),
                "--report", rep] + (["-f", flavor] if flavor else [])
        t0 = time.monotonic()
        subprocess.run(args, check=True, capture_output=True)
        wall = time.monotonic() - t0
        return wall, len(json.loads((Path(rep) / "report.json").read_text())["results"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--flavor", default="", help="host or ns (default: both)")
    args = p.parse_args()
    subprocess.run([sys.executable, "-m", "harness.cli", "build"], check=True, capture_output=True)
    for jobs in (1, 2):
        wall, n = run(jobs, args.flavor)
        print(f"-j {jobs}: {n} test runs in {wall:.1f}s wall = {wall / n:.3f}s per test (runs wait in"
              f" their programs' own setup and checks too)")


if __name__ == "__main__":
    main()
