"""Regenerate the *_pb2 modules from the .proto files: `python -m engine.images.generate [DIR]`."""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate(out: Path = HERE) -> None:
    """Run protoc (from grpcio-tools) on every .proto here, writing *_pb2.py and *.pyi into out."""
    from grpc_tools import protoc

    protos = sorted(p.name for p in HERE.glob("*.proto"))
    rc = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", f"--pyi_out={out}", *protos])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
