"""Images and the first dump slice: framed files, generated code current, a real process dumped."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import images
from engine import dump
from engine.errors import CkptError, ProcessGone
from engine.images.generate import HERE, generate
from engine.images.inventory_pb2 import Inventory
from harness import proc


def test_generated_modules_are_current(tmp_path: Path) -> None:
    generate(tmp_path)
    for fresh in sorted(tmp_path.iterdir()):
        assert fresh.read_bytes() == (HERE / fresh.name).read_bytes(), \
            f"{fresh.name} is stale: run python -m engine.images.generate"


def test_framed_roundtrip_and_damage(tmp_path: Path) -> None:
    p = tmp_path / "inventory.img"
    images.write(p, "inventory", [Inventory(kernel="6.18", roots=[1, 2])])
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    kind, [inv] = images.read(p)
    assert kind.name == "inventory" and list(inv.roots) == [1, 2]
    with pytest.raises(images.ImageError, match="a inventory image where a core image was expected"):
        images.read(p, "core")
    raw = p.read_bytes()
    for data, words in [(raw[:-1], "runs past the end"), (raw[:5], "truncated header"),
                        (b"XXXX" + raw[4:], "bad magic"), (raw[:8] + b"\x09\0\0\0" + raw[12:], "version 9")]:
        p.write_bytes(data)
        with pytest.raises(images.ImageError, match=words):
            images.read(p)


@pytest.fixture
def running(launch):
    """env_umask running under its protocol (umask 0247 set by its setup)."""
    return launch("static/env_umask")


def test_dump_leave_running_stores_memory_exactly(running: tuple[int, Path], tmp_path: Path) -> None:
    pid, out = running
    d = tmp_path / "img"
    dump([pid], d, leave_running=True)
    _, [pagemap] = images.read(d / "pagemap.img", "pagemap")
    # A small task's pages go to the file of the dump's small tasks, from its start here.
    file, at = images.pages_of(d, pagemap, pid)
    assert (file.name, at) == (images.PACKED.format(writer="dumper"), 0)
    assert sorted(x.name for x in d.iterdir()) == sorted(
        [file.name] + [images.path_of(d, k).name for k in images.KINDS])
    assert all(x.stat().st_mode & 0o777 == 0o600 for x in d.iterdir())
    _, [core] = images.read(d / "core.img", "core")
    assert core.pid == pid and core.sid == pid and core.comm == "env_umask" and len(core.xstate) >= 512
    _, [mm] = images.read(d / "mm.img", "mm")
    with open(f"/proc/{pid}/maps") as f:
        assert [(v.start, v.end, v.perms) for v in mm.vmas] == [
            tuple([int(x, 16) for x in line.split()[0].split("-")] + [line.split()[1]]) for line in f]
    assert pagemap.pid == pid
    runs = pagemap.runs
    pages = file.read_bytes()
    assert len(pages) == sum(r.nr_pages for r in runs) * images.PAGE_SIZE > 0
    rseq_at, rseq_len = _rseq_area(pid)
    off = 0
    with open(f"/proc/{pid}/mem", "rb") as mem:  # the task sleeps: its memory is as dumped
        for r in runs:
            n = r.nr_pages * images.PAGE_SIZE
            if not any(v.path == "[stack]" and v.start <= r.vaddr < v.end for v in mm.vmas):
                mem.seek(r.vaddr)
                live, stored = bytearray(mem.read(n)), bytearray(pages[off:off + n])
                # The kernel rewrites the rseq area (cpu_id) whenever the task moves to another CPU.
                lo, hi = max(rseq_at, r.vaddr) - r.vaddr, min(rseq_at + rseq_len, r.vaddr + n) - r.vaddr
                if lo < hi:
                    live[lo:hi] = stored[lo:hi] = bytes(hi - lo)
                assert live == stored, f"pages at {r.vaddr:#x} differ"
            off += n
    # Left running, untouched: its own check still passes.
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    assert out.read_text().splitlines()[-1] == "PASS"
    shown = subprocess.run([sys.executable, "-m", "engine.cli", "show", str(d), "--json"], capture_output=True,
                           text=True, check=True)
    doc = json.loads(shown.stdout)
    assert doc["inventory.img"]["entries"][0]["roots"] == [pid]
    assert doc[file.name]["pages"] == len(pages) // images.PAGE_SIZE
    # A reader gone (`| head -1`): no traceback, a zero exit.
    r, w = os.pipe()
    os.close(r)
    try:
        cut = subprocess.run([sys.executable, "-m", "engine.cli", "show", str(d)], stdout=w, stderr=subprocess.PIPE,
                             text=True)
    finally:
        os.close(w)
    assert (cut.returncode, cut.stderr) == (0, "")


def _rseq_area(pid: int) -> tuple[int, int]:
    """The task's registered rseq area (address, size), asked of the kernel."""
    from engine.ptrace import Tracee
    from native import ffi, lib

    t = Tracee(pid)
    try:
        conf = ffi.new("unsigned long long[3]")  # struct ptrace_rseq_configuration
        assert lib.ptrace_call(lib.PTRACE_GET_RSEQ_CONFIGURATION, pid, ffi.cast("void *", 24), conf) > 0
        return int(conf[0]), int(conf[1] & 0xFFFFFFFF)
    finally:
        t.detach()


