"""Files removed or opened O_PATH through the ckpt engine: the corpus programs (run in a
private directory) are dumped and restored; the images hold what the kernel showed (data
extents of a sparse ghost, the surviving link of an unlinked name, O_PATH flags, a removed
cwd's mode) and the restored tasks show it again, their own checks passing."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

import engine
from engine import images, removed
from engine import proc as eproc
from engine.errors import CkptError, ProcessGone, Unsupported
from engine.images.files_pb2 import Fd, Files
from harness import build, paths, proc, spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

O_PATH = 0o10000000
MIB = 1 << 20

Start = Callable[[str], tuple[int, Path, Path]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start a corpus program in its own directory: (root pid, outfile, directory); killed after."""
    started: list[int] = []

    def run(name: str) -> tuple[int, Path, Path]:
        s = next(x for x in spec.load_all([paths.SPECS]) if x.name == name)
        build.build([(s.source, s.program)] if s.source else [])
        proc.become_subreaper()
        d = tmp_path / f"run{len(started)}"
        d.mkdir()
        subprocess.run([str(s.program), f"--pidfile={d}/pid", f"--outfile={d}/out"], cwd=d, check=True,
                       timeout=30)
        started.append(int((d / "pid").read_text()))
        return started[-1], d / "out", d

    yield run
    proc.kill_trees(started)
    proc.reap_children()


def _files(d: Path) -> Files:
    _, [files] = images.read(images.path_of(d, "files"), "files")
    return files


def _fdinfo(pid: int) -> dict[int, tuple[str, str, str]]:
    """fd -> (link, flags, pos), as the visible-state oracle sees them."""
    out = {}
    for n in os.listdir(f"/proc/{pid}/fd"):
        info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{n}").read_text().splitlines())
        out[int(n)] = (os.readlink(f"/proc/{pid}/fd/{n}"), info["flags"].strip(), info["pos"].strip())
    return out


def _verdict(pid: int, out: Path) -> str:
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    return out.read_text().splitlines()[-1]


def _unlinked(files: Files) -> Fd:
    [e] = [e for e in files.fds if e.unlinked]
    return e


def test_extents_skip_holes_and_a_ghost_comes_back_sparse(tmp_path: Path) -> None:
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(32 * MIB)
        f.seek(8 * MIB)
        f.write(b"x" * 4000)
        f.seek(32 * MIB - 10)
        f.write(b"end of it!")
    st = src.stat()
    runs = removed.extents(str(src), st.st_size, "test")
    assert [x.offset for x in runs] == [8 * MIB, 32 * MIB - 4096]
    assert sum(len(x.data) for x in runs) == 2 * 4096
    e = Fd(path=str(tmp_path / "ghost"), mode=0o100640, unlinked=True, size=st.st_size, extents=runs)
    temps = removed.Temporary()
    temps.ghost(e)
    made = Path(e.path)
    assert made.read_bytes() == src.read_bytes()
    assert made.stat().st_blocks * 512 < MIB and stat.S_IMODE(made.stat().st_mode) == 0o640
    temps.remove()
    assert not made.exists()
    e.extents[1].offset = 32 * MIB - 100
    with pytest.raises(CkptError, match="runs past its size"):
        removed.Temporary().ghost(e)


def test_large_ghost_is_stored_by_extents_and_restored_sparse(start: Start, tmp_path: Path) -> None:
    pid, out, _ = start("static/file_ghost_large")
    before = _fdinfo(pid)
    d = tmp_path / "img"
    engine.dump([pid], d)
    e = _unlinked(_files(d))
    assert e.path.endswith("/ghost_large.dat") and e.size == 64 * MIB and not e.link
    stored = sum(len(x.data) for x in e.extents)
    assert 16 <= len(e.extents) and stored < 2 * MIB  # 16 chunks of at most 64 KiB, no holes
    assert e.extents[0].offset == 0 and e.extents[-1].offset + len(e.extents[-1].data) == e.size
    [new] = engine.restore(d)
    assert new == pid and _fdinfo(pid) == before
    st = os.stat(f"/proc/{pid}/fd/{e.fd}")
    assert st.st_size == 64 * MIB and st.st_nlink == 0 and st.st_blocks * 512 < 2 * MIB
    assert not os.path.lexists(e.path)
    assert _verdict(pid, out) == "PASS"


