"""Subtrees rebuilt by the restore's helper process (engine.restorehelper): a restore of a deep
tree of forked tasks gives about half of them to the helper, and every task comes back whole
(pages, the ones shared with its parent still shared, a pipe, an fd of its own, its parent); a
helper that fails or dies, and a restorer that fails once it has handed tasks over, fail the
restore with one line and leave no task and no helper behind. The choice itself: which
subtrees the helper may take, and how many."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

import engine
from cbuild import build_source
from engine import files, restorehelper, restorer, sharedfds
from engine.errors import CkptError
from engine.images.files_pb2 import Fd, Files, KernelFd
from engine.images.mm_pb2 import Memfd, Mm, Vma
from engine.restorehelper import Candidate
from tests.reaping import kill_all, ready_pids, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

TASKS = 40  # a binary tree: past restorehelper.FROM forked tasks
BASE = 0x1E0000000000
PAGES = 16
PAGE = 4096

# Task i forks tasks 2i+1 and 2i+2 (below argv[2]). The root fills a private area before any
# fork (the first half stays shared with every parent); each task writes its own pid's bytes
# over the second half, opens DIR/file-PID at fd 30 at offset pid % 100, notes DIR/ready-PID
# and sleeps. All hold one pipe with 6 bytes queued, at fds 20 and 21.
TREE_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned char *a = mmap((void *)0x1E0000000000UL, 16 * 4096, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    char tmp[512], path[512];
    int p[2], fd, me = 0, n;
    FILE *f;

    if (argc < 3 || a == MAP_FAILED)
        return 1;
    n = atoi(argv[2]);
    for (unsigned long i = 0; i < 16 * 4096; i++)
        a[i] = (unsigned char)(0x5a ^ (i / 4096));
    if (pipe(p) || dup2(p[0], 20) != 20 || dup2(p[1], 21) != 21 || write(21, "queued", 6) != 6)
        return 1;
    close(p[0]);
    close(p[1]);
    for (;;) {
        int forked = 0;
        for (int c = 2 * me + 1; c <= 2 * me + 2 && c < n; c++)
            if (fork() == 0) {
                me = c;
                forked = 1;
                break;
            }
        if (!forked)
            break;
    }
    for (unsigned long i = 8 * 4096; i < 16 * 4096; i++)
        a[i] = (unsigned char)(getpid() + i);
    snprintf(path, sizeof(path), "%s/file-%d", argv[1], getpid());
    fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0 || dup2(fd, 30) != 30 || lseek(30, getpid() % 100, SEEK_SET) < 0)
        _exit(2);
    close(fd);
    snprintf(tmp, sizeof(tmp), "%s/.ready-%d", argv[1], getpid());
    snprintf(path, sizeof(path), "%s/ready-%d", argv[1], getpid());
    f = fopen(tmp, "w");
    if (!f || fclose(f) || rename(tmp, path))
        _exit(3);
    for (;;)
        pause();
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source(tmp_path_factory, "tree", TREE_C)


@pytest.fixture
def dumped(program: Path, tmp_path: Path) -> Iterator[tuple[int, list[int], dict[int, int], Path]]:
    """The tree dumped to DIR/img (and so gone): its root, every pid, each task's parent, DIR;
    whatever a test restored is gone afterwards."""
    root = os.posix_spawn(str(program), [str(program), str(tmp_path), str(TASKS)], dict(os.environ))
    pids: list[int] = [root]
    try:
        pids = ready_pids(tmp_path, TASKS)
        parents = {pid: _ppid(pid) for pid in pids}
        engine.dump([root], tmp_path / "img")
        wait_gone(pids)
        yield root, pids, parents, tmp_path
    finally:
        kill_all(pids)
        wait_gone(pids)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _area(pid: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(BASE)
        return f.read(PAGES * PAGE)


def _expected(pid: int) -> bytes:
    return bytes(0x5A ^ (i // PAGE) for i in range(PAGES * PAGE // 2)) + \
        bytes((pid + i) & 0xFF for i in range(PAGES * PAGE // 2, PAGES * PAGE))


def _frame(pid: int, addr: int) -> int:
    """The page frame behind a virtual address of the task (root reads PFNs)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        return int.from_bytes(f.read(8), "little") & ((1 << 55) - 1)


