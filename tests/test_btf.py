"""The kernel's BTF as engine.btf reads it: structures and members found by name where the
kernel has them, and a blob whose type section is cut short refused with one clear error; what
is derived from it kept for the running kernel."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from engine import asleep, btf
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


def test_what_is_derived_from_the_btf_is_kept_for_this_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """remembered() computes once per kernel and keeps it; a damaged file is computed again and
    replaced; a cache that cannot be written only costs the computing."""
    monkeypatch.setattr(btf, "CACHE", tmp_path / "cache")
    calls: list[int] = []

    def compute() -> dict[str, object]:
        calls.append(1)
        return {"offsets": (1, 2), "n": 3}

    assert btf.remembered("thing", compute) == {"offsets": [1, 2], "n": 3}
    assert btf.remembered("thing", compute) == {"offsets": [1, 2], "n": 3} and len(calls) == 1
    [kept] = (tmp_path / "cache").iterdir()
    assert kept.name.startswith("thing-") and (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    kept.write_text("{damaged")
    assert btf.remembered("thing", compute) == {"offsets": [1, 2], "n": 3} and len(calls) == 2
    assert json.loads(kept.read_text()) == {"offsets": [1, 2], "n": 3}
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(btf, "CACHE", tmp_path / "file" / "cache")  # under a file: cannot be made
    assert btf.remembered("thing", compute) == {"offsets": [1, 2], "n": 3} and len(calls) == 3


def test_the_kept_task_layout_is_the_one_the_btf_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(btf, "CACHE", tmp_path)
    asleep._layout.cache_clear()
    try:
        first = asleep._layout()  # measured, then kept
        asleep._layout.cache_clear()
        assert asleep._layout() == first == asleep._measure()  # read back from the file
        assert len(list(tmp_path.iterdir())) == 1
    finally:
        asleep._layout.cache_clear()
