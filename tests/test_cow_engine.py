"""Pages a child shares copy-on-write with its parent, through the ckpt engine (engine.cow): the
dump lists them, the restore forks the child from its rebuilt parent so that they are one
physical page again (pagemap PFNs), while the pages either task wrote, and those the child
dropped, stay its own; the fds the fork gave it stay one open file description with the
parent's, the others are closed or opened. A child the plan must make (it has a child of its own) gets copies and
the same contents. Inherited pages the images do not hold are refused before any process."""
from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

import engine
from cbuild import build_source
from engine import cli, cow, images, mm, sharedfds
from engine.images.mm_pb2 import PageRun
from engine.restorer import load
from tests.reaping import kill_all, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid, pagemap PFNs)")

BASE = 0x1D0000000000
PAGES = 32
PAGE = 4096
PARENT_WROTE, CHILD_WROTE, CHILD_DROPPED = range(0, 4), range(8, 16), range(16, 20)
SHARED = [p for p in range(PAGES) if p not in (*PARENT_WROTE, *CHILD_WROTE, *CHILD_DROPPED)]

# The root maps a private area, fills it and forks C; C rewrites pages 8-15, drops pages 16-19
# (MADV_DONTNEED) and, with argv[2] "deep", forks a grandchild that only sleeps, with "zombie"
# one that exits at once (C leaves it a zombie). The root rewrites pages 0-3. Both note their
# pid and sleep.
COW_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BASE 0x1D0000000000UL
#define PG 4096UL

static void on_usr1(int sig)
{
    (void)sig;
}

static void fill(char *at, unsigned long pages, char seed)
{
    for (unsigned long i = 0; i < pages * PG; i++)
        at[i] = (char)(seed + i / PG + i % 251);
}

/* fd moved to number to (nonzero on failure). */
static int moved(int fd, int to)
{
    return fd < 0 || dup2(fd, to) != to || close(fd);
}

static void note(const char *dir, const char *name)
{
    char tmp[512], path[512];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s/.%s", dir, name);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d", getpid()) < 0 || fclose(f) || rename(tmp, path))
        _exit(3);
}

