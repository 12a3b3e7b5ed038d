"""The pages file at dump: chunks land in the order they were put, whether written in line or
by the writer thread; pages spliced by the task (vmsplice) make the same file as pages copied,
also interleaved with pages that must be copied, and leave the task's fds, areas and signals
as they were; a write that fails (a full file system) fails the dump with one clear error
while the task runs on with its memory as it was, on either path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from engine import pagedump, proc
from engine.errors import CkptError
from engine.images.mm_pb2 import Vma
from tests.reaping import kill_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, mount)")

# 24 MiB of random bytes (past THREADED, so the writer thread takes over); on SIGUSR1 it
# writes "ok" to ARGV[1].checked if they are unchanged.
PROGRAM = r"""
import hashlib, os, signal, sys
data = bytearray(os.urandom(24 << 20))
want = hashlib.sha256(data).hexdigest()
def check(*_):
    with open(sys.argv[1] + ".checked", "w") as f:
        f.write("ok" if hashlib.sha256(data).hexdigest() == want else "changed")
signal.signal(signal.SIGUSR1, check)
open(sys.argv[1], "w").write("ready")
while True:
    signal.pause()
"""


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} never written"
        time.sleep(0.01)
    return path.read_text()


def test_chunks_land_in_order_in_line_and_threaded(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (4096, pagedump.CHUNK, 3 * 4096, pagedump.CHUNK, pagedump.CHUNK, 8192)]
    chunks += [os.urandom(pagedump.CHUNK) for _ in range(pagedump.THREADED // pagedump.CHUNK + 2)]
    sink = pagedump._Sink(tmp_path / "pages")
    try:
        for i, data in enumerate(chunks):
            if i % 2:  # half through the read buffers, half as bytes (the /proc/PID/mem way)
                buf = sink.buffer()
                pagedump.ffi.memmove(buf, data, len(data))
                sink.put(buf, len(data))
            else:
                sink.put(data, len(data))
    finally:
        sink.close()
    assert sink.done > pagedump.THREADED  # the writer thread had its share
    assert (tmp_path / "pages").read_bytes() == b"".join(chunks)
    assert (tmp_path / "pages").stat().st_mode & 0o777 == 0o600


# A parent with 24 MiB of random bytes forks a child (every page shared copy-on-write), then
# rewrites every other MiB: runs of its own pages (spliced) between runs of shared ones (read
# through /proc/PID/mem), which must reach the file in address order.
MIXED = r"""
import os, sys, time
data = bytearray(os.urandom(24 << 20))
if os.fork() == 0:
    time.sleep(1000)
    os._exit(0)
for i in range(0, len(data), 2 << 20):
    data[i:i + (1 << 20)] = os.urandom(1 << 20)
