"""The running kernel's BTF (/sys/kernel/btf/vmlinux; Documentation/bpf/btf.rst): type ids and
the layout of its structures, as much as reading a task's kernel structures needs
(engine.asleep). Read once per process, on first use (~40 ms); what is derived from it can be
kept for the running kernel in CACHE (remembered()), so that a new process need not read it."""
from __future__ import annotations

import functools
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.errors import CkptError, Unsupported
from native import ffi, lib

VMLINUX = Path("/sys/kernel/btf/vmlinux")
CACHE = Path("/run/ckpt")  # a tmpfs: emptied at boot, and a kernel changes only with a boot
MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
TYPE = struct.Struct("<III")  # struct btf_type: name_off, info, size (or type)
MEMBER = struct.Struct("<III")  # struct btf_member: name_off, type, offset
# uapi/linux/btf.h: BTF_KIND_*
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC = range(1, 13)
FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(13, 20)
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


@dataclass(frozen=True, slots=True)
class Field:
    """Where a member lies in the structure a path starts from: its byte offset and type id;
    for a bit field, its first bit in that byte and its width."""

    offset: int
    type: int
    bit: int = 0
    bits: int = 0


class Btf:
    """Type ids, names and structure layouts of one BTF blob."""

    def __init__(self, raw: bytes, where: str = str(VMLINUX)) -> None:
        self.raw, self.where = raw, where
        if len(raw) < HEADER.size:
            raise CkptError(f"{where}: not BTF (too short)")
        magic, _, _, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(raw)
        if magic != MAGIC:
            raise CkptError(f"{where}: not BTF (magic {magic:#x})")
        self.strings = raw[hdr_len + str_off:hdr_len + str_off + str_len]
        # Some 100k types, each record sized by its kind: walked in C (0.1 s in Python).
        start, size = hdr_len + type_off, type_len
        if start + size > len(raw):
            raise CkptError(f"{where}: its type section runs past the end")
        most = size // TYPE.size
        at, names = ffi.new("unsigned int[]", most), ffi.new("unsigned int[]", most)
        n = lib.ckpt_btf_walk(ffi.from_buffer(raw)[start:start + size], size, at, names, most)
        if n < 0:
            raise CkptError(f"{where}: a type record runs past the type section")
        self.at = [0] + [start + a for a in ffi.unpack(at, n)]  # type id -> offset of its record in raw
        self.names = [0] + ffi.unpack(names, n)  # type id -> its name's offset in the strings

    def _type(self, tid: int) -> tuple[int, int, int, int, bool]:
        """(name offset, kind, vlen, size or referenced type, kind_flag) of a type id."""
        name, info, size = TYPE.unpack_from(self.raw, self.at[tid])
        return name, (info >> 24) & 0x1F, info & 0xFFFF, size, bool(info >> 31)

    def name(self, off: int) -> str:
        """A string of the string section."""
        return self.strings[off:self.strings.index(b"\0", off)].decode()

    def named(self, kind: int, name: str) -> int:
        """The id of the type of that kind and name (a structure's definition, not a forward
        declaration of it); Unsupported when this kernel has none."""
        want = b"\0" + name.encode() + b"\0"
        start = 0
        while (i := self.strings.find(want, start)) >= 0:
            tid = 0
            while True:  # the types of that name, by list.index: a scan in C
                try:
                    tid = self.names.index(i + 1, tid + 1)
                except ValueError:
                    break
                if self._type(tid)[1] == kind:
                    return tid
            start = i + 1
        raise Unsupported(f"this kernel's BTF has no {name} (kind {kind}): reading tasks from the kernel "
                          "is not supported on it")

    def resolve(self, tid: int) -> int:
        """The type behind typedefs and qualifiers."""
        while True:
            _, kind, _, ref, _ = self._type(tid)
            if kind not in MODIFIERS:
                return tid
            tid = ref

    def kind(self, tid: int) -> int:
        """The kind of a type (after typedefs and qualifiers)."""
        return self._type(self.resolve(tid))[1]

    def size(self, tid: int) -> int:
        """The size in bytes of a structure, union, integer or pointer type."""
        _, kind, _, size, _ = self._type(self.resolve(tid))
        return 8 if kind == PTR else size

    def _member(self, tid: int, name: str) -> Field | None:
        """A member of a structure or union by name, looked for in anonymous members too."""
        _, kind, vlen, _, bitfields = self._type(tid)
        if kind not in (STRUCT, UNION):
            return None
        base = self.at[tid] + TYPE.size
        for i in range(vlen):
            name_off, mtype, where = MEMBER.unpack_from(self.raw, base + i * MEMBER.size)
            bit, bits = (where & 0xFFFFFF, where >> 24) if bitfields else (where, 0)
            if name_off and self.name(name_off) == name:
                return Field(bit // 8, mtype, bit % 8, bits)
            if not name_off:
                inner = self._member(self.resolve(mtype), name)
                if inner is not None:
                    return Field(bit // 8 + inner.offset, inner.type, inner.bit, inner.bits)
        return None

    def has(self, struct_name: str, member: str) -> bool:
        """Whether the structure has that member (this kernel's layout)."""
        return self._member(self.named(STRUCT, struct_name), member) is not None

    def field(self, struct_name: str, path: str) -> Field:
        """A member of a structure by its dotted path through embedded structures."""
        tid, offset = self.named(STRUCT, struct_name), 0
        got: Field | None = None
        for part in path.split("."):
            got = self._member(self.resolve(tid), part)
            if got is None:
                raise Unsupported(f"this kernel's struct {struct_name} has no {path}: reading tasks from the "
                                  "kernel is not supported on it")
            offset += got.offset
            tid = got.type
        assert got is not None
        return Field(offset, got.type, got.bit, got.bits)

    def func(self, name: str) -> int:
        """The id of a kernel function (BTF_KIND_FUNC), such as a BPF iterator's target."""
        return self.named(FUNC, name)


@functools.cache
def vmlinux() -> Btf:
    """The running kernel's BTF."""
    try:
        return Btf(VMLINUX.read_bytes())
    except FileNotFoundError:
        raise Unsupported(f"no {VMLINUX} (a kernel without CONFIG_DEBUG_INFO_BTF)") from None


def _kernel_key() -> str:
    """What names the running kernel's BTF: its release, build and BTF size, checksummed (one
    kernel runs per boot, and CACHE is emptied at boot: no two meet there). zlib, not
    hashlib: loading OpenSSL would cost more than it saves."""
    u = os.uname()
    build = zlib.crc32((u.release + "\n" + u.version).encode())
    return f"{build:08x}-{VMLINUX.stat().st_size}"


def remembered(name: str, compute: Callable[[], Any]) -> Any:
    """compute()'s value (JSON: what it gives comes back as JSON decodes it, lists for tuples),
    kept in CACHE for the running kernel: later processes take it from there instead of reading
    the BTF again. A cache that cannot be read or written is only slower."""
    try:
        path = CACHE / f"{name}-{_kernel_key()}.json"
    except OSError:
        return json.loads(json.dumps(compute()))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    text = json.dumps(compute())
    try:
        CACHE.mkdir(mode=0o700, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)  # whole or not at all, for a reader meanwhile
    except OSError:
        pass
    return json.loads(text)
