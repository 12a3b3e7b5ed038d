"""The cffi syscall layer: `lib` and `ffi` of the compiled module, and OS error translation."""
from __future__ import annotations

import os
from typing import Any

from native._sys import ffi, lib

__all__ = ["ffi", "lib", "check"]


def check(rc: Any, what: str) -> Any:
    """Return rc, or raise OSError (with errno and `what`) when a libc call returned -1."""
    if rc == -1:
        err = ffi.errno
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc
