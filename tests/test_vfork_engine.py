"""A vfork pair through the ckpt engine: a parent asleep in vfork and its child, blocked in read()
on the parent's memory. After a restore (or a dump that leaves them running) the parent waits
in vfork again (state D, its syscall, untraced) and shares its memory with the child (kcmp); once
the child is let go, the parent's vfork returns the child's pid only after the child exited, and
the parent sees what the child wrote. A dump that refuses the pair leaves it as it was; a
restore that fails half way leaves no process. The planner never sees the child. A parent that
ran while the tree was being frozen is not paired; a dump kills pairs below a pid namespace's
init, the init as its root."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

import engine
from cbuild import compile_c
from engine import tree, vfork
from engine.errors import CkptError, Unsupported
from engine.plan import PlanError, Table, TaskRow
from native import ffi, lib
from tests.reaping import kill_all, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, BPF, clone3 set_tid)")

WORD_LEAVING = 0x4444  # the child's last write, 0.3 s after it was let go, just before it exits
EXIT_CODE = 33

# The root forks P, which vforks C. C writes into P's memory, says it is ready, and blocks in
# read() on a pipe whose write end only the root holds. Let go, it writes, lingers 0.3 s (a parent
# that did not wait for it would run meanwhile and see that word), writes again and exits. P, out
# of vfork, notes what vfork returned, the word it sees, and the child's status. (Whether the
# child is a zombie yet when vfork returns is a race: the kernel lets the parent go when the
# child drops its memory, before the child's exit is reported.)
PAIR_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile unsigned word;
static const char *dir;

static void note(const char *name, const char *text)
{
    char tmp[512], path[512];
    int fd;

    snprintf(tmp, sizeof(tmp), "%s/.%s", dir, name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (write(fd, text, strlen(text)) < 0)
        _exit(3);
    close(fd);
    rename(tmp, path);
}

static void on_usr1(int sig) { (void)sig; }

int main(int argc, char **argv)
{
    int p[2], st = 0;
    char buf[128], c;
    pid_t v;

    dir = argv[1];
    if (argc < 2 || pipe(p))
        return 1;
    if (fork() == 0) {
        struct sigaction sa = { .sa_handler = on_usr1 };

        close(p[1]);
        sigaction(SIGUSR1, &sa, NULL);
        word = 0x1111;
        v = vfork();
        if (v == 0) {
            word = 0x2222;
            note("ready", "");
            if (read(p[0], &c, 1) != 1)
                _exit(2);
            word = 0x3333;
            usleep(300000);
            word = 0x4444;
            _exit(33);
        }
        snprintf(buf, sizeof(buf), "%d %u", v, word);
        waitpid(v, &st, 0);
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " %d", st);
        note("parent", buf);
        _exit(0);
    }
    close(p[0]);
    snprintf(buf, sizeof(buf), "%d", p[1]);
    note("pipe", buf);
    for (;;)
        pause();
}
"""


# The root forks P, which vforks children one after another: each blocks in read() on a pipe
# whose write end only the root holds, then exits; P reaps it and vforks the next.
LOOP_C = r"""
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    char path[512], c;
    FILE *f;
    int p[2];
    pid_t v;

    if (argc < 2 || pipe(p))
        return 1;
    if (fork() == 0) {
        close(p[1]);
        for (;;) {
            v = vfork();
            if (v == 0) {
                if (read(p[0], &c, 1) != 1)
                    _exit(2);
                _exit(0);
            }
            waitpid(v, NULL, 0);
        }
    }
    close(p[0]);
    snprintf(path, sizeof(path), "%s/pipe", argv[1]);
    f = fopen(path, "w");
    if (!f || fprintf(f, "%d", p[1]) < 0 || fclose(f))
        return 1;
    for (;;)
        pause();
}
"""

# Run inside a pid namespace (by zdtm-nsinit enter), then gone: its children, A and P2, become
# children of the namespace's init. A forks P1; P1 and P2 each sleep in vfork for a child
# blocked in read() on a pipe whose write end A holds.
NS_C = r"""
#include <signal.h>
#include <unistd.h>

static void vforker(int rfd)
{
    char c;

    if (vfork() == 0) {
        if (read(rfd, &c, 1) != 1)
            _exit(2);
        _exit(0);
    }
    _exit(0);
}

int main(void)
{
    int p[2];

    if (pipe(p))
        return 1;
    if (fork() == 0) {
        if (fork() == 0) {
            close(p[1]);
            vforker(p[0]);
        }
        close(p[0]);
        for (;;)
            pause();
    }
    if (fork() == 0) {
        close(p[1]);
        vforker(p[0]);
    }
    return 0;
}
"""


@dataclass
class Pair:
    """The running program: its root, the vfork parent and child, the root's end of the pipe."""

    root: int
    parent: int
    child: int
    wfd: int
    dir: Path


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The C programs above, built once: by name (pair, loop, ns)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    out = tmp_path_factory.mktemp("vfork")
    built = {}
    for name, source in (("pair", PAIR_C), ("loop", LOOP_C), ("ns", NS_C)):
        (out / f"{name}.c").write_text(source)
        built[name] = compile_c(out / f"{name}.c", out / name)
    return built


