"""`ckpt`: the engine's command line (so far: `ckpt check`)."""
from __future__ import annotations

import argparse
import sys

from engine import check


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="ckpt", description="parasite-less checkpoint/restore")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="probe the kernel interfaces the engine uses")
    p.parse_args(argv)
    results = check.run()
    width = max(map(len, results))
    for name, why in results.items():
        print(f"{name:<{width}}  {'ok' if why is None else 'missing: ' + why}")
    return 0 if all(v is None for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
