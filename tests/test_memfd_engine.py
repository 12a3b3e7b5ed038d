"""memfds through the ckpt engine: the images describe each memfd once per task that refers
to it (name, size, mode, seals, data runs without holes) and store its data once; the restore
makes ONE memfd per dumped one, shared by every fd and area of every task, with the same
seals, mode, holes, fd flags and offsets; the corpus programs' own checks pass."""
from __future__ import annotations

import fcntl
import os
import signal
import stat
from pathlib import Path
from typing import Callable

import pytest

import engine
from engine import images, memfd, removed
from engine import proc as ckpt_proc
from engine.errors import CkptError, Unsupported
from engine.images.files_pb2 import Files
from engine.images.mm_pb2 import Memfd, MemfdRun, Mm, Vma
from harness import proc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

PAGE = images.PAGE_SIZE
Launch = Callable[[str], tuple[int, Path]]
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_EXEC = 1, 2, 4, 8, 16, 32
MEM_BASE, SLOT = 0x1B0000000000, 0x100000  # zdtm/static/mem_memfd.c
FILE_BASE = 0x1C0000000000  # zdtm/static/file_memfd.c


def _mm(d: Path) -> dict[int, Mm]:
    return {m.pid: m for m in images.read(images.path_of(d, "mm"), "mm")[1]}


def _files(d: Path) -> dict[int, Files]:
    return {f.pid: f for f in images.read(images.path_of(d, "files"), "files")[1]}