@pytest.fixture
def program(programs: dict[str, Path]) -> Path:
    return programs["pair"]


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _syscall(pid: int) -> str:
    return Path(f"/proc/{pid}/syscall").read_text().split()[0]


def _status(pid: int) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)


def _wait_for(what: str, ok: Callable[[], object], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.fixture
def pair(program: Path, tmp_path: Path) -> Iterator[Pair]:
    """The pair, started and settled (the parent asleep in vfork, the child in read()); every
    task of it is killed and reaped afterwards."""
    from harness import proc as hproc

    hproc.become_subreaper()  # the restored tree's orphans come to us
    d = tmp_path / "notes"
    d.mkdir()
    p = subprocess.Popen([str(program), str(d)])
    pids = [p.pid]
    try:
        _wait_for("the vfork child", lambda: (d / "ready").exists() and (d / "pipe").exists())
        parent = _children(p.pid)[0]
        child = _children(parent)[0]
        pids += [parent, child]
        _wait_for("the pair to settle", lambda: _syscall(parent) == "58" and _syscall(child) == "0")
        yield Pair(p.pid, parent, child, int((d / "pipe").read_text()), d)
    finally:
        kill_all(pids)
        hproc.reap_children()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]


def _assert_waiting(pr: Pair) -> None:
    """The parent sleeps in vfork for its child, which runs on the parent's memory, both untraced."""
    # Just let go from its PTRACE_EVENT_VFORK stop, it runs (R) on its way into the wait; its
    # child, blocked in read() on our pipe, cannot end that wait meanwhile.
    _wait_for("the parent asleep in vfork", lambda: _state(pr.parent) == "D")
    assert _syscall(pr.parent) == "58"  # vfork, as it was
    assert Path(f"/proc/{pr.parent}/wchan").read_text() == "kernel_clone"
    assert _children(pr.parent) == [pr.child] and _children(pr.root) == [pr.parent]
    _wait_for("the child back in read()", lambda: _syscall(pr.child) == "0")  # just let go: on its way
    assert _status(pr.child)["State"].startswith("S")
    same_mm = lib.syscall(lib.SYS_kcmp, ffi.cast("long", pr.parent), ffi.cast("long", pr.child),
                          ffi.cast("long", lib.KCMP_VM), ffi.cast("long", 0), ffi.cast("long", 0))
    assert same_mm == 0, "the vfork parent and child no longer share their memory"
    for pid in (pr.root, pr.parent, pr.child):
        assert _status(pid)["TracerPid"] == "0"


def _release_and_check(pr: Pair) -> None:
    """Let the child go: the parent's vfork returns its pid only once the child is leaving, and
    the parent sees the word the child wrote last in their memory."""
    time.sleep(0.2)
    assert not (pr.dir / "parent").exists(), "the parent left vfork while its child still ran"
    fd = os.open(f"/proc/{pr.root}/fd/{pr.wfd}", os.O_WRONLY)
    try:
        os.write(fd, b"g")
    finally:
        os.close(fd)
    _wait_for("the parent's note", lambda: (pr.dir / "parent").exists())
    ret, word, status = (int(x) for x in (pr.dir / "parent").read_text().split())
    assert ret == pr.child
    assert word != 0x3333, "vfork returned while the child still ran"
    assert word == WORD_LEAVING, f"the parent sees {word:#x}: its memory is not the child's"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_CODE


def test_a_restored_parent_waits_in_vfork_on_memory_it_shares(pair: Pair, tmp_path: Path) -> None:
    engine.dump([pair.root], tmp_path / "img")
    wait_gone([pair.root, pair.parent, pair.child])
    assert engine.restore(tmp_path / "img") == [pair.root]
    _assert_waiting(pair)
    _release_and_check(pair)


def test_a_dump_that_leaves_the_pair_running_leaves_it_as_it_was(pair: Pair, tmp_path: Path) -> None:
    engine.dump([pair.root], tmp_path / "img", leave_running=True)
    _assert_waiting(pair)
    _release_and_check(pair)


def test_a_refused_pair_runs_on_untouched(pair: Pair, tmp_path: Path) -> None:
    os.kill(pair.parent, signal.SIGUSR1)  # handled: queued until the parent leaves vfork
    _wait_for("the queued signal", lambda: int(_status(pair.parent)["ShdPnd"], 16))
    with pytest.raises(Unsupported, match=f"pid {pair.parent} waits in vfork with signals queued"):
        engine.dump([pair.root], tmp_path / "img")
    assert not (tmp_path / "img").exists()
    _assert_waiting(pair)
    _release_and_check(pair)


