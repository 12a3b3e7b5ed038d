"""Memory contents through the ckpt engine, by the path each kind of area takes: private
anonymous areas large enough for UFFDIO_COPY (writable, read-only, sparse), a huge-page area
left to faults, a small one by preadv. The program checks its own bytes after restore, and
/proc shows the areas as they were, with no userfaultfd left registered on them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from engine import images, mm, proc, uffd
from engine.errors import CkptError
from native import lib
from engine.ptrace import Tracee

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

# Areas (sizes in pages): big 2048 rw, ro 512 read-only, sparse 1024 with every 7th page
# touched, huge 1024 MADV_HUGEPAGE, small 4 rw. On SIGUSR1 it compares every byte with what
# it wrote, and writes "ok" or the first area that differs.
PROGRAM = r"""
import ctypes, hashlib, mmap, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
PAGE = 4096
def area(pages, **kw):
    return mmap.mmap(-1, pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, **kw)
def fill(m, seed, step=1):
    for i in range(0, len(m) // PAGE, step):
        m[i * PAGE:(i + 1) * PAGE] = hashlib.sha256(f"{seed}{i}".encode()).digest() * (PAGE // 32)
def addr(m):
    return ctypes.addressof(ctypes.c_char.from_buffer(m))
areas = {"big": (area(2048), 1), "ro": (area(512), 1), "sparse": (area(1024), 7),
         "huge": (area(1024), 1), "small": (area(4), 1)}
libc.madvise(ctypes.c_void_p(addr(areas["huge"][0])), 1024 * PAGE, 14)  # MADV_HUGEPAGE
for name, (m, step) in areas.items():
    fill(m, name, step)
ro = areas["ro"][0]
libc.mprotect(ctypes.c_void_p(addr(ro)), len(ro), 1)  # PROT_READ
want = {name: hashlib.sha256(m[:]).hexdigest() for name, (m, _) in areas.items()}
def check(*_):
    bad = [name for name, (m, _) in areas.items() if hashlib.sha256(m[:]).hexdigest() != want[name]]
    with open(sys.argv[1] + ".checked", "w") as f:
        f.write(" ".join(bad) or "ok")
signal.signal(signal.SIGUSR1, check)
with open(sys.argv[1], "w") as f:
    f.write(" ".join(f"{name}={addr(m):x}" for name, (m, _) in areas.items()))
while True:
    signal.pause()
"""


Area = tuple[int, int, str, str, int]  # start, end, perms, VmFlags, Rss kB


def _areas(pid: int) -> list[Area]:
    """Every area of the task (smaps)."""
    out: list[Area] = []
    start, end, perms, rss = 0, 0, "", 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and not line.endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            perms = head[1]
        elif head[0] == "Rss:":
            rss = int(head[1])
        elif head[0] == "VmFlags:":
            out.append((start, end, perms, " ".join(head[1:]), rss))
    return out


def _holding(areas: list[Area], addr: int) -> Area:
    """The area addr is in. A test area may have merged with a neighbour of the same kind
    (mmap places them side by side): the same merge must be there after restore."""
    found = [a for a in areas if a[0] <= addr < a[1]]
    assert found, f"no area holds {addr:#x}"
    return found[0]


def test_private_memory_comes_back_by_every_path(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", PROGRAM, str(ready)], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline, "the program did not set up"
            time.sleep(0.01)
        at = {name: int(a, 16) for name, a in (kv.split("=") for kv in ready.read_text().split())}
        # Its areas as dumped: once it sleeps in pause(), not while it still closes the file
        # it wrote (an allocation there may merge or split areas next to the test's).
        while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
            assert time.monotonic() < deadline, "the program never went to sleep"
            time.sleep(0.001)
        before = _areas(p.pid)
        engine.dump([p.pid], tmp_path / "img")
        p.wait()
        assert engine.restore(tmp_path / "img") == [p.pid]
        after = _areas(p.pid)
        for name in ("big", "ro", "sparse", "small"):
            assert _holding(after, at[name]) == _holding(before, at[name]), name
        # Which path each took: the first three by UFFDIO_COPY, not the others.
        vmas = images.read_tasks(tmp_path / "img", "mm", [p.pid])[p.pid].vmas
        usable = [uffd.usable(next(v for v in vmas if v.start <= at[n] < v.end)) for n in ("big", "ro", "sparse", "huge")]
        assert usable == [True, True, True, False]
        assert not any("um" in flags.split() for _, _, _, flags, _ in after)
        os.kill(p.pid, signal.SIGUSR1)
        checked = Path(f"{ready}.checked")
        deadline = time.monotonic() + 20
        while not (checked.exists() and checked.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checked.read_text() == "ok"
    finally:
        try:
            os.kill(p.pid, signal.SIGKILL)
            os.waitpid(p.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _block(pid: int) -> list[tuple[int, int, str]]:
    """The task's vvar/vDSO areas: start, end, name."""
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        f = line.split()
        if f[-1] in ("[vvar]", "[vvar_vclock]", "[vdso]"):
            start, end = (int(x, 16) for x in f[0].split("-"))
            out.append((start, end, f[-1]))
    return sorted(out)


APART = 0x300000000000  # between a program's heap (0x55...) and its mmap area (0x7f...)


@pytest.mark.parametrize("overlap", [True, False], ids=["overlapping", "apart"])
def test_the_vdso_block_moves_to_the_dumped_place(overlap: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stub's vvar/vDSO block moves to the dumped addresses: straight there, or, when the
    two places overlap (mremap refuses that), through a free spot; the task's remote calls
    then run on the moved vDSO. (On a seized `sleep`: what lies at the new place is lost.)"""
    p = subprocess.Popen(["sleep", "100"])
    transits: list[int] = []
    real_call = Tracee.call

    def call(self: Tracee, what: str, nr: int, *args: int) -> int:
        got = real_call(self, what, nr, *args)
        if what.startswith("mmap (vDSO transit)"):
            transits.append(got)
        return got

    monkeypatch.setattr(Tracee, "call", call)
    try:
        deadline = time.monotonic() + 10
        # Its layout is sleep's once it sleeps: the comm changes at exec before the vDSO is mapped.
        while (Path(f"/proc/{p.pid}/comm").read_text().strip() != "sleep"
               or "[vdso]" not in Path(f"/proc/{p.pid}/maps").read_text()
               or Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S"):
            assert time.monotonic() < deadline, "sleep never started"
            time.sleep(0.001)
        have = mm._block([(s, e, n) for s, e, n in _block(p.pid)])
        lo = min(s for s, _ in have.values())
        # Apart: to a place no `sleep` maps anything at (+1 GiB could pass the top of user
        # space, or land on the stack).
        shift = max(e - s for s, e in have.values()) if overlap else APART - lo
        want = {n: (s + shift, e + shift) for n, (s, e) in have.items()}
        t = Tracee(p.pid)
        try:
            mm._move_vdso(t, have, want)
            assert _block(p.pid) == sorted((s, e, n) for n, (s, e) in want.items())
            assert len(transits) == (1 if overlap else 0)
            assert t.syscall(lib.SYS_getpid) == p.pid  # through the moved vDSO's syscall
        finally:
            t.kill()
    finally:
        p.kill()
        p.wait()


def test_smaps_areas_are_the_maps_lines_with_their_flags() -> None:
    """proc.vmas (smaps split at VmFlags) gives every area of maps, in order, each with flags;
    an area whose header line is not one is refused with one line."""
    pid = os.getpid()
    areas = proc.vmas(pid)
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    # (our own maps may have grown a little between the reads: compare what both show)
    want = [(int(f[0].split("-")[0], 16), f[1], f[5] if len(f) > 5 else "")
            for f in (line.split(maxsplit=5) for line in lines)]
    got = [(a.start, a.perms, a.path) for a in areas]
    assert got[:10] == want[:10] and abs(len(got) - len(want)) <= 2
    # Each area's own flags: read, write and exec as its perms say (VM_READ is both).
    for a in areas:
        flags = a.vmflags.split()
        assert [f in flags for f in ("rd", "wr", "ex")] == [c != "-" for c in a.perms[:3]], (a, flags)
    with pytest.raises(CkptError, match="an area line expected"):
        proc._parse_smaps("Rss: 4 kB\nVmFlags: rd\n")