def _runs(m: Memfd) -> list[tuple[int, int]]:
    return [(r.offset // PAGE, r.nr_pages) for r in m.runs]


def _fdinfo(pid: int) -> dict[int, tuple[str, str, str]]:
    """fd -> (link, flags, pos), as the visible-state oracle sees them."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{n}").read_text().splitlines())
        out[int(n)] = (os.readlink(f"/proc/{pid}/fd/{n}"), info["flags"].strip(), info["pos"].strip())
    return out


def _memfd_fds(pid: int) -> dict[int, tuple[str, int, int, int, int, list[tuple[int, int]]]]:
    """fd -> (link, seals, mode, size, blocks, data runs) of each memfd fd, seen from outside."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        link = os.readlink(f"/proc/{pid}/fd/{n}")
        if not link.startswith("/memfd:"):
            continue
        fd = os.open(f"/proc/{pid}/fd/{n}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            out[int(n)] = (link, fcntl.fcntl(fd, memfd.F_GET_SEALS), st.st_mode, st.st_size, st.st_blocks,
                           list(removed.data_runs(fd, st.st_size)))
        finally:
            os.close(fd)
    return out


def _memfd_areas(pid: int) -> dict[int, tuple[str, str, int, str]]:
    """start -> (maps line fields but the inode, VmFlags) of each memfd area."""
    out = {}
    for v in ckpt_proc.vmas(pid):
        if v.path.startswith("/memfd:"):
            out[v.start] = (f"{v.end:x} {v.perms} {v.path}", v.vmflags, v.pgoff, v.path)
    return out


def _ino(path: str) -> int:
    return os.stat(path).st_ino


def _area_ino(pid: int, start: int) -> int:
    [v] = [v for v in ckpt_proc.maps(pid) if v.start == start]
    return _ino(f"/proc/{pid}/map_files/{v.start:x}-{v.end:x}")


def _verdict(pid: int, out: Path) -> str:
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    return out.read_text().splitlines()[-1]


def test_mem_memfd_comes_back_as_one_memfd_for_its_fd_and_areas(launch: Launch, tmp_path: Path) -> None:
    pid, out = launch("static/mem_memfd")
    fds, areas = _fdinfo(pid), _memfd_areas(pid)
    d = tmp_path / "img"
    engine.dump([pid], d)
    mm = _mm(d)[pid]
    by_name = {m.name: m for m in mm.memfds}
    assert sorted(by_name) == [f"mem_memfd2_{pid}", f"mem_memfd_{pid}"]
    first, lone = by_name[f"mem_memfd_{pid}"], by_name[f"mem_memfd2_{pid}"]
    assert (first.size, _runs(first), lone.size, _runs(lone)) == (8 * PAGE, [(0, 8)], 4 * PAGE, [(0, 4)])
    assert first.seals == lone.seals == F_SEAL_SEAL  # made without MFD_ALLOW_SEALING
    key1, key2 = (first.dev, first.ino), (lone.dev, lone.ino)
    assert [(v.start, v.memfd, (v.dev, v.inode)) for v in mm.vmas if v.memfd] == [
        (MEM_BASE, True, key1), (MEM_BASE + SLOT, True, key1), (MEM_BASE + 2 * SLOT, True, key2)]
    for m in (first, lone):
        assert memfd.data_path(d, (m.dev, m.ino)).stat().st_size == m.size
    # The private area stores its copied page only; the clean ones are the memfd's.
    pm = {p.pid: p for p in images.read(images.path_of(d, "pagemap"), "pagemap")[1]}[pid]
    assert [(r.vaddr, r.nr_pages) for r in pm.runs if MEM_BASE <= r.vaddr < MEM_BASE + 3 * SLOT] == \
        [(MEM_BASE + SLOT, 1)]
    [e] = [e for e in _files(d)[pid].fds if e.memfd]
    assert (e.path, e.dev, e.ino) == (f"/memfd:mem_memfd_{pid}", *key1)

    [new] = engine.restore(d)
    assert new == pid and _fdinfo(pid) == fds and _memfd_areas(pid) == areas
    ino = _ino(f"/proc/{pid}/fd/{e.fd}")
    assert _area_ino(pid, MEM_BASE) == _area_ino(pid, MEM_BASE + SLOT) == ino
    assert _area_ino(pid, MEM_BASE + 2 * SLOT) != ino
    assert _verdict(pid, out) == "PASS"


def test_file_memfd_keeps_seals_holes_flags_and_one_memfd_across_tasks(launch: Launch, tmp_path: Path) -> None:
    pid, out = launch("static/file_memfd")
    [kid] = ckpt_proc.children(pid)
    before = {p: (_fdinfo(p), _memfd_fds(p), _memfd_areas(p)) for p in (pid, kid)}
    d = tmp_path / "img"
    engine.dump([pid], d)
    proc.reap_children()  # the killed child came to us (subreaper): its pid must be free again
    mms = _mm(d)
    by_name = {m.name.removesuffix(f"_{pid}"): m for m in mms[pid].memfds}
    assert sorted(by_name) == ["file_memfd_a", "file_memfd_b", "file_memfd_d"]  # C is the child's only
    a, b, dd = by_name["file_memfd_a"], by_name["file_memfd_b"], by_name["file_memfd_d"]
    assert (a.size, a.seals, _runs(a)) == (64 * PAGE - 100, F_SEAL_SHRINK | F_SEAL_GROW, [(0, 2), (20, 1), (63, 1)])
    assert memfd.data_path(d, (a.dev, a.ino)).stat().st_size == 4 * PAGE  # holes left out
    assert b.seals == F_SEAL_FUTURE_WRITE | F_SEAL_SEAL
    assert (dd.seals, stat.S_IMODE(dd.mode), dd.size) == (F_SEAL_EXEC, 0o666, 0)
    [c] = [m for m in mms[kid].memfds if m.name == f"file_memfd_c_{pid}"]
    assert (c.seals, stat.S_IMODE(c.mode), c.size) == (F_SEAL_SEAL, 0o640, 5000)
    files = _files(d)[pid]
    ro = [e for e in files.fds if e.memfd and (e.dev, e.ino) == (a.dev, a.ino) and e.flags & os.O_ACCMODE == 0]
    assert len(ro) == 1 and ro[0].pos == 777 and ro[0].cloexec
    a_fds = {e.fd for e in files.fds if e.memfd and (e.dev, e.ino) == (a.dev, a.ino)}
    assert len(a_fds) == 2 and sum(1 for e in files.fds if e.dup and e.dup_of in a_fds) == 1

    [new] = engine.restore(d)
    assert new == pid and ckpt_proc.children(pid) == [kid]
    after = {p: (_fdinfo(p), _memfd_fds(p), _memfd_areas(p)) for p in (pid, kid)}
    assert after == before
    # One memfd A: the parent's fds and the child's area; one memfd B in both tasks.
    fa = next(n for n, (link, *_) in _memfd_fds(pid).items() if "file_memfd_a" in link)
    assert _ino(f"/proc/{pid}/fd/{fa}") == _area_ino(kid, FILE_BASE + 0x100000)
    assert _area_ino(pid, FILE_BASE) == _area_ino(kid, FILE_BASE)
    assert _verdict(pid, out) == "PASS"


def _image(tmp_path: Path, m: Memfd, data: bytes) -> Mm:
    memfd.data_path(tmp_path, (m.dev, m.ino)).write_bytes(data)
    return Mm(pid=1, memfds=[m])


def test_a_memfd_is_made_again_sparse_with_its_mode_and_seals(tmp_path: Path) -> None:
    size = 10 * PAGE + 5
    m = Memfd(dev=1, ino=7, name="unit", size=size, mode=stat.S_IFREG | 0o640, seals=F_SEAL_GROW | F_SEAL_WRITE,
              runs=[MemfdRun(offset=0, nr_pages=1), MemfdRun(offset=10 * PAGE, nr_pages=1)])
    head, tail = os.urandom(PAGE), os.urandom(5)
    mm = _image(tmp_path, m, head + tail + bytes(PAGE - 5))
    made = memfd.Memfds([mm])
    made.make(mm, tmp_path)
    fd = made.ours[(1, 7)]
    st = os.fstat(fd)
    assert (st.st_size, stat.S_IMODE(st.st_mode), fcntl.fcntl(fd, memfd.F_GET_SEALS)) == \
        (size, 0o640, F_SEAL_GROW | F_SEAL_WRITE)
    assert os.readlink(f"/proc/self/fd/{fd}") == "/memfd:unit (deleted)"
    assert list(removed.data_runs(fd, size)) == [(0, PAGE), (10 * PAGE, size)] and st.st_blocks * 512 == 2 * PAGE
    assert os.pread(fd, size, 0) == head + bytes(9 * PAGE) + tail
    made.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_write_seals_wait_for_the_areas_mapped_writable_before_them(tmp_path: Path) -> None:
    m = Memfd(dev=1, ino=8, name="late", size=PAGE, mode=stat.S_IFREG | 0o600,
              seals=F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
    mm = _image(tmp_path, m, b"")
    area = Vma(start=0x10000, end=0x11000, perms="rw-s", vmflags="rd wr sh mr mw me ms", memfd=True, dev=1,
               inode=8)
    later = Vma(start=0x20000, end=0x21000, perms="r--s", vmflags="rd sh mr me ms", memfd=True, dev=1, inode=8)
    mm.vmas.extend([area, later])
    made = memfd.Memfds([mm, mm])  # two tasks map it writable
    made.make(mm, tmp_path)
    fd = made.ours[(1, 8)]
    assert fcntl.fcntl(fd, memfd.F_GET_SEALS) == 0
    made.mapped(area)
    made.mapped(later)  # mapped after the seal at dump: it does not hold the seal back
    assert fcntl.fcntl(fd, memfd.F_GET_SEALS) == 0
    made.mapped(area)
    assert fcntl.fcntl(fd, memfd.F_GET_SEALS) == F_SEAL_FUTURE_WRITE | F_SEAL_SEAL
    made.close()


def test_damaged_memfd_images_are_refused_in_one_line(tmp_path: Path) -> None:
    m = Memfd(dev=1, ino=9, name="bad", size=PAGE, mode=stat.S_IFREG | 0o600,
              runs=[MemfdRun(offset=0, nr_pages=1)])
    mm = _image(tmp_path, m, b"x" * 100)
    with pytest.raises(images.ImageError, match="holds 100 bytes, memfd bad has 4096"):
        memfd.Memfds([mm]).make(mm, tmp_path)
    m.runs[0].offset = 2 * PAGE
    mm = _image(tmp_path, m, bytes(PAGE))
    with pytest.raises(images.ImageError, match=f"a run at {2 * PAGE} of memfd bad"):
        memfd.Memfds([mm]).make(mm, tmp_path)
    memfd.data_path(tmp_path, (1, 9)).unlink()
    with pytest.raises(CkptError, match="missing"):
        memfd.Memfds([mm]).make(mm, tmp_path)
    stray = Mm(pid=5, vmas=[Vma(start=0x10000, end=0x11000, perms="rw-s", memfd=True, dev=1, inode=99)])
    with pytest.raises(CkptError, match="task 5: area 0x10000 maps memfd 1:99, which its mm image does not"):
        memfd.Memfds([stray])
    with pytest.raises(CkptError, match="memfd 1:99 is not described"):
        memfd.Memfds([]).give(None, (1, 99), os.O_RDONLY)  # type: ignore[arg-type]


def test_only_memfds_count_as_memfds(tmp_path: Path) -> None:
    fd = os.memfd_create("real", os.MFD_CLOEXEC)
    where = f"/proc/self/fd/{fd}"
    assert memfd.is_memfd(os.readlink(where), where, os.stat(where))
    os.close(fd)
    # A removed file elsewhere named like one is not.
    f = Path("/dev/shm") / f"ckpt-test-{os.getpid()}"
    fd = os.open(f, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    f.unlink()
    where = f"/proc/self/fd/{fd}"
    assert not memfd.is_memfd("/memfd:fake (deleted)", where, os.stat(where))
    os.close(fd)
    try:
        fd = os.memfd_create("huge", os.MFD_CLOEXEC | os.MFD_HUGETLB)
    except OSError:
        pytest.skip("no hugetlb memfds here")
    where = f"/proc/self/fd/{fd}"
    try:
        with pytest.raises(Unsupported, match="hugetlb memfd"):
            memfd.is_memfd(os.readlink(where), where, os.stat(where))
    finally:
        os.close(fd)
