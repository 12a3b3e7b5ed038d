"""The kernel's BTF as engine.btf reads it: structures and members found by name where the
kernel has them, and a blob whose type section is cut short refused with one clear error."""
from __future__ import annotations

import struct

import pytest

from engine import btf
from engine.errors import CkptError, Unsupported

pytestmark = pytest.mark.skipif(not btf.VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux")


def test_structures_and_members_are_found_by_name() -> None:
    b = btf.vmlinux()
    task = b.named(btf.STRUCT, "task_struct")
    assert b.kind(task) == btf.STRUCT and b.size(task) > 1000
    assert b.field("task_struct", "pid").offset < b.field("task_struct", "tgid").offset < b.size(task)
    assert b.kind(b.field("task_struct", "sighand").type) == btf.PTR
    assert b.func("bpf_iter_task") > 0
    with pytest.raises(Unsupported, match="no no_such_struct_here"):
        b.named(btf.STRUCT, "no_such_struct_here")


def test_a_type_section_cut_short_is_refused() -> None:
    raw = btf.VMLINUX.read_bytes()
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = btf.HEADER.unpack_from(raw)
    # A type section that ends 6 bytes into a record: the walk runs past it.
    cut = bytearray(raw)
    struct.pack_into("<I", cut, 12, 12 * 3 + 6)
    with pytest.raises(CkptError, match="runs past the type section"):
        btf.Btf(bytes(cut), "cut")
    # A header naming more types than the blob holds.
    with pytest.raises(CkptError, match="runs past the end"):
        btf.Btf(raw[:hdr_len + type_off + 100], "short")