def test_dump_kills_unless_leave_running(running: tuple[int, Path], tmp_path: Path) -> None:
    pid, _ = running
    dump([pid], tmp_path / "img")
    assert not proc.wait_gone([pid], 5)


def test_dump_refuses_bad_targets_and_leaves_them_running(running: tuple[int, Path], tmp_path: Path) -> None:
    pid, _ = running
    with pytest.raises(ProcessGone):
        dump([999999], tmp_path / "a")
    with pytest.raises(CkptError, match="dumping process itself"):
        dump([os.getpid()], tmp_path / "b")
    with pytest.raises(CkptError, match="kernel thread"):
        dump([2], tmp_path / "c")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(CkptError, match="not empty"):
        dump([pid], busy)
    assert proc.alive(pid)


def test_ckpt_cli_errors_are_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "engine.cli", "dump", "-t", "999999", "-D", str(tmp_path / "d")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == "ckpt: no such process (pid=999999)\n"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "show", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "no inventory.img" in r.stderr and r.stderr.count("\n") == 1


def test_dump_signal_dispositions(launch, tmp_path: Path) -> None:
    """sig_handlers sets 13 dispositions: the image agrees with /proc, and the task is untouched."""
    import signal as sg

    pid, out = launch("static/sig_handlers")
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    caught, ignored = int(status["SigCgt"], 16), int(status["SigIgn"], 16)
    blocked = int(status["SigBlk"], 16)
    dump([pid], tmp_path / "img", leave_running=True)
    _, [core] = images.read(tmp_path / "img" / "core.img", "core")
    acts = {a.sig: a for a in core.sigactions}
    assert sg.SIGKILL not in acts and sg.SIGSTOP not in acts
    # Only actions off the default are listed, and every one caught or ignored is.
    assert {s for s in range(1, 65) if (caught | ignored) >> (s - 1) & 1} <= set(acts)
    assert all((a.handler, a.flags, a.restorer, a.mask) != (0, 0, 0, 0) for a in acts.values())
    for sig, a in acts.items():
        bit = 1 << (sig - 1)
        assert (a.handler > 1) == bool(caught & bit), f"signal {sig}: handler {a.handler:#x}"
        assert (a.handler == 1) == bool(ignored & bit), f"signal {sig}: handler {a.handler:#x}"
    usr1 = acts[sg.SIGUSR1]
    assert usr1.flags & 0x4 and usr1.flags & 0x10000000  # SA_SIGINFO | SA_RESTART, as set
    assert acts[sg.SIGQUIT].mask == 1 << (sg.SIGUSR1 - 1)  # sa_mask {SIGUSR1}
    assert core.blocked == blocked
    # The scratch page is gone again and nothing was disturbed: the program passes its own check.
    _, [mm] = images.read(tmp_path / "img" / "mm.img", "mm")
    with open(f"/proc/{pid}/maps") as f:
        assert len(f.readlines()) == len(mm.vmas)
    os.kill(pid, signal.SIGTERM)
    assert not proc.wait_gone([pid], 10)
    assert out.read_text().splitlines()[-1] == "PASS"