def _rebuilt_by(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Each rebuilt task is written down with the process that rebuilt it (the helper is a fork
    of this process: it has the patch too)."""
    real = restorer._rebuild

    def rebuild(t: object, img: engine.restorer.TaskImages, *args: object, **kw: object) -> object:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {img.core.pid}\n")
        return real(t, img, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(restorer, "_rebuild", rebuild)


def _ours_left(before: set[str]) -> list[str]:
    """Processes made since `before` that are children of this one."""
    left = [p for p in set(os.listdir("/proc")) - before if p.isdigit()]
    out = []
    for p in left:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                    out.append(p)
        except FileNotFoundError:
            pass
    return out


def test_a_deep_tree_is_rebuilt_half_by_the_helper(dumped: tuple[int, list[int], dict[int, int], Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root, pids, parents, work = dumped
    log = work / "rebuilt"
    _rebuilt_by(monkeypatch, log)
    before = set(os.listdir("/proc"))
    assert engine.restore(work / "img") == [root]
    by: dict[str, list[int]] = {}
    for line in log.read_text().splitlines():
        who, rebuilt = line.split()
        by.setdefault(who, []).append(int(rebuilt))
    helper = [w for w in by if w != str(os.getpid())]
    assert len(helper) == 1 and sorted(p for v in by.values() for p in v) == pids, by
    theirs = by[helper[0]]
    assert root not in theirs and TASKS // 3 <= len(theirs) <= TASKS * restorehelper.SHARE, theirs
    assert not os.path.exists(f"/proc/{helper[0]}"), "the helper was not reaped"
    assert not _ours_left(before) or _ours_left(before) == [str(root)]
    for pid in pids:
        assert _ppid(pid) == parents[pid], f"pid {pid}: another parent"
        assert _area(pid) == _expected(pid), f"pid {pid}: its pages differ after restore"
        with open(f"/proc/{pid}/status") as f:
            assert "TracerPid:\t0\n" in f.read(), f"pid {pid} is still traced"
        assert os.readlink(f"/proc/{pid}/fd/30") == str(work / f"file-{pid}")
        with open(f"/proc/{pid}/fdinfo/30") as f:
            assert f.readline() == f"pos:\t{pid % 100}\n"
        assert sharedfds.same(root, 20, pid, 20) and sharedfds.same(root, 21, pid, 21)
        if pid != root:  # the half nobody wrote since the fork is one page with the parent's
            assert _frame(pid, BASE) == _frame(parents[pid], BASE) != 0, f"pid {pid}: a page unshared"
    fd = os.open(f"/proc/{theirs[-1]}/fd/20", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 64) == b"queued"
    finally:
        os.close(fd)


@pytest.mark.parametrize("where, how", [("helper", "fails"), ("helper", "dies"), ("restorer", "fails"),
                                        ("helper", "dies letting go")])
def test_a_failure_on_either_side_leaves_nothing(dumped: tuple[int, list[int], dict[int, int], Path],
                                                 where: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    root, pids, _, work = dumped
    me = os.getpid()
    real = restorer._rebuild
    calls = [0]
    real_let_go = restorer._let_go

    def let_go(*args: object, **kw: object) -> None:
        calls[0] += 1
        if os.getpid() != me and calls[0] == 3:  # some of its tasks run already
            os._exit(7)
        real_let_go(*args, **kw)  # type: ignore[arg-type]

    if how == "dies letting go":
        monkeypatch.setattr(restorer, "_let_go", let_go)
        how = "letting"

    def rebuild(t: object, img: engine.restorer.TaskImages, *args: object, **kw: object) -> object:
        if (os.getpid() != me) == (where == "helper") and how != "letting":
            calls[0] += 1
            if calls[0] == 6:  # once each side is well under way
                if how == "dies":
                    os._exit(7)
                raise CkptError(f"task {img.core.pid}: no way to rebuild it (made up)")
        return real(t, img, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(restorer, "_rebuild", rebuild)
    before = set(os.listdir("/proc"))
    with pytest.raises(CkptError, match=r"^task \d+: no way to rebuild it \(made up\)$" if how == "fails"
                       else "^the restore helper died letting its tasks go$" if how == "letting"
                       else "^the restore helper died$"):
        engine.restore(work / "img")
    wait_gone(pids)  # every task, the helper's too, killed and reaped
    assert not _ours_left(before), "a process of the restore is left"


def _task(forker: int | None, files: Files | None = None, parent: Files | None = None, mm: Mm | None = None,
          stopped: bool = False) -> Candidate:
    return Candidate(forker, stopped, files or Files(), parent if parent is not None else
                     (Files() if forker is not None else None), mm or Mm())


def _binary(n: int) -> tuple[dict[int, Candidate], dict[int, list[int]]]:
    """A binary tree of n tasks (1..n), every one but the first forked by its parent."""
    tasks = {1: _task(None)} | {i: _task(i // 2) for i in range(2, n + 1)}
    by: dict[int, list[int]] = {}
    for i in range(2, n + 1):
        by.setdefault(i // 2, []).append(i)
    return tasks, by


def _subtree(by: dict[int, list[int]], top: int) -> set[int]:
    out, todo = set(), [top]
    while todo:
        x = todo.pop()
        out.add(x)
        todo += by.get(x, [])
    return out


def test_the_helper_gets_about_half_in_whole_subtrees() -> None:
    tasks, by = _binary(63)
    chosen = restorehelper.choose(tasks, by, files.alike, cpus=2)
    got = [_subtree(by, c) for c in chosen]
    assert sum(len(s) for s in got) == len(set().union(*got))  # no subtree inside another
    assert 24 <= sum(len(s) for s in got) <= 31, chosen
    assert 1 not in set().union(*got)
    # One CPU, or too few forked tasks: no helper.
    assert restorehelper.choose(tasks, by, files.alike, cpus=1) == set()
    small, small_by = _binary(restorehelper.FROM)  # FROM - 1 forked
    assert restorehelper.choose(small, small_by, files.alike, cpus=2) == set()


@pytest.mark.parametrize("what", ["memfd area", "shared anon area", "memfd fd", "pidfd", "shared fd", "stopped"])
def test_a_task_the_helper_cannot_rebuild_keeps_its_subtree_with_us(what: str) -> None:
    tasks, by = _binary(63)
    bad = 2  # the top of half the tree
    c = tasks[bad]
    if what == "memfd area":
        c.mm = Mm(vmas=[Vma(start=0x1000, end=0x2000, perms="rw-s", path="/memfd:x (deleted)", memfd=True)],
                  memfds=[Memfd(dev=1, ino=2)])
    elif what == "shared anon area":
        c.mm = Mm(vmas=[Vma(start=0x1000, end=0x2000, perms="rw-s", path="/dev/zero (deleted)", inode=7)])
    elif what == "memfd fd":
        c.files = Files(fds=[Fd(fd=5, memfd=True, dev=1, ino=2)])
    elif what == "pidfd":
        c.files = Files(fds=[Fd(fd=5, kernel=KernelFd(pidfd_pid=9))])
    elif what == "shared fd":
        c.files = Files(fds=[Fd(fd=5, path="/etc/hostname", shared=3)])
    else:
        c.stopped = True
    chosen = restorehelper.choose(tasks, by, files.alike, cpus=2)
    # Neither it nor a subtree it is in; subtrees below it may go.
    assert chosen and not any(bad in _subtree(by, x) for x in chosen), chosen
    # A pipe end, or an fd its parent gave it alike, is no reason.
    tasks[bad] = _task(1, Files(fds=[Fd(fd=5, pipe=77, flags=os.O_WRONLY), Fd(fd=6, path="/a", shared=3)]),
                       Files(fds=[Fd(fd=6, path="/a", shared=3)]))
    assert bad in restorehelper.choose(tasks, by, files.alike, cpus=2)
