"""Freezing through the ckpt engine: `ckpt dump --cgroup` dumps every task of a cgroup v2
directory and its descendants (its topmost tasks are the roots, each dumped with its whole
tree, also a child moved out of the cgroup) and the restore brings the tree back; a bad
cgroup is one clear line with nothing frozen. A process that keeps creating threads or a
chain that keeps forking while we freeze makes the dump give up with one line naming the
task, and every task is left running untraced. Every program runs in a test cgroup, killed
(cgroup.kill) and removed afterwards, under a subreaper of ours that reaps it all."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import pytest

import engine
from engine import cli, tree
from engine.errors import CkptError
from engine.tree import KeepsGrowing
from reaping import kill_all, wait_gone

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, cgroups, clone3 set_tid)"),
              pytest.mark.skipif(not tree.cgroup2_mounts(), reason="no cgroup v2 hierarchy mounted")]

# Runs argv in the cgroup argv[1] as its child, prints the child's pid, and reaps every task
# that comes to it (a subreaper: the orphans of the tree) until none is left.
NURSERY = r"""
import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
cg, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write("0")
    os.execvp(argv[0], argv)
print(pid, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""

# R  session leader, in the cgroup
#  |- A  in the child cgroup sub/
#  |   `- C  moved out to another cgroup: still in R's tree, so dumped with it
#  |- Z  zombie (exit 7), and Y: a zombie that left an orphan
#  `- G  its own group
# O  Y's orphan, now the nursery's: a second root (its parent is outside the cgroup)
TREE = r"""
import os, signal, sys, time
cg, other, ready = sys.argv[1:4]
def park():
    while True:
        signal.pause()
def move(where):
    with open(os.path.join(where, "cgroup.procs"), "w") as f:
        f.write("0")
os.setsid()
if os.fork() == 0:
    move(os.path.join(cg, "sub"))
    if os.fork() == 0:
        move(other)
        park()
    park()
if os.fork() == 0:
    os._exit(7)
if os.fork() == 0:
    os.setpgid(0, 0)
    park()
if os.fork() == 0:
    if os.fork() == 0:
        time.sleep(0.3)  # until its parent is gone
        os.setsid()
        park()
    os._exit(0)
time.sleep(0.6)
with open(ready, "w") as f:
    f.write("ready")
park()
"""

# A thread bomb: CHAINS relays, each thread creates the next and exits at once, so the
# threads we list are mostly gone when we come to seize them, and new ones keep appearing.
RELAY_C = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *relay(void *arg) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 65536);
    while (pthread_create(&t, &a, relay, arg) != 0)
        ;
    return NULL;
}
int main(int argc, char **argv) {
    for (int i = 0; i < atoi(argv[1]); i++)
        relay(NULL);
    for (;;)
        pause();
}
"""

# A fork chain: each new process forks the next at once (up to a depth), and stays.
CHAIN_C = r"""
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 2)
        signal(SIGCHLD, SIG_IGN);
    for (int i = 0; i < atoi(argv[1]); i++)
        if (fork() != 0)
            break;
    for (;;)
        pause();
}
"""

# A parent that ignores SIGCHLD and keeps forking children that exit at once: the kernel
# reaps them as they exit, so a child we list may be gone before we look at it.
SPAWNER_C = r"""
#include <signal.h>
#include <unistd.h>
int main(void) {
    signal(SIGCHLD, SIG_IGN);
    for (;;)
        if (fork() == 0)
            _exit(0);
}
"""

CHAINS = 16
CHAIN_DEPTH = 1000  # far more than the chain grows while a dump follows it


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C bombs, compiled once."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    out = tmp_path_factory.mktemp("bombs")
    made: dict[str, Path] = {}
    for name, src in (("relay", RELAY_C), ("chain", CHAIN_C), ("spawner", SPAWNER_C)):
        (out / f"{name}.c").write_text(src)
        subprocess.run(["gcc", "-O2", "-pthread", "-o", str(out / name), str(out / f"{name}.c")], check=True)
        made[name] = out / name
    return made


@contextmanager
def _cgroup(name: str) -> Iterator[Path]:
    """A fresh cgroup v2 directory; every task in it (and below) killed and the directories
    removed afterwards, even on failure."""
    path = tree.cgroup2_mounts()[0] / f"ckpt-test-{os.getpid()}-{name}"
    path.mkdir()
    try:
        yield path
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    """Kill what the cgroup holds and remove it, its descendants first."""
    deadline = time.monotonic() + 10
    while path.exists():
        if tree.cgroup_members(path):
            _kill_members(path)
            time.sleep(0.01)
            assert time.monotonic() < deadline, f"{path}: tasks survive"
            continue
        for top, _, _ in os.walk(path, topdown=False):
            try:
                os.rmdir(top)
            except OSError:
                assert time.monotonic() < deadline, f"{top}: cannot remove"
                time.sleep(0.01)


def _kill_members(path: Path) -> None:
    """cgroup.kill (Linux 5.14), else SIGKILL to each task listed."""
    if (path / "cgroup.kill").exists():
        (path / "cgroup.kill").write_text("1")
        return
    for pid in tree.cgroup_members(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def _nursery(cg: Path, argv: list[str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """argv started in the cgroup under a subreaper of ours; (the subreaper, argv's pid). On
    the way out the cgroup is killed, then what is left below the subreaper (tasks moved to
    other cgroups), and the subreaper, having reaped all, is waited for."""
    p = subprocess.Popen([sys.executable, "-c", NURSERY, str(cg), *argv], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        deadline = time.monotonic() + 10
        while _cmdline(pid) != argv:  # until it runs argv (the fork of the subreaper did not exec yet)
            assert time.monotonic() < deadline, f"{argv[0]} did not start"
            time.sleep(0.001)
        yield p, pid
    finally:
        _kill_members(cg)
        deadline = time.monotonic() + 10
        while p.poll() is None and time.monotonic() < deadline:
            kill_all(_descendants([p.pid])[1:])
            time.sleep(0.01)
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout is not None:
            p.stdout.close()


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().split("\0")[:-1]
    except OSError:
        return []


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat fields after comm (field n of proc(5) is index n - 3)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()


def _descendants(roots: list[int]) -> list[int]:
    """The roots and every task below them."""
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                kids.setdefault(int(_stat(int(name))[1]), []).append(int(name))
            except (OSError, IndexError):
                continue
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += kids.get(pid, [])
    return out


def _table(pids: list[int]) -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, or 0 outside the set; pgid; sid; Z, T or live)."""
    out = {}
    for pid in pids:
        f = _stat(pid)
        ppid = int(f[1])
        out[pid] = (ppid if ppid in pids else 0, int(f[2]), int(f[3]), f[0] if f[0] in "ZT" else "live")
    return out


def _held(pids: list[int], cpus: set[int] | None = None) -> list[str]:
    """Threads of these tasks that are traced, stopped, or not on their CPUs (those the test
    runs on unless given): none, once a dump let go."""
    cpus = cpus or os.sched_getaffinity(0)
    bad = []
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue  # a thread that just exited
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            tracer, state = fields["TracerPid"].strip(), fields["State"].strip()
            if tracer != "0" or state[0] in "tT":
                bad.append(f"{pid}/{tid}: TracerPid {tracer}, State {state}")
            try:
                if os.sched_getaffinity(int(tid)) != cpus:
                    bad.append(f"{pid}/{tid}: on CPUs {sorted(os.sched_getaffinity(int(tid)))}")
            except OSError:
                continue
    return bad


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.01)


