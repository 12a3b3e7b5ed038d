"""The task part end to end: a real program sets credentials, limits, prctl switches, robust list,
tid address and a seccomp filter, some per thread; after dump and restore /proc shows the same
values and the program, asked with SIGUSR2, finds each of them again (tests/data/task_attrs.c).
The plan that installs filters around the clones of threads, on a model of the kernel."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

import engine
from cbuild import compile_c
from engine import images, ptrace, seccomp
from engine.errors import Unsupported
from engine.ptrace import Tracee
from engine.images.task_pb2 import SeccompFilter
from native import lib

SOURCE = Path(__file__).resolve().parent / "data" / "task_attrs.c"
SYS_GET_ROBUST_LIST = 274  # asm/unistd_64.h
STATUS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
          "Seccomp_filters", "THP_enabled")
C_DUMPABLE = 18  # task_attrs.c: the exit codes when dumpable, or the own thread's caps or filters differ
C_THREAD_CAPS, C_THREAD_SECCOMP = 29, 31
CAP_DAC_OVERRIDE, CAP_NET_BIND_SERVICE, CAP_SYS_BOOT = 1, 10, 22


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(SOURCE, tmp_path_factory.mktemp("task_attrs") / "task_attrs")


@pytest.fixture
def procs() -> Iterator[list[int]]:
    """Pids of every process a test started or restored: killed and reaped afterwards."""
    pids: list[int] = []
    yield pids
    for pid in dict.fromkeys(pids):
        try:
            # Only a child of ours is killed: a pid the dumper already reaped may be reused.
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _start(program: Path, mode: str, procs: list[int]) -> int:
    """Run task_attrs in this mode; return once it has set everything up."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            os.dup2(w, 2)
            os.closerange(3, 1 << 16)  # pytest's own fds (pipes) must not be inherited
            os.execv(program, [str(program), mode])
        finally:
            os._exit(127)
    procs.append(pid)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()  # EOF once it puts /dev/null on its fds
    assert out == "ready\n", out
    return pid


def _robust_list(pid: int) -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    head, size = ctypes.c_uint64(), ctypes.c_size_t()
    assert libc.syscall(SYS_GET_ROBUST_LIST, pid, ctypes.byref(head), ctypes.byref(size)) == 0
    return head.value, size.value


@dataclass(frozen=True, slots=True)
class Seen:
    """What the outside sees of the task's attributes."""

    status: dict[str, str]  # the STATUS lines of /proc/PID/status
    limits: dict[str, list[str]]  # /proc/PID/limits: row name -> [soft, hard]
    personality: int
    robust: tuple[int, int]  # get_robust_list: head, length
    owner: int  # of /proc/PID/status: root when the task is not dumpable


