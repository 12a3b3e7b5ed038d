"""Where things live: the source tree, the build tree, the bundled specs."""
from __future__ import annotations

import os
from pathlib import Path

#: The checkout the harness runs from (the distribution is installed editable).
ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ZDTM = ROOT / "zdtm"
LIB = ZDTM / "lib"
NATIVE = ROOT / "native"


def build_dir() -> Path:
    """Compiled programs go here ($ZDTM_BUILD_DIR overrides)."""
    return Path(os.environ.get("ZDTM_BUILD_DIR", ROOT / "build"))
