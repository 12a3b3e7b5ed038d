"""Namespaces through the ckpt engine: a tree whose root made fresh pid, mount, net, ipc and
uts namespaces comes back in fresh ones with the pids at both levels, the host name, lo up
and its own /proc; namespaces whose state is not restored are refused at dump, the tree
left running."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
import engine.errors
from engine.errors import Unsupported
from harness import build
from reaping import kill_all, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, ptrace, clone3 set_tid)")

# The launcher unshares, forks the init (pid 1 inside), which sets the namespaces up, forks a
# child (pid 2) that opens /proc/self/stat of the namespace's proc, and reports its own
# pid as we see it. EXTRA is run by the init before it reports (a refused kind of state).
TREE = r"""
import ctypes, fcntl, os, signal, socket, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def mount(src, target, fstype, flags):
    if libc.mount(src, target.encode(), fstype, flags, None):
        raise OSError(ctypes.get_errno(), f"mount {target}")
def unshare(flags):
    if libc.unshare(flags):
        raise OSError(ctypes.get_errno(), "unshare")
unshare(0x20000000 | 0x00020000 | 0x40000000 | 0x08000000 | 0x04000000)  # pid, mnt, net, ipc, uts
init = os.fork()
if init:
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(init))
    os._exit(0)
os.setsid()
mount(None, "/", None, (1 << 14) | (1 << 18))  # MS_REC | MS_PRIVATE
mount(b"proc", "/proc", b"proc", 2 | 4 | 8)  # nosuid, nodev, noexec
socket.sethostname("ckpt-ns-test")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh22x", b"lo", 0))[:18])[1]
fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))
s.close()
if os.fork() == 0:
    stat = open("/proc/self/stat")
    while True:
        signal.pause()
EXTRA
time.sleep(0.2)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    signal.pause()
"""

# What a task joining the namespaces sees: host name, pids of /proc, lo carrying traffic.
LOOK = r"""
import os, socket
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname(), timeout=2)
print(socket.gethostname(), sorted(p for p in os.listdir("/proc") if p.isdigit())[:2],
      [line.split()[-1] for line in open("/proc/1/status") if line.startswith("NSpid:")], "lo ok")