def _seen(pid: int) -> Seen:
    with open(f"/proc/{pid}/status") as f:
        st = {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
    with open(f"/proc/{pid}/limits") as f:
        limits = {line[:26].strip(): line[26:].split()[:2] for line in f.read().splitlines()[1:]}
    with open(f"/proc/{pid}/personality") as f:
        personality = int(f.read(), 16)
    return Seen({k: st[k] for k in STATUS}, limits, personality, _robust_list(pid),
                os.stat(f"/proc/{pid}/status").st_uid)


def _threads(pid: int) -> dict[str, list[str]]:
    """The per-thread status lines of every thread, by tid."""
    out = {}
    for tid in sorted(os.listdir(f"/proc/{pid}/task")):
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            out[tid] = [line for line in f if line.partition(":")[0] in STATUS]
    return out


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _checked_in_task(pid: int) -> int:
    """Ask the task to compare every attribute with what it set: its exit code."""
    os.kill(pid, signal.SIGUSR2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _cr(pid: int, images_dir: Path, procs: list[int]) -> int:
    engine.dump([pid], images_dir)
    [new] = engine.restore(images_dir)
    procs.append(new)
    return new


def test_checker_passes_without_cr(program: Path, procs: list[int]) -> None:
    for mode in ("dropped", "root"):
        assert _checked_in_task(_start(program, mode, procs)) == 0


def test_dropped_credentials_and_everything_else_come_back(program: Path, procs: list[int], tmp_path: Path) -> None:
    pid = _start(program, "dropped", procs)
    before = _seen(pid)
    # What the program set, as /proc shows it: the test checks the values, not just equality.
    st = before.status
    assert st["Uid"].split() == ["1000", "1001", "1002", "1003"]
    assert st["Gid"].split() == ["2000", "2001", "2002", "2003"]
    assert st["Groups"] == "3000 3001 3002"
    assert int(st["CapAmb"], 16) == 1 << CAP_NET_BIND_SERVICE
    assert (st["NoNewPrivs"], st["Seccomp"], st["Seccomp_filters"], st["THP_enabled"]) == ("0", "2", "1", "0")
    assert before.limits["Max open files"] == ["64", "128"]
    assert before.limits["Max core file size"] == ["4096", "8192"]
    assert before.personality == 0x0040000  # ADDR_NO_RANDOMIZE
    assert before.owner == 0  # not dumpable
    assert before.robust[0] != 0 and before.robust[1] == 24
    new = _cr(pid, tmp_path / "img", procs)
    assert new == pid
    assert _seen(new) == before
    assert _checked_in_task(new) == 0


def test_root_with_no_new_privs_comes_back(program: Path, procs: list[int], tmp_path: Path) -> None:
    pid = _start(program, "root", procs)
    before = _seen(pid)
    st = before.status
    assert st["Uid"].split() == ["0"] * 4
    assert (st["NoNewPrivs"], st["Seccomp"], st["Seccomp_filters"]) == ("1", "2", "1")
    assert int(st["CapPrm"], 16) != int(st["CapEff"], 16)
    new = _cr(pid, tmp_path / "img", procs)
    assert _seen(new) == before
    assert _checked_in_task(new) == 0


def test_the_in_task_check_sees_a_changed_value(program: Path, procs: list[int], tmp_path: Path) -> None:
    """The image says dumpable 1: the restored program must notice (the check is not blind)."""
    pid = _start(program, "dropped", procs)
    d = tmp_path / "img"
    engine.dump([pid], d)
    path = images.path_of(d, "task")
    _, [task] = images.read(path, "task")
    assert task.dumpable == 0 and task.pdeathsig == signal.SIGUSR1 and task.thp_disable == 1
    assert task.clear_tid != 0 and len(task.seccomp) == 1 and len(task.seccomp[0].program) == 6 * 8
    task.dumpable = 1
    path.unlink()
    images.write(path, "task", [task])
    [new] = engine.restore(d)
    procs.append(new)
    assert os.stat(f"/proc/{new}/status").st_uid == 1001  # dumpable again: owned by its euid
    assert _checked_in_task(new) == C_DUMPABLE


def test_strict_seccomp_is_refused_and_left_running(program: Path, procs: list[int], tmp_path: Path) -> None:
    pid = _start(program, "strict", procs)
    deadline = time.monotonic() + 10
    while "Seccomp:\t1\n" not in Path(f"/proc/{pid}/status").read_text():  # it enters strict mode after "ready"
        assert time.monotonic() < deadline, "task_attrs never entered strict mode"
        time.sleep(0.01)
    d = tmp_path / "img"
    with pytest.raises(Unsupported, match="strict"):
        engine.dump([pid], d)
    assert not d.exists()  # the failed dump removed the directory it made
    assert _state(pid) in ("R", "S")  # running again, not stopped


def test_a_thread_gets_the_same_credentials_and_filter(program: Path, procs: list[int], tmp_path: Path) -> None:
    """Creds, no_new_privs and filters are per thread: the restore gives them to each thread."""
    pid = _start(program, "threads", procs)
    before = _threads(pid)
    assert len(before) == 2 and all("Seccomp_filters:\t1\n" in lines for lines in before.values())
    new = _cr(pid, tmp_path / "img", procs)
    assert _threads(new) == before
    assert _checked_in_task(new) == 0


def test_an_image_without_per_thread_attributes_gives_threads_the_main_ones(program: Path, procs: list[int],
                                                                           tmp_path: Path) -> None:
    """Images from before per-thread attributes have none: every thread gets the main thread's."""
    pid = _start(program, "threads", procs)
    before = _threads(pid)
    d = tmp_path / "img"
    engine.dump([pid], d)
    path = images.path_of(d, "task")
    _, [task] = images.read(path, "task")
    assert [a.tid for a in task.threads] == [int(tid) for tid in before if tid != str(pid)]
    del task.threads[:]
    path.unlink()
    images.write(path, "task", [task])
    [new] = engine.restore(d)
    procs.append(new)
    assert _threads(new) == before
    assert _checked_in_task(new) == 0


def _fields(lines: list[str]) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _own_threads(pid: int) -> tuple[dict[str, str], dict[str, str]]:
    """The main thread's and the other threads' status lines of task_attrs own (the third
    thread inherited all from the second: they must agree)."""
    seen = _threads(pid)
    second, third = [_fields(lines) for tid, lines in seen.items() if tid != str(pid)]
    assert second == third
    return _fields(seen[str(pid)]), second


def test_a_thread_with_its_own_credentials_and_filters_comes_back(program: Path, procs: list[int],
                                                                   tmp_path: Path) -> None:
    """Each thread gets its own credentials, no_new_privs and filters back: the filter it
    shares with the main thread, its own, and not the one the main thread added later; the
    third thread, made by the second (engine.seccomp.plan), gets the same."""
    pid = _start(program, "own", procs)
    before = _threads(pid)
    main, other = _own_threads(pid)
    # What the program set, as /proc shows it: the test checks the values, not just equality.
    assert main["Uid"].split() == ["0"] * 4 and other["Uid"].split() == ["0", "5", "0", "5"]
    assert other["Gid"].split() == ["0", "7", "0", "7"]
    assert int(main["CapEff"], 16) & ~int(other["CapEff"], 16) == 1 << CAP_DAC_OVERRIDE
    assert int(main["CapBnd"], 16) & ~int(other["CapBnd"], 16) == 1 << CAP_SYS_BOOT
    assert (main["NoNewPrivs"], main["Seccomp_filters"]) == ("0", "2")
    assert (other["NoNewPrivs"], other["Seccomp_filters"]) == ("1", "2")
    new = _cr(pid, tmp_path / "img", procs)
    assert _threads(new) == before
    assert _checked_in_task(new) == 0


@pytest.mark.parametrize("lost", ["CapEff", "filter"])
def test_a_thread_that_lost_its_own_state_is_seen(program: Path, procs: list[int], tmp_path: Path, lost: str) -> None:
    """An image whose thread lost its own CapEff or its own filter gives a restored thread that
    /proc and the in-task check both find wrong (neither look is blind)."""
    pid = _start(program, "own", procs)
    d = tmp_path / "img"
    engine.dump([pid], d)
    path = images.path_of(d, "task")
    _, [task] = images.read(path, "task")
    assert len(task.threads) == 2
    for th in task.threads:
        assert len(th.seccomp) == 2 and th.seccomp[0] == task.seccomp[0] and th.seccomp[1] != task.seccomp[1]
        if lost == "CapEff":
            th.creds.cap_eff = task.creds.cap_eff
        else:
            del th.seccomp[1]
    path.unlink()
    images.write(path, "task", [task])
    [new] = engine.restore(d)
    procs.append(new)
    _, other = _own_threads(new)
    if lost == "CapEff":
        assert int(other["CapEff"], 16) >> CAP_DAC_OVERRIDE & 1
        assert _checked_in_task(new) == C_THREAD_CAPS
    else:
        assert other["Seccomp_filters"] == "1"
        assert _checked_in_task(new) == C_THREAD_SECCOMP


def test_thread_attributes_of_another_thread_are_a_clear_image_error(program: Path, procs: list[int],
                                                                     tmp_path: Path) -> None:
    pid = _start(program, "own", procs)
    d = tmp_path / "img"
    engine.dump([pid], d)
    path = images.path_of(d, "task")
    _, [task] = images.read(path, "task")
    task.threads[0].tid += 1
    path.unlink()
    images.write(path, "task", [task])
    with pytest.raises(images.ImageError, match=r"task.img: .* attributes of threads \[\d+, \d+\], its core has threads"):
        engine.restore(d)


def _carried_out(lists: dict[int, list[SeccompFilter]], main: int) -> dict[int, list[tuple[int, SeccompFilter]]]:
    """A model of the kernel running seccomp.plan: a filter is (serial, filter), installed
    once; a clone copies its maker's chain (the same filters, not copies)."""
    have: dict[int, list[tuple[int, SeccompFilter]]] = {main: []}
    serial = 0
    for step in seccomp.plan(lists, main):
        if isinstance(step, seccomp.Clone):
            assert step.by in have and step.tid not in have
            have[step.tid] = list(have[step.by])
        else:
            assert step.index == len(have[step.by])  # each thread installs its own in order
            serial += 1
            have[step.by].append((serial, lists[step.by][step.index]))
    return have


def _f(name: str) -> SeccompFilter:
    return SeccompFilter(program=name.encode() * 8)


@pytest.mark.parametrize("shape", [
    {1: "AB", 2: "A"},  # static/env_seccomp: the main thread added one after the thread started
    {1: "A", 2: "AX", 3: "AXY", 4: "AX", 5: ""},  # threads that sandboxed themselves, and made more
    {1: "AB", 2: "AX", 3: "AXB", 4: "X", 5: "AB", 6: "ABC"},  # branches off the main list, and off those
    {1: "", 2: "XY", 3: "XZ"},
    {1: "A" * 3000, 2: "A" * 2999 + "B"},  # deep: no recursion limit
])
def test_the_filter_plan_gives_each_thread_its_list_sharing_what_it_can(shape: dict[int, str]) -> None:
    lists = {tid: [_f(c) for c in names] for tid, names in shape.items()}
    have = _carried_out(lists, 1)
    assert {tid: [f for _, f in chain] for tid, chain in have.items()} == lists
    for a in have:
        for b in have:
            common = 0
            while common < min(len(lists[a]), len(lists[b])) and lists[a][common] == lists[b][common]:
                common += 1
            # Equal over equal older ones: one filter, inherited, as the kernel would have it.
            assert [s for s, _ in have[a][:common]] == [s for s, _ in have[b][:common]]


# Unregisters its robust list and tid address, then on SIGUSR1 writes what it has of both.
UNREGISTERED = r"""
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.syscall(273, None, 24) == 0 and libc.syscall(218, None) > 0  # set_robust_list, set_tid_address
def report(*_):
    head, size, tid_at = ctypes.c_void_p(), ctypes.c_size_t(), ctypes.c_void_p()
    libc.syscall(274, 0, ctypes.byref(head), ctypes.byref(size))  # get_robust_list
    libc.prctl(40, ctypes.byref(tid_at), 0, 0, 0)  # PR_GET_TID_ADDRESS
    with open(sys.argv[1] + ".got", "w") as f:
        f.write(f"{head.value or 0} {tid_at.value or 0}")
signal.signal(signal.SIGUSR1, report)
with open(sys.argv[1], "w") as f:
    f.write("ready")
while True:
    signal.pause()
"""


def test_an_empty_robust_list_and_tid_address_stay_empty(procs: list[int], tmp_path: Path) -> None:
    """The restore stub's C library registered both for itself; a task that had none must not
    come back with the stub's (an address the kernel writes to when the task exits)."""
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", UNREGISTERED, str(ready)], stdin=subprocess.DEVNULL)
    procs.append(p.pid)
    deadline = time.monotonic() + 10
    while not (ready.exists() and ready.read_text()):
        assert time.monotonic() < deadline, "the program did not start"
        time.sleep(0.01)
    engine.dump([p.pid], tmp_path / "img")
    p.wait()
    assert engine.restore(tmp_path / "img") == [p.pid]
    os.kill(p.pid, signal.SIGUSR1)
    got = tmp_path / "ready.got"
    while not (got.exists() and got.read_text()):
        assert time.monotonic() < deadline + 10, "the restored program did not answer"
        time.sleep(0.01)
    assert got.read_text() == "0 0"


def test_the_read_only_questions_of_a_dump_are_one_batch(program: Path, procs: list[int], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """brk(0), the itimers, the task part's prctls and personality and the subreaper flag go to
    the task in one remote batch (engine.questions), asked nowhere else, which maps the scratch
    area too; what they told is in the images (the test above checks it comes back)."""
    pid = _start(program, "dropped", procs)
    batches: list[list[tuple[int, ...]]] = []
    real = Tracee._run

    def run(self: Tracee, calls: list[tuple[int, ...]], *args: object, **kw: object) -> list[int]:
        batches.append([tuple(c) for c in calls])
        return real(self, calls, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Tracee, "_run", run)
    engine.dump([pid], tmp_path / "img", leave_running=True)
    asked = {lib.SYS_brk, lib.SYS_getitimer, lib.SYS_personality}
    together = [b for b in batches if asked & {c[0] for c in b}]
    assert len(together) == 1, batches
    got = together[0]
    assert asked <= {c[0] for c in got} and (lib.SYS_prctl, lib.PR_GET_CHILD_SUBREAPER) in {c[:2] for c in got}
    assert got[0][:2] == (ptrace.SYS_MMAP, ptrace.SCRATCH_AT)  # the scratch area, in the same batch
    assert not [b for b in batches if b is not got and (lib.SYS_prctl, lib.PR_GET_CHILD_SUBREAPER) in
                {c[:2] for c in b}]
    (_, [task]) = images.read(images.path_of(tmp_path / "img", "task"), "task")
    assert task.personality == 0x0040000 and task.dumpable == 0
    assert _checked_in_task(pid) == 0  # left running as it was