open(sys.argv[1], "w").write("ready")
time.sleep(1000)
"""


def _state(pid: int) -> tuple[list[str], str, list[str]]:
    """What a dump left running must not change: fds (with targets), areas, pending signals."""
    fds = sorted(f"{fd} {os.readlink(f'/proc/{pid}/fd/{fd}')}" for fd in os.listdir(f"/proc/{pid}/fd"))
    maps = Path(f"/proc/{pid}/maps").read_text()
    pending = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if "Pnd:" in line]
    return fds, maps, pending


def test_spliced_pages_make_the_same_file_as_copied_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", MIXED, str(ready)], stdin=subprocess.DEVNULL)
    child: list[int] = []
    try:
        _wait_for(ready)
        child = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        before = _state(p.pid)
        moved: list[int] = []
        real_move = pagedump._Splicer.move

        def move(self: pagedump._Splicer, addr: int, n: int) -> int:
            got = real_move(self, addr, n)
            moved.append(got)
            return got

        monkeypatch.setattr(pagedump._Splicer, "move", move)
        engine.dump([p.pid], tmp_path / "spliced", leave_running=True)
        assert sum(moved) >= 12 << 20, "the parent's own pages were not spliced"
        assert _state(p.pid) == before
        monkeypatch.setattr(pagedump, "SPLICED", 1 << 62)  # nothing spliced: every page copied
        moved.clear()
        engine.dump([p.pid], tmp_path / "copied", leave_running=True)
        assert not moved
        assert _state(p.pid) == before
        spliced = sorted(f.name for f in (tmp_path / "spliced").iterdir())
        assert spliced == sorted(f.name for f in (tmp_path / "copied").iterdir())
        pages = [name for name in spliced if name.startswith(("pages", "pagemap"))]
        assert len(pages) >= 3, spliced  # the page maps, and a pages file for each task
        for name in pages:  # (the other images hold times, which moved on)
            assert (tmp_path / "spliced" / name).read_bytes() == (tmp_path / "copied" / name).read_bytes(), name
    finally:
        kill_all([p.pid, *child])
        p.wait()


@pytest.mark.parametrize("splice", [True, False], ids=["spliced", "copied"])
def test_full_file_system_fails_the_dump_and_leaves_the_task_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, splice: bool) -> None:
    if not splice:
        monkeypatch.setattr(pagedump, "SPLICED", 1 << 62)
    images = tmp_path / "img"
    images.mkdir()
    # Room for the in-line part and a little more: the writer thread (or the drain of the
    # spliced pages) meets the full disk.
    size = pagedump.THREADED + 4 * pagedump.CHUNK
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(images)], check=True)
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", PROGRAM, str(ready)], stdin=subprocess.DEVNULL)
    try:
        _wait_for(ready)
        with pytest.raises(CkptError, match="No space left on device"):
            engine.dump([p.pid], images)
        assert p.poll() is None
        state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in "SR", f"task left in state {state}"
        assert "TracerPid:\t0" in Path(f"/proc/{p.pid}/status").read_text()
        os.kill(p.pid, signal.SIGUSR1)
        assert _wait_for(Path(f"{ready}.checked")) == "ok"
    finally:
        kill_all([p.pid])
        subprocess.run(["umount", str(images)], check=True)


# Every kind of page the store must tell apart: runs of written anonymous pages between
# untouched ones and zero-page reads, pages shared with a child (read through /proc/PID/mem),
# written pages made unreadable (PROT_NONE: only /proc/PID/mem reads them), and a private
# file mapping with pages read (the file's: not stored) and one written (stored).
KINDS = r"""
import ctypes, mmap, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
P = mmap.PAGESIZE
a = mmap.mmap(-1, 64 * P)
for i in list(range(0, 10)) + [20] + list(range(40, 64)):
    a[i * P:(i + 1) * P] = bytes([i + 1]) * P
zero = sum(a[i * P] for i in range(10, 16))  # read: the zero page
shared = mmap.mmap(-1, 16 * P)
for i in range(16):
    shared[i * P:(i + 1) * P] = bytes([100 + i]) * P
hidden = mmap.mmap(-1, 4 * P)
hidden[:] = b"h" * (4 * P)
addr = ctypes.addressof(ctypes.c_char.from_buffer(hidden))
assert libc.mprotect(ctypes.c_void_p(addr), 4 * P, 0) == 0
with open(sys.argv[2], "r+b") as f:
    fm = mmap.mmap(f.fileno(), 8 * P, flags=mmap.MAP_PRIVATE)
seen = fm[0] + fm[3 * P]
fm[5 * P:6 * P] = b"w" * P
if os.fork() == 0:
    time.sleep(1000)
    os._exit(0)
for i in range(8, 16):  # the parent's own again: shared pages and its own side by side
    shared[i * P:(i + 1) * P] = bytes([200 + i]) * P
