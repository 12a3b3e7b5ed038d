"""Process trees through the ckpt engine: a tree with a session, groups, zombies, an orphan
of a dead session leader, a stopped task and a subreaper comes back with every pid, parent,
group, session and state, and still answers; bad roots and failed restores leave the
system as it was."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from cbuild import compile_c
from reaping import kill_all, wait_gone
import native
from engine.errors import CkptError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

# root R: subreaper, session leader; SIGUSR1 makes it reap its zombie child and write the status
#  |- Z   zombie (exit 42)
#  |- G   its own group
#  |   |- O  in G's group
#  |   `- S  setsid, then a zombie (exit 3) of G
#  |- T   made by S in S's session, reparented to R when S died
#  `- P   stopped (SIGSTOP)
TREE = r"""
import ctypes, os, signal, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
os.setsid()
out = sys.argv[1]
def park():
    while True:
        signal.pause()
zombie = os.fork()
if zombie == 0:
    os._exit(42)
def on_usr1(*_):
    pid, st = os.waitpid(zombie, 0)
    with open(out + ".reaped", "w") as f:
        f.write(f"{pid} {st}")
signal.signal(signal.SIGUSR1, on_usr1)
g = os.fork()
if g == 0:
    os.setpgid(0, 0)
    if os.fork() == 0:
        park()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(0.2)  # until its parent is gone
            park()
        os._exit(3)
    park()
if os.fork() == 0:
    os.kill(os.getpid(), signal.SIGSTOP)
    park()
time.sleep(0.5)
with open(out, "w") as f:
    f.write("ready")
