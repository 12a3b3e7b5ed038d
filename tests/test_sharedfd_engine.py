"""Open file descriptions shared by a parent and its child (inherited at fork) through the
ckpt engine: the image marks them, and after restore they are one description again (kcmp,
an offset moved by one seen by the other), each task with its own close-on-exec flag, while
look-alike opens of the same file stay apart; the restorer keeps no fd of them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

import engine
from engine import images
from engine.errors import CkptError
from engine.images.files_pb2 import Files
from harness import proc
from native import ffi, lib
from tests.reaping import wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

KCMP_FILE = 0
O_PATH = 0o10000000

# The root (a session of its own) opens a file, a directory (also O_PATH), a file it then
# removes and a memfd, then forks; the child keeps them (inheritable in the child only) and
# opens the file once more itself, as the root did before the fork: same file, flags and
# offset, other descriptions. On SIGUSR1 the root moves the shared file's offset.
TREE = r"""
import os, signal, sys
d = sys.argv[1]
if os.fork():
    os._exit(0)
os.setsid()
data = d + "/shared.dat"
with open(data, "wb") as f:
    f.write(bytes(range(256)) * 64)
fds = {"file": os.open(data, os.O_RDWR | os.O_APPEND), "dir": os.open(d, os.O_RDONLY | os.O_DIRECTORY),
       "opath": os.open(d, O_PATH), "ghost": os.open(d + "/ghost", os.O_RDWR | os.O_CREAT, 0o600),
       "memfd": os.memfd_create("shared")}
os.write(fds["ghost"], b"ghost data")
os.unlink(d + "/ghost")
os.write(fds["memfd"], b"memfd data")
os.lseek(fds["file"], 100, os.SEEK_SET)
own = os.open(data, os.O_RDWR | os.O_APPEND)
os.lseek(own, 100, os.SEEK_SET)
def moved(sig, frame):
    os.lseek(fds["file"], 5000, os.SEEK_SET)
    open(d + "/moved", "w").close()
signal.signal(signal.SIGUSR1, moved)
child = os.fork()
if child == 0:
    os.close(own)  # the root's
    own = os.open(data, os.O_RDWR | os.O_APPEND)
    os.lseek(own, 100, os.SEEK_SET)
    for fd in fds.values():
        os.set_inheritable(fd, True)
else:
    fds["own"] = own
    with open(d + "/ready.tmp", "w") as f:
        f.write(" ".join(f"{k}={v}" for k, v in fds.items()) + f" own={own} child={child}")
    os.rename(d + "/ready.tmp", d + "/ready")
while True:
    signal.pause()
""".replace("O_PATH", str(O_PATH))


def _kcmp(pid_a: int, fd_a: int, pid_b: int, fd_b: int) -> int:
    """kcmp(2) KCMP_FILE: 0 when one open file description."""
    r = int(lib.syscall(lib.SYS_kcmp, ffi.cast("long", pid_a), ffi.cast("long", pid_b), ffi.cast("long", KCMP_FILE),
                        ffi.cast("long", fd_a), ffi.cast("long", fd_b)))
    assert r >= 0, os.strerror(ffi.errno)
    return r


def _pos(pid: int, fd: int) -> int:
    return int(dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines())["pos"])


def _cloexec(pid: int, fd: int) -> bool:
    info = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines())
    return bool(int(info["flags"], 8) & os.O_CLOEXEC)


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[tuple[int, int, dict[str, int], Path]]:
    """(root, child, fd numbers by name, its directory); killed and reaped after."""
    proc.become_subreaper()
    d = tmp_path / "run"
    d.mkdir()
    subprocess.run([sys.executable, "-c", TREE, str(d)], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not (d / "ready").exists():
        assert time.monotonic() < deadline, "the tree did not get ready"
        time.sleep(0.01)
    fds = {k: int(v) for k, v in (x.split("=") for x in (d / "ready").read_text().split())}
    child = fds.pop("child")
    root = proc.read_stat(child).ppid  # type: ignore[union-attr]
    yield root, child, fds, d
    proc.kill_trees([root])
    proc.reap_children()


def _files(d: Path) -> dict[int, Files]:
    _, entries = images.read(images.path_of(d, "files"), "files")
    return {f.pid: f for f in entries}


SHARED = ("file", "dir", "opath", "ghost", "memfd")


def test_inherited_fds_come_back_as_one_description(tree: tuple[int, int, dict[str, int], Path],
                                                    tmp_path: Path) -> None:
    root, child, fds, d = tree
    img = tmp_path / "img"
    engine.dump([root], img)
    wait_gone([root, child])
    files = _files(img)
    by_fd = {pid: {e.fd: e for e in files[pid].fds} for pid in (root, child)}
    ids = {name: by_fd[root][fds[name]].shared for name in SHARED}
    assert all(ids.values()) and len(set(ids.values())) == len(SHARED)
    assert all(by_fd[child][fds[name]].shared == ids[name] for name in SHARED)
    # Look-alikes (same file, flags, offset) are other descriptions: not shared.
    assert by_fd[root][fds["own"]].shared == 0
    assert sum(1 for e in files[child].fds if e.path.endswith("/shared.dat") and not e.shared) == 1

    mine = sorted(os.listdir("/proc/self/fd"))
    assert engine.restore(img) == [root]
    assert proc.read_stat(child).ppid == root  # type: ignore[union-attr]
    assert sorted(os.listdir("/proc/self/fd")) == mine  # the restorer kept no copy
    for name in SHARED:
        fd = fds[name]
        assert _kcmp(root, fd, child, fd) == 0, f"{name}: not one description after restore"
        assert _cloexec(root, fd) and not _cloexec(child, fd), name  # per fd, as dumped
    own = next(e.fd for e in files[child].fds if e.path.endswith("/shared.dat") and not e.shared)
    assert _kcmp(root, fds["file"], child, own) != 0 and _kcmp(root, fds["own"], child, fds["file"]) != 0
    assert _pos(child, fds["file"]) == 100 and _pos(child, own) == 100
    ghost = os.open(f"/proc/{child}/fd/{fds['ghost']}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert os.pread(ghost, 10, 0) == b"ghost data" and os.fstat(ghost).st_nlink == 0
    finally:
        os.close(ghost)
    # An offset moved by the root is the child's offset too; their own opens stay where they were.
    os.kill(root, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not (d / "moved").exists():
        assert time.monotonic() < deadline, "the root did not move its offset"
        time.sleep(0.01)
    assert _pos(child, fds["file"]) == 5000
    assert _pos(child, own) == 100 and _pos(root, fds["own"]) == 100


def test_a_holder_that_disagrees_with_the_first_is_refused(tree: tuple[int, int, dict[str, int], Path],
                                                            tmp_path: Path) -> None:
    root, child, fds, _ = tree
    img = tmp_path / "img"
    engine.dump([root], img)
    wait_gone([root, child])
    entries = list(_files(img).values())
    for e in next(f for f in entries if f.pid == child).fds:
        if e.fd == fds["file"]:
            e.pos = 7
    path = images.path_of(img, "files")
    path.unlink()
    images.write(path, "files", entries)
    mine = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(CkptError, match=f"fd {fds['file']} of task {child}: shares description"):
        engine.restore(img)
    assert not proc.alive(root) and not proc.alive(child)
    assert sorted(os.listdir("/proc/self/fd")) == mine  # closed on failure too
