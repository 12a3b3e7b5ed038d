"""Builds native._sys (cffi, out-of-line API mode) from the topic cdefs in native/cdefs."""
from __future__ import annotations

import importlib.util
import os
from types import ModuleType

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(path: str, name: str) -> ModuleType:
    """Import one file by path, without importing the `native` package."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_index = _load(os.path.join(HERE, "cdefs", "__init__.py"), "_cdefs_index")
_topics = [_load(os.path.join(HERE, "cdefs", f"{t}.py"), f"_cdefs_{t}") for t in _index.TOPICS]

ffibuilder = FFI()
ffibuilder.cdef("\n".join(t.CDEF for t in _topics))
ffibuilder.set_source(
    "native._sys",
    "#define _GNU_SOURCE\n" + "\n".join(t.INCLUDES for t in _topics),
    include_dirs=[HERE],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