def _children() -> set[int]:
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return {int(x) for x in f.read().split()}


def test_restore_refuses_a_taken_pid_and_leaves_nothing(running: tuple[int, Path], tmp_path: Path) -> None:
    from engine import restore

    pid, _ = running
    d = tmp_path / "img"
    dump([pid], d, leave_running=True)
    before = _children()
    with pytest.raises(CkptError, match=f"pid {pid} is already taken"):
        restore(d)
    assert _children() == before, "a failed restore left a process behind"
    os.kill(pid, 0)  # the original is untouched


def test_restore_refuses_a_truncated_pages_file_before_starting_anything(running: tuple[int, Path],
                                                                       tmp_path: Path) -> None:
    from engine import restore

    pid, _ = running
    d = tmp_path / "img"
    dump([pid], d, leave_running=True)
    _, [pagemap] = images.read(d / "pagemap.img", "pagemap")
    pages, _ = images.pages_of(d, pagemap, pid)
    pages.write_bytes(pages.read_bytes()[:-images.PAGE_SIZE])
    before = _children()
    with pytest.raises(images.ImageError, match="the page maps say"):
        restore(d)
    assert _children() == before


@pytest.mark.parametrize("change, words", [
    ({"pages_at": 0}, "overlap those of task"),
    ({"pages_at": 1 << 30}, "leave a gap after"),
    ({"pages": "../pages-1.img"}, "is not a pages-\\*.img of the image directory"),
    ({"pages": ""}, r"holds \d+ bytes, the page maps say \d+"),
    ({"pages_at": 100}, "not at a page"),
])
def test_restore_refuses_pages_that_do_not_fill_their_file(launch, tmp_path: Path, change: dict[str, object],
                                                         words: str) -> None:
    """Two small tasks share the dump's pages file, one after the other; a page map that puts
    the second anywhere else is refused before anything starts."""
    from engine import restore

    pids = [launch("static/env_umask")[0], launch("static/env_umask")[0]]
    d = tmp_path / "img"
    dump(pids, d, leave_running=True)
    path = images.path_of(d, "pagemap")
    _, maps = images.read(path, "pagemap")
    where = [images.pages_of(d, m, m.pid) for m in maps]
    assert where[0][0] == where[1][0] and sorted(at for _, at in where)[0] == 0 and where[0][1] != where[1][1]
    second = max(maps, key=lambda m: m.pages_at)
    for field, value in change.items():
        setattr(second, field, value)
    path.unlink()
    images.write(path, "pagemap", maps)
    before = _children()
    with pytest.raises(images.ImageError, match=words):
        restore(d)
    assert _children() == before


def test_ckpt_restore_cli_bad_directory_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "engine.cli", "restore", "-D", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no inventory.img" in r.stderr, r.stderr


def test_failed_dump_removes_what_it_made_and_leaves_the_task_running(launch, tmp_path: Path) -> None:
    """sock_udp holds a socket, which this engine refuses mid-dump (after the task was seized)."""
    pid, _ = launch("static/sock_udp")
    d = tmp_path / "new"
    with pytest.raises(CkptError, match="socket"):
        dump([pid], d)
    assert not d.exists(), "the image directory the dump created is left behind"
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    assert int(status["TracerPid"]) == 0 and status["State"].split()[0] in "SR", status["State"]
