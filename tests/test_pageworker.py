"""Pages stored by the dump's worker process (engine.pageworker): a dump of many tasks hands their
pages to it, with the pages each child shares with its parent listed there too, and the
restored tasks have every page back; a worker that fails on a task, or dies,
fails the dump with one line, leaves every task running untraced and no image behind, and is
itself gone."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

import engine
from cbuild import build_source
from engine import images, mm, pagedump, pageworker, sharedfds
from engine.errors import CkptError, Unsupported
from engine.restorer import load
from tests.reaping import kill_all, ready_pids, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, clone3 set_tid)")

TASKS = 20  # the root and its children: past pageworker.FROM
BASE = 0x1E0000000000
PAGES = 16
PAGE = 4096

# The root forks TASKS - 1 children; each task fills a private area with bytes of its own pid
# ((pid + page + offset) & 0xff), notes its pid in DIR/ready-PID and sleeps. All hold one pipe
# with 6 bytes queued; with argv[3] "socket" the last child holds a socket pair as well.
MANY_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static void fill_and_sleep(const char *dir)
{
    unsigned char *a = mmap((void *)0x1E0000000000UL, 16 * 4096, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    char tmp[512], path[512];
    FILE *f;

    if (a == MAP_FAILED)
        _exit(2);
    for (unsigned long i = 0; i < 16 * 4096; i++)
        a[i] = (unsigned char)(getpid() + i / 4096 + i);
    snprintf(tmp, sizeof(tmp), "%s/.ready-%d", dir, getpid());
    snprintf(path, sizeof(path), "%s/ready-%d", dir, getpid());
    f = fopen(tmp, "w");
    if (!f || fclose(f) || rename(tmp, path))
        _exit(3);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    int p[2], sv[2];

    /* Every task holds a pipe with "queued" in it, at fds 20 (read) and 21 (write). */
    if (argc < 4 || pipe(p) || dup2(p[0], 20) != 20 || dup2(p[1], 21) != 21 || write(21, "queued", 6) != 6)
        return 1;
    close(p[0]);
    close(p[1]);
    for (int i = 1; i < atoi(argv[2]); i++)
        if (fork() == 0) {
            /* With "socket", the last child holds one (not dumped yet). */
            if (i == atoi(argv[2]) - 1 && argv[3][0] == 's' && socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
                _exit(4);
            fill_and_sleep(argv[1]);
        }
    fill_and_sleep(argv[1]);
}
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source(tmp_path_factory, "many", MANY_C)


def _expected(pid: int) -> bytes:
    return bytes((pid + i // PAGE + i) & 0xFF for i in range(PAGES * PAGE))


def _area(pid: int) -> bytes:
    with open(f"/proc/{pid}/mem", "rb") as f:
        f.seek(BASE)
        return f.read(PAGES * PAGE)


@pytest.fixture
def tree(program: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[int, list[int], Path]]:
    """The running program (argv[3] from the test's parameter, else "plain"): its root, every
    pid, a directory; all gone afterwards."""
    kind = getattr(request, "param", "plain")
    root = os.posix_spawn(str(program), [str(program), str(tmp_path), str(TASKS), kind], dict(os.environ))
    pids: list[int] = [root]
    try:
        pids = ready_pids(tmp_path, TASKS)
        yield root, pids, tmp_path
    finally:
        kill_all(pids)
        wait_gone(pids)


def _untraced_and_running(pids: list[int]) -> None:
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.split(":", 1) for line in f if ":" in line)
        # Let go a moment ago, it may still be on its way back into pause(): R or S, never t or T.
        assert st["TracerPid"].strip() == "0" and st["State"].split()[0] in "RS", (pid, st["State"])


def _handed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids whose memory the dump hands to the worker, as it does."""
    handed: list[int] = []
    real = pageworker.Worker.memory

    def memory(self: pageworker.Worker, pid: int, *args: object) -> None:
        handed.append(pid)
        real(self, pid, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pageworker.Worker, "memory", memory)
    return handed


def _restored_whole(root: int, pids: list[int], img: Path) -> None:
    """The dump of the tree in img makes every child a fork of the root (the pages it shares
    with it listed); the tree restored has every page back and one pipe, its data stored once."""
    assert load(img).forks == {pid: root for pid in pids if pid != root}
    wait_gone(pids)
    _, pipes = images.read(images.path_of(img, "pipes"), "pipes")
    # Each pipe once, wherever it was read (the test's own pipes come along too).
    assert [p.data for p in pipes].count(b"queued") == 1 and len({p.id for p in pipes}) == len(pipes)
    engine.restore(img)
    for pid in pids:
        assert _area(pid) == _expected(pid), f"pid {pid}: its pages differ after restore"
        assert sharedfds.same(root, 20, pid, 20) and sharedfds.same(root, 21, pid, 21)


def test_a_many_task_dump_hands_pages_to_the_worker(tree: tuple[int, list[int], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root, pids, work = tree
    handed = _handed(monkeypatch)
    monkeypatch.setattr(pageworker, "AHEAD", 1 << 30)  # never too far behind: every task is handed over
    engine.dump([root], work / "img")
    assert sorted(handed) == pids
    # The worker also listed the pages each child shares with the root: each is forked by it.
    _restored_whole(root, pids, work / "img")
    fd = os.open(f"/proc/{pids[-1]}/fd/20", os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert os.read(fd, 64) == b"queued"
    finally:
        os.close(fd)


def test_a_worker_behind_leaves_tasks_to_the_dumper(tree: tuple[int, list[int], Path],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root, pids, work = tree
    me = os.getpid()
    handed = _handed(monkeypatch)
    real_describe = mm.describe

    def describe(pid: int, *args: object) -> object:
        if os.getpid() != me:  # in the worker: slow
            time.sleep(0.05)
        return real_describe(pid, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(mm, "describe", describe)
    monkeypatch.setattr(pageworker, "AHEAD", 2)  # one task (its memory and fds) at most waits
    engine.dump([root], work / "img")
    assert handed and len(handed) < len(pids) // 2, handed
    # Whoever read a task, every child shares its pages with the root and is forked by it.
    _restored_whole(root, pids, work / "img")


@pytest.mark.parametrize("how", ["fails", "dies"])
def test_a_worker_that_fails_fails_the_dump_cleanly(tree: tuple[int, list[int], Path], how: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root, pids, work = tree
    victim = pids[len(pids) // 2]
    real = pagedump.Packed.store

    def store(self: pagedump.Packed, pid: int, *args: object) -> object:  # runs in the worker: a fork of us
        if pid == victim:
            if how == "dies":
                os._exit(7)
            raise CkptError("no room for its pages (made up)")
        return real(self, pid, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pagedump.Packed, "store", store)
    monkeypatch.setattr(pageworker, "AHEAD", 1 << 30)  # the victim goes to the worker, not to us
    before = set(os.listdir("/proc"))
    with pytest.raises(CkptError, match=f"pid {victim}: storing its memory: no room" if how == "fails"
                       else "the page worker died"):
        engine.dump([root], work / "img")
    assert not (work / "img").exists()
    _untraced_and_running(pids)
    for pid in pids:
        assert _area(pid) == _expected(pid)
    # The worker was reaped: no process of ours is left from the dump.
    left = {p for p in set(os.listdir("/proc")) - before if p.isdigit() and os.path.exists(f"/proc/{p}/stat")}
    assert not [p for p in left if open(f"/proc/{p}/stat").read().split()[3] == str(os.getpid())]


@pytest.mark.parametrize("tree", ["socket"], indirect=True)
def test_an_fd_the_worker_cannot_dump_is_refused_by_name(tree: tuple[int, list[int], Path]) -> None:
    root, pids, work = tree
    with pytest.raises(Unsupported, match=r"^pid \d+: fd \d+ is socket:\["):
        engine.dump([root], work / "img")
    assert not (work / "img").exists()
    _untraced_and_running(pids)