"""


def _start(tmp_path: Path, extra: str = "") -> int:
    ready = tmp_path / "init"
    launcher = subprocess.Popen([sys.executable, "-c", TREE.replace("EXTRA", extra), str(ready)])
    assert launcher.wait() == 0, "the launcher failed"
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the namespaces did not get ready"
        time.sleep(0.01)
    return int(ready.read_text())


def _look(init: int) -> str:
    """Run LOOK inside the init's namespaces."""
    r = subprocess.run([str(build.helper("zdtm-nsinit")), "enter", str(init), sys.executable, "-c", LOOK],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _in(init: int, code: str) -> str:
    """Run Python code inside the init's namespaces (a process forked into its pid namespace)."""
    r = subprocess.run([str(build.helper("zdtm-nsinit")), "enter", str(init), sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _levels(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no NSpid for {pid}")


def _kill(init: int) -> None:
    """Killing the init empties its pid namespace; it is ours to reap once restored."""
    try:
        os.kill(init, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{init}") and time.monotonic() < deadline:
        try:
            os.waitpid(init, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.005)


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_namespaces_come_back(tmp_path: Path) -> None:
    init = _start(tmp_path)
    try:
        (child,) = _children(init)
        seen = _look(init)
        assert seen == "ckpt-ns-test ['1', '2'] ['1'] lo ok", seen
        stat_fd = next(fd for fd in os.listdir(f"/proc/{child}/fd")
                       if os.readlink(f"/proc/{child}/fd/{fd}") == "/proc/2/stat")
        engine.dump([init], tmp_path / "img")
        _kill(init)
        assert engine.restore(tmp_path / "img") == [init]
        assert _levels(init) == [init, 1] and _levels(child) == [child, 2]
        assert _children(init) == [child]
        for kind in ("pid", "mnt", "net", "ipc", "uts"):
            assert os.readlink(f"/proc/{init}/ns/{kind}") != os.readlink(f"/proc/self/ns/{kind}"), kind
            assert os.readlink(f"/proc/{child}/ns/{kind}") == os.readlink(f"/proc/{init}/ns/{kind}"), kind
        assert _look(init) == seen
        # The child's file is its namespace's /proc again, not ours.
        assert os.readlink(f"/proc/{child}/fd/{stat_fd}") == "/proc/2/stat"
        with open(f"/proc/{child}/fd/{stat_fd}") as f:
            assert f.read().startswith("2 (")
    finally:
        _kill(init)


def test_the_next_pid_inside_is_the_one_it_would_have_been(tmp_path: Path) -> None:
    """Every restored pid came by set_tid, which leaves a pid namespace's cursor alone: the
    namespace's ns_last_pid must be given back, or the next fork there gets another pid."""
    init = _start(tmp_path)
    try:
        _in(init, "open('/proc/sys/kernel/ns_last_pid', 'w').write('500')")
        engine.dump([init], tmp_path / "img")
        _kill(init)
        assert engine.restore(tmp_path / "img") == [init]
        assert _in(init, "import os; print(os.getpid())") == "501"
    finally:
        _kill(init)


@pytest.mark.parametrize("extra, why", [
    ("unshare(0x10000000)", r"in a user namespace of its own"),  # CLONE_NEWUSER
    ("mount(b'none', '/mnt', b'tmpfs', 0)", r"the tmpfs mount at /mnt made in its mount namespace is not restored"),
    ("libc.shmget(0, 4096, 0o1600)",
     r"its ipc namespace holds SysV objects \(1 shared memory segments"),
])
def test_unrestorable_namespace_state_is_refused(tmp_path: Path, extra: str, why: str) -> None:
    init = _start(tmp_path, extra)
    before = [init, *_children(init)]
    try:
        with pytest.raises(Unsupported, match=why):
            engine.dump([init], tmp_path / "img")
        assert not (tmp_path / "img").exists()
        assert [init, *_children(init)] == before
        for p in before:  # let go: neither stopped nor traced
            status = Path(f"/proc/{p}/status").read_text()
            assert "TracerPid:\t0\n" in status and ("State:\tS" in status or "State:\tR" in status)
        assert _look(init).startswith("ckpt-ns-test")
    finally:
        _kill(init)


# A host tree: the root leads its session, has a sleeping child and a zombie child.
HOST_TREE = r"""
import os, signal, sys
os.setsid()
if os.fork() == 0:
    while True:
        signal.pause()
if os.fork() == 0:
    os._exit(7)
open(sys.argv[1], "w").close()
while True:
    signal.pause()
"""


def test_new_pidns_keeps_pids_inside_when_they_are_taken_outside(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", HOST_TREE, str(ready)])
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the tree did not build"
        time.sleep(0.01)
    time.sleep(0.1)  # the zombie is one
    live, zombie = sorted(_children(p.pid), key=lambda c: Path(f"/proc/{c}/stat").read_text().split()[2] == "Z")
    engine.dump([p.pid], tmp_path / "img")
    p.wait()
    from test_tree_engine import _hold_pid
    wait_gone([live, zombie])
    holder = _hold_pid(p.pid)  # the root's pid is taken here: only a new namespace has it free
    init = 0
    try:
        with pytest.raises(engine.errors.CkptError, match=f"pid {p.pid} is already taken"):
            engine.restore(tmp_path / "img")
        (root,) = engine.restore(tmp_path / "img", new_pidns=True)
        init = int(Path(f"/proc/{root}/stat").read_text().split(") ")[1].split()[1])
        assert _levels(init)[1:] == [1]
        assert _levels(root)[1:] == [p.pid] and root != p.pid
        inside = {_levels(c)[-1]: c for c in _children(root)}
        assert sorted(inside) == sorted([live, zombie])
        assert Path(f"/proc/{inside[zombie]}/stat").read_text().split()[2] == "Z"
        # Its own /proc: the root's pid there is the one it had.
        assert Path(f"/proc/{init}/root/proc/{p.pid}/status").read_text().count(f"NSpid:\t{p.pid}\n") == 1
        # The init passes the root's end on, and the namespace ends with it.
        os.kill(root, signal.SIGKILL)
        _, status = os.waitpid(init, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGKILL
        init = 0
        wait_gone([root, *inside.values()])
        assert not any(os.path.exists(f"/proc/{c}") for c in [root, *inside.values()])
    finally:
        kill_all([holder])
        if init:
            _kill(init)
