"""Messages between the engine's processes (the dump's page worker, the restore's helper): a
pickled object after its length, over a pipe or into a file read whole later."""
from __future__ import annotations

import os
import pickle
import struct
from typing import Any, Iterator

_LEN = struct.Struct("<I")


def send(fd: int, obj: Any) -> None:
    """Write one message (all of it)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def recv(fd: int) -> Any:
    """Read one message; EOFError when the other side is gone."""
    head = _exactly(fd, _LEN.size)
    return pickle.loads(_exactly(fd, _LEN.unpack(head)[0]))


def _exactly(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = os.read(fd, n - len(out))
        if not got:
            raise EOFError
        out += got
    return out


def unpack(data: bytes) -> Iterator[Any]:
    """The messages of a buffer, in order (a cut one at the end, from a dying writer, left out)."""
    at = 0
    while at + _LEN.size <= len(data):
        (n,) = _LEN.unpack_from(data, at)
        if at + _LEN.size + n > len(data):
            return
        yield pickle.loads(data[at + _LEN.size:at + _LEN.size + n])
        at += _LEN.size + n