def test_a_restore_failing_at_the_child_leaves_no_process(pair: Pair, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    engine.dump([pair.root], tmp_path / "img")
    pids = [pair.root, pair.parent, pair.child]
    wait_gone(pids)

    def broken(*_: object) -> None:
        raise CkptError("injected failure")

    monkeypatch.setattr(vfork, "place", broken)  # once the parent waits for the child made again
    with pytest.raises(CkptError, match="injected failure"):
        engine.restore(tmp_path / "img")
    wait_gone(pids)


def test_planners_never_see_a_vfork_child() -> None:
    rows = {10: TaskRow(10, 0, 10, 10), 11: TaskRow(11, 10, 10, 10), 12: TaskRow(12, 11, 10, 10)}
    made = {11: vfork.Child(12, signal.SIGCHLD)}
    assert sorted(vfork.planned(Table(rows), made).rows) == [10, 11]
    # Its own group is made by a setpgid in it; a group of others must hold one of its session.
    assert vfork.planned(Table({**rows, 12: TaskRow(12, 11, 12, 10)}), made).rows.keys() == {10, 11}
    with pytest.raises(PlanError, match="in group 7, which no other task of its session is in"):
        vfork.planned(Table({**rows, 12: TaskRow(12, 11, 7, 10)}), made)
    # Nothing the plan makes may need it.
    with pytest.raises(PlanError, match="has task 13 as a child"):
        vfork.planned(Table({**rows, 13: TaskRow(13, 12, 10, 10)}), made)
    with pytest.raises(PlanError, match="not a live child"):
        vfork.planned(Table(rows), {10: vfork.Child(12, signal.SIGCHLD)})


def _settled(parent: int) -> int:
    """The child of a parent asleep in vfork once both settled (the parent in vfork, state D;
    the child in read())."""
    found: list[int] = []

    def settled() -> bool:
        kids = _children(parent)
        found[:] = kids
        return len(kids) == 1 and _syscall(parent) == "58" and _status(parent)["State"][0] == "D" \
            and _syscall(kids[0]) == "0"

    _wait_for(f"pid {parent} asleep in vfork", settled)
    return found[0]


def test_a_parent_that_ran_since_it_was_found_asleep_is_frozen_again(
        programs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found asleep in vfork, then its child exits before the freeze holds it: the parent runs
    (reaps it, vforks the next) and is asleep again by the pairing. What was read of it in
    between may be stale: the pairing says it left vfork (the dump freezes again)."""
    from harness import proc as hproc

    p = subprocess.Popen([str(programs["loop"]), str(tmp_path)])
    pids = [p.pid]
    frozen = tree.Frozen()
    try:
        _wait_for("the pipe", lambda: (tmp_path / "pipe").exists() and _children(p.pid) != [])
        parent = _children(p.pid)[0]
        first = _settled(parent)
        pids += [parent, first]
        wfd = int((tmp_path / "pipe").read_text())
        real = tree._seize

        def released_first(pid: int, ppid: int, fz: tree.Frozen) -> tree.Task:
            if pid == first:  # about to be held: let it go first, until the parent vforked again
                fd = os.open(f"/proc/{p.pid}/fd/{wfd}", os.O_WRONLY)
                try:
                    os.write(fd, b"g")
                finally:
                    os.close(fd)
                pids.append(_wait_next(parent, first))
            return real(pid, ppid, fz)

        monkeypatch.setattr(tree, "_seize", released_first)
        tree.freeze([p.pid], frozen)
        assert frozen.tasks[parent].in_vfork and pids[-1] in frozen.tasks
        with pytest.raises(tree.InVfork, match=f"pid {parent} left vfork"):
            vfork.pair(frozen)
    finally:
        tree.let_go(frozen.traced)
        kill_all(pids)
        p.wait()
        hproc.reap_children()


def _wait_next(parent: int, first: int) -> int:
    """The parent's next vfork child, once the parent sleeps in vfork for it."""
    _wait_for("the next vfork child", lambda: _children(parent) not in ([], [first]))
    return _settled(parent)


def test_a_dump_kills_vfork_pairs_under_their_pid_namespace_init(programs: dict[str, Path], tmp_path: Path) -> None:
    """The root is a pid namespace's init with two parents asleep in vfork below it (one its
    child, one its grandchild): the dump kills them all and comes back. The init goes last
    (its end waits for every task of its namespace, ours to collect first); a parent asleep in
    vfork, never ours, is killed before its child is."""
    from harness import build
    from harness import proc as hproc

    hproc.become_subreaper()  # the init, once its launcher is gone
    nsinit = str(build.helper("zdtm-nsinit"))
    subprocess.run([nsinit, "init", str(tmp_path / "init.pid")], check=True, timeout=30)
    init = int((tmp_path / "init.pid").read_text())
    pids = [init]
    try:
        subprocess.run([nsinit, "enter", str(init), str(programs["ns"])], check=True, timeout=30)
        # P2 sleeps in vfork; A, which holds the pipe, has P1 as its child.
        _wait_for("A and P2 under the init", lambda: len(_children(init)) == 2
                  and sum(_syscall(pid) == "58" for pid in _children(init)) == 1)
        p2 = next(pid for pid in _children(init) if _syscall(pid) == "58")
        a = next(pid for pid in _children(init) if pid != p2)
        _wait_for("P1", lambda: _children(a) != [])
        p1 = _children(a)[0]
        pids += [a, p1, p2, _settled(p1), _settled(p2)]
        assert engine.dump([init], tmp_path / "img") == [init]
        wait_gone(pids)
    finally:
        kill_all(pids)
        wait_gone(pids)
