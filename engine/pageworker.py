"""Small tasks' memory and fds read by a worker process on another CPU while the dumper goes on
with the next task: a dump's work a task is mostly Python, so a second process runs beside it
where a thread would wait for the interpreter. Reading areas (smaps), storing pages (pagemap,
/proc/PID/mem, process_vm_readv: root may, frozen tasks' memory does not change) and reading fds
ask no ptrace, so the worker can; pages a task must splice itself stay with the dumper, their
tracer (engine.pagedump). The worker is a fork of the dumper: it has the image code and nothing
to load."""
from __future__ import annotations

import fcntl
import mmap
import os
import select
import signal
import struct
import time
from pathlib import Path
from typing import Any

from engine import channel, images, pagedump
from engine.errors import CkptError, Unsupported
from engine.images.files_pb2 import Files, PipeData
from engine.images.mm_pb2 import Mm, PageMap, PageRun
from engine.ptrace import home_cpus

FROM = 16  # live tasks from which a dump starts a worker (its fork costs a few ms)
SMALL = 4 << 20  # bytes of anonymous memory in use up to which a task's pages go to the worker
PIPE = 1 << 20  # bytes the pipe of jobs holds
SPIN = 0.005  # seconds the worker spins for its next job before it sleeps
AHEAD = 8  # jobs handed over and not done yet past which the dumper keeps a task itself
_COUNT = struct.Struct("<Q")
Fields = tuple[int, int, "tuple[int, int] | None"]  # mm.describe's owner, brk and our scratch area


_send = channel.send
_unpack = channel.unpack


def _recv(fd: int) -> Any:
    """One message; EOFError when the other side is gone. Spins a moment before it sleeps:
    waking a sleeper on the other CPU costs the waker up to ~0.7 ms here (an idle vCPU)."""
    deadline = time.monotonic() + SPIN
    while not select.select([fd], [], [], 0)[0] and time.monotonic() < deadline:
        pass
    return channel.recv(fd)