# --- --cgroup ---------------------------------------------------------------------------------

def test_cgroup_dump_and_restore(tmp_path: Path) -> None:
    with _cgroup("tree") as cg, _cgroup("other") as other:
        (cg / "sub").mkdir()
        ready = tmp_path / "ready"
        with _nursery(cg, [sys.executable, "-c", TREE, str(cg), str(other), str(ready)]) as (nursery, root):
            _wait_for(ready)
            orphan = next(p for p in _descendants([nursery.pid]) if int(_stat(p)[1]) == nursery.pid and p != root)
            pids = _descendants([root, orphan])
            before = _table(pids)
            assert len(before) == 7 and [s[3] for s in before.values()].count("Z") == 2
            outside = set(pids) - tree.cgroup_members(cg)
            assert len(outside) == 3  # the two zombies (cgroup.procs lists none) and the moved child
            # Relative to the cgroup2 mount, as a user would name it.
            rel = str(cg.relative_to(tree.cgroup2_mounts()[0]))
            assert cli.main(["dump", "--cgroup", rel, "-D", str(tmp_path / "img")]) == 0
            nursery.wait(timeout=10)  # it reaped the killed trees, so their pids are free
        wait_gone(pids)
        roots = engine.restore(tmp_path / "img")
        try:
            assert roots == sorted([root, orphan])
            assert _table(_descendants(roots)) == before
        finally:
            back = _descendants(roots)
            kill_all(back)
            wait_gone(back)


def test_cgroup_dump_api_leave_running(tmp_path: Path) -> None:
    """engine.dump with a cgroup (absolute) and no roots; the tree runs on untraced."""
    with _cgroup("api") as cg, _cgroup("api-other") as other:
        (cg / "sub").mkdir()
        ready = tmp_path / "ready"
        with _nursery(cg, [sys.executable, "-c", TREE, str(cg), str(other), str(ready)]) as (nursery, root):
            _wait_for(ready)
            pids = _descendants([nursery.pid])[1:]
            before = _table(pids)
            roots = engine.dump([], tmp_path / "img", leave_running=True, cgroup=cg)
            assert root in roots and len(roots) == 2
            assert _table(pids) == before and _held(pids) == []


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ckpt: ") and match in err, err