open(sys.argv[1], "w").write("ready")
time.sleep(1000)
"""


def _shared_frames(pid: int, other: int) -> set[int]:
    """Pages (by address) that both tasks map to the same page frame (pagemap bits 0-54)."""
    out = set()
    for a in proc.vmas(pid):
        if a.perms[0] != "r" or a.path.startswith("["):
            continue
        n = (a.end - a.start) // 4096 * 8
        mine = Path(f"/proc/{pid}/pagemap").open("rb")
        theirs = Path(f"/proc/{other}/pagemap").open("rb")
        with mine, theirs:
            mine.seek(a.start // 4096 * 8)
            theirs.seek(a.start // 4096 * 8)
            x, y = mine.read(n), theirs.read(n)
        for i in range(0, n, 8):
            pfn = int.from_bytes(x[i:i + 8], "little") & ((1 << 55) - 1)
            if x[i + 7] & 0x80 and pfn and pfn == int.from_bytes(y[i:i + 8], "little") & ((1 << 55) - 1):
                out.add(a.start + i // 8 * 4096)
    return out


def test_native_store_writes_what_the_python_one_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ready, backing = tmp_path / "ready", tmp_path / "backing"
    backing.write_bytes(os.urandom(8 * 4096))
    p = subprocess.Popen([sys.executable, "-c", KINDS, str(ready), str(backing)], stdin=subprocess.DEVNULL)
    child: list[int] = []
    try:
        _wait_for(ready)
        child = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        vmas = [Vma(start=a.start, end=a.end, perms=a.perms, pgoff=a.pgoff, path=a.path)
                for a in proc.vmas(p.pid) if a.path not in ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]")]
        hidden = [v for v in vmas if v.perms.startswith("---")]
        assert hidden, "no unreadable area"
        answers: list[object] = []  # what each native store gave: runs, or None (too many)
        real = pagedump._native
        monkeypatch.setattr(pagedump, "_native", lambda *a: answers.append(real(*a)) or answers[-1])
        before = _shared_frames(p.pid, child[0])
        assert before, "no page shared with the child"
        native = pagedump.store(p.pid, vmas, tmp_path / "native")
        assert _shared_frames(p.pid, child[0]) == before, "reading a page unshared it"
        assert answers == [native], "the native store was not used"
        pm = os.open(f"/proc/{p.pid}/pagemap", os.O_RDONLY)
        mem = os.open(f"/proc/{p.pid}/mem", os.O_RDONLY)
        try:
            python = pagedump._python(p.pid, vmas, tmp_path / "python", None, pm, mem)
            data = (tmp_path / "native").read_bytes()
            assert native == python
            assert data == (tmp_path / "python").read_bytes()
            # And the file is the memory: each run read back through /proc/PID/mem.
            at = 0
            for run in native:
                n = run.nr_pages * 4096
                assert data[at:at + n] == os.pread(mem, n, run.vaddr), hex(run.vaddr)
                at += n
            assert at == len(data)
        finally:
            os.close(pm)
            os.close(mem)
        assert any(r.vaddr == hidden[0].start for r in native), "the unreadable pages were not stored"
        # More runs than the native store makes room for: the Python path takes the task.
        monkeypatch.setattr(pagedump, "NATIVE_RUNS", 2)
        assert pagedump.store(p.pid, vmas, tmp_path / "fallback") == native
        assert answers[1:] == [None] and (tmp_path / "fallback").read_bytes() == data
        # Appended to the file a dump's small tasks share: each from the end of the one before;
        # one with too many runs for the native store leaves nothing there (the caller stores
        # it in a file of its own).
        packed = pagedump.Packed(tmp_path, "test")
        try:
            monkeypatch.setattr(pagedump, "NATIVE_RUNS", 4096)
            assert packed.store(p.pid, vmas) == (native, 0)
            monkeypatch.setattr(pagedump, "NATIVE_RUNS", 2)
            assert packed.store(p.pid, vmas) is None
            monkeypatch.setattr(pagedump, "NATIVE_RUNS", 4096)
            assert packed.store(p.pid, vmas) == (native, len(data))
        finally:
            packed.close()
        assert packed.path.name == "pages-of-test.img" and packed.path.read_bytes() == data * 2
    finally:
        kill_all([p.pid, *child])
        p.wait()