class Worker:
    """The worker process and the tasks given to it; finish() waits for all of them. Jobs go by a
    pipe; answers go to a memfd nobody waits on, read once the worker is done: the dumper never
    stops to read them, and the worker never wakes it (see _recv)."""

    def __init__(self, pipe_data: dict[int, PipeData]) -> None:
        todo_r, self.todo = os.pipe2(os.O_CLOEXEC)
        try:
            fcntl.fcntl(self.todo, fcntl.F_SETPIPE_SZ, PIPE)
        except OSError:
            pass  # a smaller pipe: we wait for the worker sooner, that is all
        self.done = os.memfd_create("ckpt-page-worker", os.MFD_CLOEXEC)
        self.count = mmap.mmap(-1, _COUNT.size)  # shared: the jobs the worker has done
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the worker; its end is os._exit
            try:
                os.close(self.todo)
                _serve(todo_r, self.done, self.count)
            finally:
                os._exit(1)  # never back into the dumper's code: a fork of it
        os.close(todo_r)
        self.pipe_data = pipe_data  # the dump's: pipes the worker saw first are added
        self.into: list[tuple[Mm, PageMap] | Files] = []  # by ticket: where each answer goes
        self.compared: set[int] = set()  # tasks whose shared pages the worker lists
        self.built: set[int] = set()  # owners whose Mm the worker makes

    def free(self) -> bool:
        """Whether the worker keeps up: few jobs wait for it. Else the dumper does the next task
        itself, and neither side waits for the other at the end (the shared count, not a
        message: no wakeup, no syscall)."""
        return len(self.into) - _COUNT.unpack_from(self.count)[0] <= AHEAD

    def memory(self, pid: int, fields: Fields, out: Path, mm: Mm, into: PageMap,
               parent: tuple[int, Mm] | None = None) -> None:
        """Hand over one task's memory, read through thread pid: mm.describe with `fields`
        (owner, brk, our scratch area), then its pages stored as pagedump.store does without
        splicing. Its Mm goes to `mm` (its pid, the owner, set already) and its runs to `into`
        by finish(). With its parent's thread and Mm, the worker also lists the pages it shares
        with its parent (engine.cow): an Mm the worker builds is its own to compare with, and
        is not sent back to it."""
        twin = None
        if parent is not None:
            pmm = parent[1]
            twin = (parent[0], pmm.pid, None if pmm.pid in self.built else pmm.SerializeToString())
        self._ask(("memory", len(self.into), pid, fields, str(out), twin))
        self.into.append((mm, into))
        self.built.add(fields[0])
        if parent is not None:
            self.compared.add(into.pid)

    def files(self, tid: int, into: Files) -> None:
        """Hand over one task's fds (as files.dump through thread tid, of a task whose memory
        went to the worker: nothing adds fds to it while it is dumped); they go to `into` by
        finish(), the pipes' data seen first in the worker to pipe_data."""
        self._ask(("files", len(self.into), tid, None, "", None))
        self.into.append(into)

    def finish(self) -> None:
        """Wait for the worker to end, then take every answer; the first failure, raised."""
        self._ask(None)
        code = self._reap()
        error: CkptError | None = None
        answered = 0
        for ticket, got, why in _unpack(self._answers()):
            answered += 1
            into = self.into[ticket]
            if why is not None:
                kind, text = why
                error = error or (Unsupported(text) if kind == "unsupported" else CkptError(text))
            elif isinstance(into, tuple):
                raw, runs, inherited, (pages, pages_at) = got
                mm, pagemap = into
                mm.ParseFromString(raw)
                pagemap.pages, pagemap.pages_at = pages, pages_at
                pagemap.runs.extend(PageRun(vaddr=a, nr_pages=n) for a, n in runs)
                pagemap.inherited.extend(PageRun(vaddr=a, nr_pages=n) for a, n in inherited)
            else:
                raw, pipes = got
                pid = into.pid
                into.ParseFromString(raw)
                into.pid = pid
                for data in (PipeData.FromString(b) for b in pipes):
                    self.pipe_data.setdefault(data.id, data)
        if error is None and (code != 0 or answered < len(self.into)):
            error = CkptError("the page worker died")
        if error is not None:
            raise error

    def _answers(self) -> bytes:
        try:
            size = os.fstat(self.done).st_size
            return os.pread(self.done, size, 0)
        finally:
            os.close(self.done)

    def _ask(self, job: Any) -> None:
        try:
            _send(self.todo, job)
        except BrokenPipeError:
            raise CkptError("the page worker died") from None

    def kill(self) -> None:
        """Stop the worker now (a failed dump: it must not write on while its files go)."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
            os.close(self.done)

    def _reap(self) -> int:
        """Collect the worker; its exit code (minus the signal that killed it; -1 when it was
        collected before)."""
        code = -1
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.pid = 0
            os.close(self.todo)
            self.count.close()
        return code


def _serve(todo: int, done: int, count: mmap.mmap) -> None:  # pragma: no cover - runs in the worker
    """The worker: read memory and fds until told to stop, answer each (a failure as its one line)."""
    from engine import cow, files, mm  # (they need this module)

    code = 0
    pipe_data: dict[int, PipeData] = {}  # pipes seen in this worker
    built: dict[int, Mm] = {}  # owner -> the Mm made here: a child's pages are compared with it
    packed: pagedump.Packed | None = None  # the pages of the tasks done here
    try:
        others = home_cpus() - os.sched_getaffinity(0)
        if others:
            os.sched_setaffinity(0, others)
        while (job := _recv(todo)) is not None:
            what, ticket, pid, fields, out, twin = job
            _COUNT.pack_into(count, 0, ticket)  # the jobs before this one are done
            try:
                if what == "files":
                    seen = set(pipe_data)
                    fds = files.dump(pid, pipe_data)
                    _send(done, (ticket, (fds.SerializeToString(),
                                          [d.SerializeToString() for k, d in pipe_data.items() if k not in seen]), None))
                    continue
                owner, brk, ours = fields
                area, stored = mm.describe(pid, owner, brk, ours, Path(out))
                packed = packed or pagedump.Packed(Path(out), "worker")
                got = packed.store(pid, stored)
                where = ("", 0) if got is None else (packed.name, got[1])
                runs = pagedump.store(pid, stored, images.pages_path(Path(out), owner)) if got is None else got[0]
                built[owner] = area
                inherited = []
                if twin is not None:
                    parent, powner, raw = twin
                    pmm = built.get(powner) if raw is None else Mm.FromString(raw)
                    if pmm is not None:  # (else the parent's job failed: so does the dump)
                        inherited = cow.shared(pid, parent, area, pmm, runs)
                _send(done, (ticket, (area.SerializeToString(), [(r.vaddr, r.nr_pages) for r in runs],
                                      [(r.vaddr, r.nr_pages) for r in inherited], where), None))
            except Unsupported as e:
                _send(done, (ticket, None, ("unsupported", str(e))))
            except (CkptError, OSError) as e:
                text = str(e) if what == "files" else f"pid {pid}: storing its memory: {e}"
                _send(done, (ticket, None, ("error", text)))
    except BaseException:  # noqa: BLE001 - anything: the dumper learns of it by the exit code
        code = 1
    if packed is not None:
        packed.close()
    os._exit(code)
