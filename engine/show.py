"""`ckpt show`: every image of a checkpoint directory, decoded, as text or JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from engine import images
from engine.errors import CkptError


def decode(directory: Path) -> dict[str, Any]:
    """{file name: {"kind": ..., "entries": [...]}} for every image file (raw pages summarised)."""
    if not directory.is_dir():
        raise CkptError(f"{directory}: not a checkpoint directory")
    out: dict[str, Any] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(images.PAGES.split("{")[0]):
            out[path.name] = {"kind": "pages", "pages": path.stat().st_size // images.PAGE_SIZE}
            continue
        kind, entries = images.read(path)
        out[path.name] = {"kind": kind.name, "entries": [
            MessageToDict(m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
            for m in entries]}
    if "inventory.img" not in out:
        raise CkptError(f"{directory}: no inventory.img (not a checkpoint?)")
    return out


def render(directory: Path, as_json: bool) -> str:
    """The decoded images, human-readable or JSON."""
    doc = decode(directory)
    if as_json:
        return json.dumps(doc, indent=1)
    lines = []
    for name, body in doc.items():
        if body["kind"] == "pages":
            lines.append(f"{name}: {body['pages']} raw pages")
            continue
        lines.append(f"{name} ({body['kind']}, {len(body['entries'])} entries)")
        for e in body["entries"]:
            for key, value in e.items():
                if isinstance(value, list) and value and isinstance(value[0], dict):
                    lines.append(f"  {key}:")
                    lines.extend(f"    {' '.join(f'{k}={v}' for k, v in item.items())}" for item in value)
                elif key != "xstate":
                    lines.append(f"  {key}: {value}")
    return "\n".join(lines)