int main(int argc, char **argv)
{
    char *a = mmap((void *)BASE, 32 * PG, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

    char path[512];
    int p[2];

    if (argc < 3 || a != (char *)BASE)
        return 1;
    snprintf(path, sizeof(path), "%s/both", argv[1]);
    /* Both keep fds 30 (a file) and 31-32 (a pipe); the child drops 33 and opens 34. */
    if (pipe(p) || dup2(p[0], 31) != 31 || dup2(p[1], 32) != 32 || close(p[0]) || close(p[1]) ||
        moved(open(path, O_RDWR | O_CREAT, 0600), 30) || dup2(30, 33) != 33)
        return 1;
    fill(a, 32, 1);
    /* Actions: the root catches SIGUSR1 and ignores SIGUSR2; the child puts SIGUSR1 back to
     * its default (all of it zero, as the image leaves it out) and ignores SIGHUP. */
    if (signal(SIGUSR1, on_usr1) == SIG_ERR || signal(SIGUSR2, SIG_IGN) == SIG_ERR)
        return 1;
    if (fork() == 0) {
        /* By the raw call: glibc would add SA_RESTORER and its restorer even to SIG_DFL. */
        struct { unsigned long handler, flags, restorer, mask; } dfl = { 0, 0, 0, 0 };

        if (syscall(SYS_rt_sigaction, SIGUSR1, &dfl, NULL, 8) || signal(SIGHUP, SIG_IGN) == SIG_ERR)
            _exit(2);
        snprintf(path, sizeof(path), "%s/own", argv[1]);
        if (close(33) || moved(open(path, O_RDWR | O_CREAT, 0600), 34))
            _exit(2);
        fill(a + 8 * PG, 8, 50);
        if (madvise(a + 16 * PG, 4 * PG, MADV_DONTNEED))
            _exit(2);
        if (strcmp(argv[2], "leaf")) {
            pid_t g = fork();
            siginfo_t si;

            if (g == 0 && !strcmp(argv[2], "deep"))
                for (;;)
                    pause();
            if (g == 0)
                _exit(0);
            if (g < 0 || (strcmp(argv[2], "deep") && waitid(P_PID, g, &si, WEXITED | WNOWAIT)))
                _exit(2);
        }
        note(argv[1], "child");
        for (;;)
            pause();
    }
    fill(a, 4, 90);
    note(argv[1], "parent");
    for (;;)
        pause();
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source(tmp_path_factory, "cow", COW_C)


def _pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never said it was ready"
        time.sleep(0.005)
    return int(path.read_text())


def _tree(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return out


def _frames(pid: int) -> list[int | None]:
    """The physical page of each page of the area (None: not present)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(BASE // PAGE * 8)
        raw = f.read(PAGES * 8)
    entries = struct.unpack(f"<{PAGES}Q", raw)
    return [e & ((1 << 55) - 1) if e >> 63 else None for e in entries]


def _fds(pid: int) -> dict[int, str]:
    """fd -> what it names (a pipe by kind only: the restore makes new ones)."""
    links = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    return {n: "pipe" if link.startswith("pipe:") else link for n, link in links.items()}


def _actions(pid: int) -> tuple[str, str]:
    """The signals the task ignores and catches (status SigIgn, SigCgt)."""
    st = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return st["SigIgn"].strip(), st["SigCgt"].strip()


def _contents(pid: int) -> bytes:
    """The area's bytes (a read maps the zero page where a page was absent)."""
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(BASE)
        return f.read(PAGES * PAGE)


def _sharing(parent: int, child: int) -> tuple[list[int], list[int]]:
    """Pages of the area at one physical page in both; pages the child has not."""
    a, b = _frames(parent), _frames(child)
    return [p for p in range(PAGES) if b[p] is not None and a[p] == b[p]], [p for p in range(PAGES) if b[p] is None]


@pytest.fixture
def running(program: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, int, Path]]:
    """The program (argv[2] from the test's parameter, else "leaf"): its root, its child and a
    directory; every task of it is gone afterwards."""
    kind = getattr(request, "param", "leaf")
    proc = subprocess.Popen([str(program), str(tmp_path), kind], stdin=subprocess.DEVNULL)
    seen: list[int] = [proc.pid]
    try:
        root, child = _pid(tmp_path / "parent"), _pid(tmp_path / "child")
        seen += _tree(root)
        yield root, child, tmp_path
    finally:
        for pid in list(seen):
            if os.path.exists(f"/proc/{pid}"):
                seen += _tree(pid) if os.path.exists(f"/proc/{pid}/task/{pid}/children") else []
        kill_all(seen)
        wait_gone(seen)
        proc.wait()


def test_dump_lists_shared_pages_and_restore_shares_them_again(running: tuple[int, int, Path],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    root, child, work = running
    assert _sharing(root, child) == (SHARED, list(CHILD_DROPPED))  # what the program made
    before = _contents(root), _contents(child)
    fds = _fds(root), _fds(child)
    assert set(fds[0]) - set(fds[1]) == {33} and set(fds[1]) - set(fds[0]) == {34}
    actions = _actions(root), _actions(child)
    assert actions[0] != actions[1]  # the child changed two the fork gave it
    pids = _tree(root)
    engine.dump([root], work / "img")
    _, maps = images.read(images.path_of(work / "img", "pagemap"), "pagemap")
    inherited = {m.pid: [(r.vaddr, r.nr_pages) for r in m.inherited] for m in maps}
    ours = [(v, n) for v, n in inherited[child] if BASE <= v < BASE + PAGES * PAGE]
    assert ours == [(BASE + 4 * PAGE, 4), (BASE + 20 * PAGE, 12)]
    assert not inherited[root]
    assert load(work / "img").forks == {child: root}
    assert cli.main(["plan", str(work / "img")]) == 0
    assert f"task {root}: memory rebuilt, then fork {child}" in capsys.readouterr().out
    wait_gone(pids)
    (back,) = engine.restore(work / "img")
    assert back == root and _tree(root) == pids
    assert _sharing(root, child) == (SHARED, list(CHILD_DROPPED))  # before a read maps the zero page there
    assert (_contents(root), _contents(child)) == before
    assert (_fds(root), _fds(child)) == fds
    assert (_actions(root), _actions(child)) == actions  # SIGUSR1 back to its default in the child
    for fd in (30, 31, 32):  # the fork gave them: one open file description in both again
        assert sharedfds.same(root, fd, child, fd)
    # Still copy-on-write: a store by one is not seen by the other.
    with open(f"/proc/{child}/mem", "r+b") as f:
        f.seek(BASE + 5 * PAGE)
        f.write(b"\xee" * 8)
    assert _contents(root) == before[0]
    assert 5 not in _sharing(root, child)[0]


@pytest.mark.parametrize("running", ["deep"], indirect=True)
def test_forked_child_forks_its_own(running: tuple[int, int, Path]) -> None:
    root, child, work = running
    pids = _tree(root)
    grandchild = next(p for p in pids if p not in (root, child))
    before = _contents(root), _contents(child), _contents(grandchild)
    engine.dump([root], work / "img")
    assert load(work / "img").forks == {child: root, grandchild: child}
    wait_gone(pids)
    engine.restore(work / "img")
    assert _tree(root) == pids
    assert _sharing(root, child) == (SHARED, list(CHILD_DROPPED))
    # The grandchild was forked after the drop: it shares every page the child has.
    assert _sharing(child, grandchild) == ([p for p in range(PAGES) if p not in CHILD_DROPPED], list(CHILD_DROPPED))
    assert (_contents(root), _contents(child), _contents(grandchild)) == before


@pytest.mark.parametrize("running", ["zombie"], indirect=True)
def test_child_the_plan_makes_gets_copies(running: tuple[int, int, Path]) -> None:
    root, child, work = running
    before = _contents(root), _contents(child)
    pids = _tree(root)
    assert len(pids) == 3
    engine.dump([root], work / "img")
    assert load(work / "img").forks == {}  # the plan makes the zombie, so its parent too
    wait_gone(pids)
    engine.restore(work / "img")
    assert _tree(root) == pids
    shared, absent = _sharing(root, child)
    assert absent == list(CHILD_DROPPED) and not shared  # written as copies
    assert (_contents(root), _contents(child)) == before


def test_inherited_pages_not_stored_are_refused(running: tuple[int, int, Path]) -> None:
    root, child, work = running
    pids = _tree(root)
    engine.dump([root], work / "img")
    path = images.path_of(work / "img", "pagemap")
    _, maps = images.read(path, "pagemap")
    for m in maps:
        if m.pid == child:
            m.inherited.append(PageRun(vaddr=BASE + 16 * PAGE, nr_pages=2))  # dropped: not stored
    path.unlink()
    images.write(path, "pagemap", maps)
    wait_gone(pids)
    with pytest.raises(images.ImageError, match=f"task {child}: inherited pages"):
        engine.restore(work / "img")
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_pieces_leave_out_inherited_pages_and_keep_file_offsets() -> None:
    runs = [PageRun(vaddr=0x10000, nr_pages=4), PageRun(vaddr=0x20000, nr_pages=3)]
    skip = [PageRun(vaddr=0x11000, nr_pages=2), PageRun(vaddr=0x20000, nr_pages=1)]
    got = [(r.vaddr, r.nr_pages, off) for r, off in mm._pieces(runs, skip)]
    assert got == [(0x10000, 1, 0), (0x13000, 1, 3 * PAGE), (0x21000, 2, 5 * PAGE)]
    assert [(r.vaddr, r.nr_pages, off) for r, off in mm._pieces(runs, [])] == [(0x10000, 4, 0), (0x20000, 3, 4 * PAGE)]


def test_minus_cuts_ranges_out() -> None:
    assert list(cow._minus(0, 100, [(10, 20), (30, 40)])) == [(0, 10), (20, 30), (40, 100)]
    assert list(cow._minus(15, 35, [(10, 20), (30, 40)])) == [(20, 30)]
    assert list(cow._minus(0, 10, [])) == [(0, 10)]
    assert list(cow._minus(10, 20, [(0, 30)])) == []

