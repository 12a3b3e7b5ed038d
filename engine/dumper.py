"""Dump of single-thread processes without children: identity, CPU, memory, signals and
plain files, one module per kind of state. Timers, creds and trees come next."""
from __future__ import annotations

import errno
import os
from pathlib import Path

from engine import cpu, files, images, mm, proc, signals, threads
from engine.parts import PARTS
from engine.errors import CkptError, ProcessGone, PtraceError
from engine.images.core_pb2 import Core
from engine.images.inventory_pb2 import Inventory
from engine.ptrace import Tracee

VERSION = "0.2"  # of the engine and its image format
MAX_SCANS = 16


def _dump_task(t: Tracee, others: list[Tracee], out: Path) -> None:
    pid = t.pid
    st = proc.stat(pid)
    core = Core(pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, comm=st.comm)
    cpu.dump(t, core)
    fds = files.dump(pid)
    area, runs = mm.dump(t, out)
    # After the memory: the scratch page these remote calls use must not be in the image.
    actions, blocked, altstack = signals.dump(t)
    core.sigactions.extend(actions)
    core.blocked = blocked
    core.altstack.CopyFrom(altstack)
    core.pending.extend(signals.pending(t))
    if others:
        with t.scratch() as buf:
            core.threads.extend(threads.dump(tt, buf) for tt in others)
    images.write(images.path_of(out, "core", pid), "core", [core])
    images.write(images.path_of(out, "mm", pid), "mm", [area])
    images.write(images.path_of(out, "pagemap", pid), "pagemap", runs)
    images.write(images.path_of(out, "files", pid), "files", [fds])
    for part in PARTS:
        images.write(images.path_of(out, part.KIND, pid), part.KIND, [part.dump(t)])


def _refuse(pid: int) -> None:
    """Tasks this engine step cannot (or must not) dump: one clear reason."""
    if pid == os.getpid():
        raise CkptError(f"pid {pid} is the dumping process itself")
    st = proc.stat(pid)
    if st.flags & 0x00200000:  # PF_KTHREAD
        raise CkptError(f"pid {pid} ({st.comm}) is a kernel thread")
    if st.state in "ZX":
        raise CkptError(f"pid {pid} is a zombie: zombies are dumped from engine part 2 on")
    if proc.children(pid):
        raise CkptError(f"pid {pid} has children: process trees are dumped from engine part 2 on")


def dump(roots: list[int], out: Path, leave_running: bool = False) -> None:
    """Checkpoint these tasks into the empty (or new) directory `out`; kill them afterwards
    unless leave_running. A failed dump leaves every task running as it was."""
    if out.exists() and any(out.iterdir()):
        raise CkptError(f"{out}: the image directory is not empty")
    for pid in roots:
        _refuse(pid)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    frozen: list[Tracee] = []
    try:
        # Every task is stopped before any is read, and stays stopped until all are written.
        groups: list[tuple[Tracee, list[Tracee]]] = []
        for pid in roots:
            frozen.append(Tracee(pid))
            groups.append((frozen[-1], _freeze_threads(pid, frozen)))
        for t, others in groups:
            _dump_task(t, others, out)
        inv = Inventory(engine_version=VERSION, kernel=os.uname().release, roots=roots, pids=roots,
                        kinds=sorted(images.KINDS))
        images.write(images.path_of(out, "inventory"), "inventory", [inv])
    except BaseException:
        for p in out.iterdir():
            p.unlink()
        if created:
            out.rmdir()
        _let_go(frozen, strict=False)
        raise
    if leave_running:
        _let_go(frozen)
    else:
        # Still stopped: they never run again. Threads come after their leader in `frozen`,
        # and a traced leader is collected only after its threads.
        for t in reversed(frozen):
            t.kill()


def _freeze_threads(pid: int, frozen: list[Tracee]) -> list[Tracee]:
    """Seize every other thread of the process, re-scanning until no new one appears (a
    thread not yet stopped may still create more)."""
    seized: dict[int, Tracee] = {}
    for _ in range(MAX_SCANS):
        new = [tid for tid in threads.tids(pid) if tid not in seized]
        if not new:
            return [seized[tid] for tid in sorted(seized)]
        for tid in new:
            try:
                seized[tid] = Tracee(tid)
            except ProcessGone:
                continue  # it exited between the listing and the seizure: not part of the state
            except PtraceError as e:
                # An exiting thread refuses the seizure (EPERM); one that is not exiting may not.
                if e.err == errno.EPERM and _exiting(pid, tid):
                    continue
                raise
            frozen.append(seized[tid])
    raise CkptError(f"pid {pid} keeps creating threads ({len(seized)} seized after {MAX_SCANS} scans)")


def _exiting(pid: int, tid: int) -> bool:
    """Whether a thread is gone or dying (zombie/dead, or PF_EXITING)."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return True
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0] in "ZX" or bool(int(rest[6]) & 0x4)  # PF_EXITING (include/linux/sched.h)


def _let_go(frozen: list[Tracee], strict: bool = True) -> None:
    """Detach every frozen task (each as it was); when strict, the first error is raised
    (otherwise an error is on its way already and this one would hide it)."""
    errors: list[BaseException] = []
    for t in frozen:
        try:
            t.detach()
        except CkptError as e:
            errors.append(e)
    if errors and strict:
        raise errors[0]