def test_bad_cgroups_are_one_line_and_freeze_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = str(tmp_path / "img")
    _one_line_error(["dump", "--cgroup", f"ckpt-no-such-{os.getpid()}", "-D", img], capsys, "no such cgroup v2")
    _one_line_error(["dump", "--cgroup", str(tmp_path), "-D", img], capsys, "no such cgroup v2")
    with _cgroup("empty") as cg:
        _one_line_error(["dump", "--cgroup", str(cg), "-D", img], capsys, "holds no task")
    own = Path(f"/proc/{os.getpid()}/cgroup").read_text().splitlines()
    mine = next(line.split("::", 1)[1] for line in own if line.startswith("0::"))
    _one_line_error(["dump", "--cgroup", str(tree.cgroup2_mounts()[0]) + mine, "-D", img], capsys,
                    "holds the dumping process itself")
    _one_line_error(["dump", "-t", str(os.getppid()), "--cgroup", "x", "-D", img], capsys, "exclude each other")
    _one_line_error(["dump", "-D", img], capsys, "give -t PID[,PID...] or --cgroup PATH")
    with pytest.raises(CkptError, match="not both"):
        engine.dump([os.getppid()], tmp_path / "img", cgroup="x")
    assert not (tmp_path / "img").exists()


# A dumper that runs inside a child of a task of the cgroup it is asked to dump.
INSIDE = r"""
import os, subprocess, sys
cg, other, img = sys.argv[1:4]
with open(os.path.join(cg, "cgroup.procs"), "w") as f:
    f.write("0")
child = "import os, sys; open(os.path.join(sys.argv[1], 'cgroup.procs'), 'w').write('0');" \
        "from engine import cli; sys.exit(cli.main(['dump', '--cgroup', sys.argv[2], '-D', sys.argv[3]]))"
sys.exit(subprocess.run([sys.executable, "-c", child, other, cg, img]).returncode)
"""


def test_cgroup_holding_an_ancestor_is_refused(tmp_path: Path) -> None:
    with _cgroup("ancestor") as cg, _cgroup("ancestor-other") as other:
        r = subprocess.run([sys.executable, "-c", INSIDE, str(cg), str(other), str(tmp_path / "img")],
                           capture_output=True, text=True, timeout=60, cwd=Path(engine.__file__).parent.parent)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "an ancestor of the dumping process" in r.stderr, r.stderr
        assert not (tmp_path / "img").exists()


# --- growth while freezing ----------------------------------------------------------------------

def test_a_settled_deep_chain_is_no_growth(tmp_path: Path, programs: dict[str, Path]) -> None:
    """40 levels, all born before the dump: the freeze goes down level by level past MAX_SCANS."""
    assert tree.MAX_SCANS < 40
    with _cgroup("deep") as cg, _nursery(cg, [str(programs["chain"]), "40"]) as (_, root):
        deadline = time.monotonic() + 10
        while len(tree.cgroup_members(cg)) < 41:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.05)  # a tick of the start-time clock past the youngest
        pids = _descendants([root])
        before = _table(pids)
        assert engine.dump([root], tmp_path / "img", leave_running=True) == [root]
        assert _table(pids) == before and _held(pids) == []


@contextmanager
def _apart() -> Iterator[tuple[set[int], set[int]]]:
    """(the tracer's CPU, the others): what the test starts from here on runs on the others,
    and the test goes to the tracer's CPU to dump, so that a bomb races the freeze rather than
    waiting for the tracer's CPU (a task waiting for a CPU is easy to stop). Put back after."""
    home = os.sched_getaffinity(0)
    if len(home) < 2:
        pytest.skip("needs 2 CPUs: on one, the tracer stops a bomb before it can race")
    tracer = {min(home)}
    os.sched_setaffinity(0, home - tracer)
    try:
        yield tracer, home - tracer
    finally:
        os.sched_setaffinity(0, home)