def test_unlinked_name_comes_back_as_a_link_of_its_surviving_one(start: Start, tmp_path: Path) -> None:
    pid, out, cwd = start("static/file_hardlink")
    before = _fdinfo(pid)
    d = tmp_path / "img"
    engine.dump([pid], d)
    e = _unlinked(_files(d))
    assert e.path == str(cwd / "hl_c") and e.link in (str(cwd / "hl_a"), str(cwd / "hl_b"))
    assert not e.extents and e.size == 0  # not a copy: the inode itself
    # An image naming a link that is gone: the restore says so and leaves nothing behind.
    path, files = images.path_of(d, "files"), _files(d)
    good = files.SerializeToString()
    _unlinked(files).link = str(cwd / "nowhere")
    path.unlink()
    images.write(path, "files", [files])
    with pytest.raises(CkptError, match=f"cannot restore unlinked {e.path} through its other link {cwd}/nowhere"):
        engine.restore(d)
    assert not proc.alive(pid) and not os.path.lexists(e.path)
    path.unlink()
    images.write(path, "files", [Files.FromString(good)])
    [new] = engine.restore(d)
    assert new == pid and _fdinfo(pid) == before
    st = os.stat(f"/proc/{pid}/fd/{e.fd}")
    assert st.st_nlink == 2 and st.st_ino == (cwd / "hl_a").stat().st_ino
    assert not os.path.lexists(e.path)
    assert _verdict(pid, out) == "PASS"


def test_o_path_fds_keep_their_flags_and_the_symlink_itself(start: Start, tmp_path: Path) -> None:
    pid, out, cwd = start("static/file_opath")
    before = _fdinfo(pid)
    d = tmp_path / "img"
    engine.dump([pid], d)
    opath = {e.fd: e for e in _files(d).fds if e.flags & O_PATH}
    assert len(opath) == 4
    [lnk] = [e for e in opath.values() if stat.S_ISLNK(e.mode)]
    assert lnk.path == str(cwd / "opath.lnk") and lnk.flags & os.O_NOFOLLOW
    assert sum(e.cloexec for e in opath.values()) == 1
    [new] = engine.restore(d)
    assert new == pid and _fdinfo(pid) == before
    assert stat.S_ISLNK(os.stat(f"/proc/{pid}/fd/{lnk.fd}").st_mode)
    assert _verdict(pid, out) == "PASS"


def test_removed_cwd_is_entered_again_and_stays_removed(start: Start, tmp_path: Path) -> None:
    pid, out, cwd = start("static/file_deleted_cwd")
    gone = cwd / "dcwd.d" / "gone"
    assert os.readlink(f"/proc/{pid}/cwd") == f"{gone} (deleted)"
    d = tmp_path / "img"
    engine.dump([pid], d)
    files = _files(d)
    assert files.cwd == str(gone) and files.HasField("cwd_removed")
    assert files.cwd_removed.mode == stat.S_IFDIR | 0o751
    # Its path taken again: refused with the reason, nothing left behind.
    gone.mkdir()
    with pytest.raises(CkptError, match=f"cannot restore the removed working directory {gone}: File exists"):
        engine.restore(d)
    gone.rmdir()
    assert not proc.alive(pid)
    [new] = engine.restore(d)
    assert new == pid and os.readlink(f"/proc/{pid}/cwd") == f"{gone} (deleted)"
    st = os.stat(f"/proc/{pid}/cwd")
    assert st.st_nlink == 0 and st.st_mode == stat.S_IFDIR | 0o751 and not gone.exists()
    assert _verdict(pid, out) == "PASS"


def test_other_link_is_found_beside_the_name_or_among_the_fds(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f").write_text("x")
    os.link(a / "f", a / "g")
    os.link(a / "f", b / "h")
    st = (a / "f").stat()
    (a / "f").unlink()
    assert removed.other_link(str(a / "f"), st, [], "t") == str(a / "g")
    (a / "g").unlink()
    assert removed.other_link(str(a / "f"), st, ["/dev/null", str(b / "h")], "t") == str(b / "h")
    with pytest.raises(Unsupported, match=f"t: unlinked {a}/f has 1 other link"):
        removed.other_link(str(a / "f"), os.stat(b / "h"), [], "t")


def test_fds_read_in_one_call_are_what_proc_shows(tmp_path: Path) -> None:
    """proc.fds (native/fds.c) gives every fd with /proc's link, stat and fdinfo flags and
    position: past its first buffer (100 fds), with a link longer than its link buffer, and
    for a task that is gone, ProcessGone."""
    deep = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 200)
    deep.mkdir(parents=True)
    opened = [os.open(deep / "long", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)]
    os.write(opened[0], b"12345")
    r, w = os.pipe()
    os.set_inheritable(r, True)  # no O_CLOEXEC
    opened += [r, w, os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)]
    opened += [os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC) for _ in range(100)]
    try:
        got = eproc.fds(os.getpid())
        for fd in opened:
            st = os.stat(f"/proc/self/fd/{fd}")
            with open(f"/proc/self/fdinfo/{fd}") as f:
                info = dict(line.split(":", 1) for line in f)
            want = eproc.OpenFd(os.readlink(f"/proc/self/fd/{fd}"), int(info["flags"], 8), int(info["pos"]),
                                st.st_mode, st.st_dev, st.st_ino, st.st_nlink, st.st_size)
            assert got[fd] == want, fd
        assert len(got[opened[0]].link) > 512 and got[opened[0]].pos == 5 and got[opened[0]].st_size == 5
        assert got[opened[-1]].flags & os.O_CLOEXEC and not got[r].flags & os.O_CLOEXEC
    finally:
        for fd in opened:
            os.close(fd)
    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(ProcessGone):
        eproc.fds(child.pid)