park()
"""


def _table(root: int) -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, sid, state class) of every task under root."""
    stats: dict[int, tuple[int, int, int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                raw = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            f = raw[raw.rindex(")") + 2:].split()
            state = f[0] if f[0] in "ZT" else "live"
            stats[int(name)] = (int(f[1]), int(f[2]), int(f[3]), state)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = stats[pid]
        todo += [p for p, s in stats.items() if s[0] == pid]
    return out


def _start(tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    ready = tmp_path / name
    p = subprocess.Popen([sys.executable, "-c", TREE, str(ready)])
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the tree did not build"
        time.sleep(0.01)
    return p, ready


def test_tree_comes_back_whole_and_answers(tmp_path: Path) -> None:
    p, ready = _start(tmp_path, "tree")
    before = _table(p.pid)
    assert len(before) == 7 and sorted(s[3] for s in before.values()).count("Z") == 2
    try:
        engine.dump([p.pid], tmp_path / "img")
        p.wait()
        wait_gone(list(before))
        roots = engine.restore(tmp_path / "img")
        assert roots == [p.pid]
        after = _table(p.pid)
        assert after == before
        # It answers: the root reaps its zombie with the status it died with...
        zombie = next(pid for pid, s in before.items() if s[3] == "Z" and s[0] == p.pid)
        os.kill(p.pid, signal.SIGUSR1)
        reaped = Path(f"{ready}.reaped")
        deadline = time.monotonic() + 5
        while not reaped.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reaped.read_text() == f"{zombie} {42 << 8}"
        # ... and the stopped task goes on when continued.
        stopped = next(pid for pid, s in after.items() if s[3] == "T")
        os.kill(stopped, signal.SIGCONT)
        time.sleep(0.05)
        assert _table(p.pid)[stopped][3] != "T"
    finally:
        kill_all(list(_table(p.pid)) if os.path.exists(f"/proc/{p.pid}") else [])
        kill_all([p.pid])


def test_two_roots_in_one_dump(tmp_path: Path) -> None:
    a, _ = _start(tmp_path, "a")
    b, _ = _start(tmp_path, "b")
    before = {**_table(a.pid), **_table(b.pid)}
    try:
        engine.dump([a.pid, b.pid], tmp_path / "img")
        a.wait(), b.wait()
        wait_gone(list(before))
        assert engine.restore(tmp_path / "img") == [a.pid, b.pid]
        assert {**_table(a.pid), **_table(b.pid)} == before
    finally:
        for root in (a.pid, b.pid):
            kill_all(list(_table(root)) if os.path.exists(f"/proc/{root}") else [])
            kill_all([root])


def test_overlapping_roots_are_refused_and_left_running(tmp_path: Path) -> None:
    p, _ = _start(tmp_path, "tree")
    before = _table(p.pid)
    inner = next(pid for pid, s in before.items() if s[0] == p.pid and s[3] == "live")
    try:
        with pytest.raises(CkptError, match=f"root {inner} is inside the tree of root {p.pid}"):
            engine.dump([p.pid, inner], tmp_path / "img")
        with pytest.raises(CkptError, match="given twice"):
            engine.dump([p.pid, p.pid], tmp_path / "img")
        assert not (tmp_path / "img").exists()
        assert _table(p.pid) == before
    finally:
        kill_all(list(before))


def test_failed_restore_leaves_no_process(tmp_path: Path) -> None:
    p, _ = _start(tmp_path, "tree")
    before = _table(p.pid)
    engine.dump([p.pid], tmp_path / "img")
    p.wait()
    wait_gone(list(before))
    # A deep task's pid is taken: the tree is half made when the plan fails.
    orphan = next(pid for pid, s in before.items() if s[0] == p.pid and s[2] not in (p.pid,))
    holder = _hold_pid(orphan)
    try:
        with pytest.raises(CkptError, match=f"pid {orphan} is already taken"):
            engine.restore(tmp_path / "img")
        time.sleep(0.05)
        left = [pid for pid in before if pid != orphan and os.path.exists(f"/proc/{pid}")
                and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"]
        assert left == []
    finally:
        kill_all([holder])


def _hold_pid(pid: int) -> int:
    """A sleeping child of ours with exactly this pid."""
    from engine.plan import Fork, Plan, Table, TaskRow
    from engine import execute

    table = Table({pid: TaskRow(pid, 0, 0, 0)})
    return execute.run(Plan({0: [Fork(pid)], pid: []}), table)[pid]


def test_the_executors_children_become_the_small_stub_and_fork_from_it() -> None:
    """The restorer's children exec native/ckpt-stub (a fork of the interpreter would make every
    stub as big as it); their own children are forks of the stub, and keep the fd we asked."""
    from engine import execute
    from engine.plan import Fork, Plan, Table, TaskRow

    root, kid = _free_pid(), _free_pid(1)
    table = Table({root: TaskRow(root, 0, 0, 0), kid: TaskRow(kid, root, 0, 0)})
    r, w = os.pipe()  # close-on-exec in Python: the stubs must get it back all the same
    try:
        pids = execute.run(Plan({0: [Fork(root)], root: [Fork(kid)], kid: []}), table, keep=w)
        try:
            stub = Path(native.__file__).with_name("ckpt-stub")
            for pid in (root, kid):
                assert os.readlink(f"/proc/{pids[pid]}/exe") == str(stub)
                assert os.readlink(f"/proc/{pids[pid]}/fd/{w}") == os.readlink(f"/proc/self/fd/{w}")
            # Small: a static program's few areas, not the interpreter's hundreds.
            assert len(Path(f"/proc/{pids[kid]}/maps").read_text().splitlines()) < 16
        finally:
            for pid in (pids[kid], pids[root]):
                os.kill(pid, signal.SIGKILL)
            for pid in (pids[root], pids[kid]):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass  # the kid's corpse went to whoever reaps orphans here
    finally:
        os.close(r)
        os.close(w)


def _free_pid(skip: int = 0) -> int:
    """A pid no task has now, away from the ones handed out next (wrapping at pid_max)."""
    top = int(Path("/proc/sys/kernel/pid_max").read_text())
    pid = int(Path("/proc/sys/kernel/ns_last_pid").read_text()) + top // 4 + 2 * skip
    while True:
        pid = 300 + (pid - 300) % (top - 300)  # the kernel hands out no pid below 300 after a wrap
        if not os.path.exists(f"/proc/{pid}"):
            return pid
        pid += 2


ZOMBIE_MAIN = Path(__file__).resolve().parent / "data" / "zombie_main.c"


@pytest.fixture(scope="module")
def zombie_main(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(ZOMBIE_MAIN, tmp_path_factory.mktemp("zombie_main") / "zombie_main")


def _threads(pid: int) -> dict[int, tuple[str, int]]:
    """tid -> (state class, exit code field 52 of proc(5)) of every thread of the process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        f = raw[raw.rindex(")") + 2:].split()
        out[int(tid)] = (f[0] if f[0] in "ZT" else "live", int(f[49]))
    return out


def _await_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never came"
        time.sleep(0.005)
    return path.read_text()


def _start_zombie_main(program: Path, prefix: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The parent (our child) and its child whose main thread exited with code 13."""
    p = subprocess.Popen([str(program), str(prefix)])
    return p, int(_await_file(Path(f"{prefix}.ready")))


def _assert_zombie_main(pid: int, before: dict[int, tuple[str, int]], prefix: Path) -> None:
    """The main thread is a zombie holding exit code 13, the threads are those of before and
    alive, the parent cannot reap the process; once the threads exit it can, with 13."""
    assert _threads(pid) == before
    assert before[pid] == ("Z", 13 << 8)
    assert all(st == ("live", 0) for tid, st in before.items() if tid != pid) and len(before) == 3
    time.sleep(0.05)  # the parent sleeps in waitpid: a reapable child would be reaped by now
    assert not Path(f"{prefix}.reaped").exists()
    Path(f"{prefix}.go").touch()  # each thread checks its tid and TLS, then exits with 13
    assert _await_file(Path(f"{prefix}.reaped")) == f"{pid} {13 << 8}"


def test_main_thread_that_exited_alone_comes_back_a_zombie(tmp_path: Path, zombie_main: Path) -> None:
    prefix = tmp_path / "zm"
    p, child = _start_zombie_main(zombie_main, prefix)
    before = _threads(child)
    try:
        engine.dump([p.pid], tmp_path / "img")
        p.wait()
        wait_gone([p.pid, *before])
        assert engine.restore(tmp_path / "img") == [p.pid]
        _assert_zombie_main(child, before, prefix)
    finally:
        kill_all([child, p.pid])
        kill_all([p.pid])


def test_main_thread_that_exited_alone_is_left_as_it_was(tmp_path: Path, zombie_main: Path) -> None:
    """By a failed dump (the child given as a root too) and by one that leaves it running."""
    prefix = tmp_path / "zm"
    p, child = _start_zombie_main(zombie_main, prefix)
    before = _threads(child)
    try:
        with pytest.raises(CkptError, match=f"root {child} is inside the tree of root {p.pid}"):
            engine.dump([p.pid, child], tmp_path / "img")
        assert _threads(child) == before
        engine.dump([p.pid], tmp_path / "img", leave_running=True)
        _assert_zombie_main(child, before, prefix)
    finally:
        kill_all([child, p.pid])
        kill_all([p.pid])