def test_a_thread_bomb_gives_up_and_leaves_it_running(tmp_path: Path, programs: dict[str, Path]) -> None:
    """Relays of threads that each create the next and exit. A dump may win the race (then it
    is a dump like any other); over some tries the bomb must win, and the dump give up."""
    gave_up: list[str] = []
    with _apart() as (tracer, others):
        for attempt in range(10):
            with _cgroup(f"threads{attempt}") as cg, \
                    _nursery(cg, [str(programs["relay"]), str(CHAINS)]) as (_, bomb):
                os.sched_setaffinity(0, tracer)
                try:
                    engine.dump([bomb], tmp_path / f"img{attempt}", leave_running=True)
                except KeepsGrowing as e:
                    assert e.pid == bomb
                    gave_up.append(str(e))
                    assert not (tmp_path / f"img{attempt}").exists()
                finally:
                    os.sched_setaffinity(0, others)
                assert _held([bomb], others) == []
                # It goes on as before: new threads keep coming.
                first = set(os.listdir(f"/proc/{bomb}/task"))
                time.sleep(0.02)
                assert set(os.listdir(f"/proc/{bomb}/task")) - first
            if gave_up:
                break
    assert gave_up, "the dump caught the thread bomb ten times in a row"
    assert "\n" not in gave_up[0] and f"pid {bomb} (relay) keeps creating threads" in gave_up[0], gave_up[0]


def _chain_dump(tmp_path: Path, chain: Path, dump: Callable[[Path, int, Path], None]) -> KeepsGrowing:
    """Dump a fork chain (each new process forks the next at once: the levels we take were
    born during the freeze) until the dump gives up; each time every task is left as it was
    and the chain goes on. A dump that catches up with the chain stops it (a dump like any
    other): over three tries the chain must win."""
    with _apart() as (tracer, others):
        for attempt in range(3):
            with _cgroup(f"chain{attempt}") as cg, _nursery(cg, [str(chain), str(CHAIN_DEPTH)]) as (_, root):
                os.sched_setaffinity(0, tracer)
                try:
                    dump(tmp_path / f"img{attempt}", root, cg)
                except KeepsGrowing as e:
                    error = e
                else:
                    continue
                finally:
                    os.sched_setaffinity(0, others)
                assert not (tmp_path / f"img{attempt}").exists()
                members = sorted(tree.cgroup_members(cg))
                assert _held(members, others) == []
                time.sleep(0.05)
                assert len(tree.cgroup_members(cg)) > len(members) or len(members) == CHAIN_DEPTH + 1
                return error
    pytest.fail("the dump caught the fork chain three times in a row")


def test_a_fork_chain_gives_up_and_leaves_it_running(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      programs: dict[str, Path]) -> None:
    def dump(img: Path, root: int, cg: Path) -> None:
        rc = cli.main(["dump", "-t", str(root), "-D", str(img), "--leave-running"])
        err = capsys.readouterr().err
        if rc:
            assert err.count("\n") == 1 and err.startswith("ckpt: pid "), err
            assert "(chain) keeps forking children while being frozen" in err, err
            raise KeepsGrowing(0, err)

    _chain_dump(tmp_path, programs["chain"], dump)


def test_a_fork_chain_in_a_cgroup_gives_up_too(tmp_path: Path, programs: dict[str, Path]) -> None:
    def dump(img: Path, root: int, cg: Path) -> None:
        assert engine.dump([], img, leave_running=True, cgroup=cg) == [root]

    error = _chain_dump(tmp_path, programs["chain"], dump)
    assert "keeps forking children while being frozen" in str(error)


# A thread sleeps in vfork: its child neither execs nor exits, and no ptrace stop reaches it.
VFORK_C = r"""
#include <pthread.h>
#include <unistd.h>
static void *thread(void *arg) {
    if (vfork() == 0)
        for (;;)
            pause();
    return arg;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, NULL, thread, NULL);
    for (;;)
        pause();
}
"""


def test_a_thread_in_vfork_fails_the_dump_without_hanging(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    (tmp_path / "vfork.c").write_text(VFORK_C)
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(tmp_path / "vfork"), str(tmp_path / "vfork.c")], check=True)
    with _cgroup("vfork") as cg, _nursery(cg, [str(tmp_path / "vfork")]) as (_, pid):
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{pid}/task")) < 2 or not _children_of(pid):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        started = time.monotonic()
        with pytest.raises(tree.InVfork, match=f"pid {pid}: its thread [0-9]+ waits in vfork"):
            engine.dump([pid], tmp_path / "img", leave_running=True)
        assert time.monotonic() - started < 10
        assert _held(sorted(tree.cgroup_members(cg))) == []


def _children_of(pid: int) -> list[int]:
    """Children of every thread of the task."""
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def test_children_reaped_as_they_exit_do_not_fail_the_dump(tmp_path: Path, programs: dict[str, Path]) -> None:
    """A parent that ignores SIGCHLD forks children that exit at once: a child listed may be
    gone when we come to it; it is no part of the state, the dump goes on."""
    with _cgroup("spawner") as cg, _nursery(cg, [str(programs["spawner"])]) as (_, parent):
        for attempt in range(3):
            roots = engine.dump([parent], tmp_path / f"img{attempt}", leave_running=True)
            assert roots == [parent]
            assert _held([parent]) == []
