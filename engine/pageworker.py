"""Pages of small tasks stored by a worker process on another CPU while the dumper goes on with
the next task: a dump's work a task is mostly Python, so a second process runs beside it where a
thread would wait for the interpreter. Storing pages asks no ptrace (pagemap, /proc/PID/mem,
process_vm_readv: root may, frozen tasks' memory does not change), so the worker can; pages a
task must splice itself stay with the dumper, their tracer (engine.pagedump). The worker is a
fork of the dumper: it has the image code and nothing to load."""
from __future__ import annotations

import fcntl
import os
import pickle
import select
import signal
import struct
from pathlib import Path
from typing import Any

from engine import pagedump
from engine.errors import CkptError, Unsupported
from engine.images.files_pb2 import Files, PipeData
from engine.images.mm_pb2 import Mm, PageMap, PageRun, Vma
from engine.ptrace import home_cpus

FROM = 16  # live tasks from which a dump starts a worker (its fork costs a few ms)
SMALL = 4 << 20  # bytes of anonymous memory in use up to which a task's pages go to the worker
PIPE = 1 << 20  # bytes each pipe to and from the worker holds
_LEN = struct.Struct("<I")
Twin = tuple[int, Mm, Mm]  # a task's parent's thread (pages compared through it), its Mm, the parent's Mm


def _send(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _recv(fd: int) -> Any:
    """One message; EOFError when the other side is gone."""
    head = _exactly(fd, _LEN.size)
    return pickle.loads(_exactly(fd, _LEN.unpack(head)[0]))


def _exactly(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = os.read(fd, n - len(out))
        if not got:
            raise EOFError
        out += got
    return out


class Worker:
    """The worker process and the tasks given to it; finish() waits for all of them."""

    def __init__(self, pipe_data: dict[int, PipeData]) -> None:
        todo_r, self.todo = os.pipe2(os.O_CLOEXEC)
        self.done, done_w = os.pipe2(os.O_CLOEXEC)
        for fd in (self.todo, self.done):
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE)
            except OSError:
                pass  # a smaller pipe: the answers are read as tasks are handed over anyway
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the worker; its end is os._exit
            os.close(self.todo)
            os.close(self.done)
            _serve(todo_r, done_w)
        os.close(todo_r)
        os.close(done_w)
        self.pipe_data = pipe_data  # the dump's: pipes the worker saw first are added
        self.into: list[PageMap | Files] = []  # by ticket: where each answer goes
        self.compared: set[int] = set()  # tasks whose shared pages the worker lists
        self.answered = 0
        self.error: CkptError | None = None

    def store(self, pid: int, vmas: list[Vma], path: Path, into: PageMap, twin: Twin | None = None) -> None:
        """Hand over one task's pages (as pagedump.store without splicing); their runs go to
        `into` by finish(). With its twin (its parent's thread, its own and its parent's Mm),
        the worker also lists the pages it shares with its parent (engine.cow)."""
        self._answers(block=False)  # the worker must never wait to answer
        pair = None if twin is None else (twin[0], twin[1].SerializeToString(), twin[2].SerializeToString())
        self._ask(("pages", len(self.into), pid, [v.SerializeToString() for v in vmas], str(path), pair))
        self.into.append(into)
        if twin is not None:
            self.compared.add(into.pid)

    def files(self, tid: int, into: Files) -> None:
        """Hand over one task's fds (as files.dump through thread tid, of a task whose pages
        went to the worker: nothing adds fds to it while it is dumped); they go to `into` by
        finish(), the pipes' data seen first in the worker to pipe_data."""
        self._answers(block=False)
        self._ask(("files", len(self.into), tid, None, "", None))
        self.into.append(into)

    def finish(self) -> None:
        """Wait for every task handed over, its runs in its page map; the first failure, raised."""
        self._ask(None)
        try:
            self._answers(block=True)
        finally:
            self._reap()
        if self.error:
            raise self.error

    def _ask(self, job: Any) -> None:
        try:
            _send(self.todo, job)
        except BrokenPipeError:
            raise self.error or CkptError("the page worker died") from None

    def _answers(self, block: bool) -> None:
        """Take the worker's answers: those there already, or (block) all."""
        while self.answered < len(self.into) and (block or select.select([self.done], [], [], 0)[0]):
            try:
                ticket, got, why = _recv(self.done)
            except EOFError:
                self.error = self.error or CkptError("the page worker died")
                self.answered = len(self.into)
                return
            into = self.into[ticket]
            if why is not None:
                kind, text = why
                self.error = self.error or (Unsupported(text) if kind == "unsupported" else CkptError(text))
            elif isinstance(into, PageMap):
                runs, inherited = got
                into.runs.extend(PageRun(vaddr=a, nr_pages=n) for a, n in runs)
                into.inherited.extend(PageRun(vaddr=a, nr_pages=n) for a, n in inherited)
            else:
                raw, pipes = got
                pid = into.pid
                into.ParseFromString(raw)
                into.pid = pid
                for data in (PipeData.FromString(b) for b in pipes):
                    self.pipe_data.setdefault(data.id, data)
            self.answered += 1

    def kill(self) -> None:
        """Stop the worker now (a failed dump: it must not write on while its files go)."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()

    def _reap(self) -> None:
        if self.pid:
            os.waitpid(self.pid, 0)
            self.pid = 0
            os.close(self.todo)
            os.close(self.done)


def _serve(todo: int, done: int) -> None:  # pragma: no cover - runs in the worker
    """The worker: store pages until told to stop, answer each (a failure as its one line)."""
    from engine import cow, files  # (they need engine.mm, which needs this module)

    code = 0
    pipe_data: dict[int, PipeData] = {}  # pipes seen in this worker
    try:
        others = home_cpus() - os.sched_getaffinity(0)
        if others:
            os.sched_setaffinity(0, others)
        while (job := _recv(todo)) is not None:
            what, ticket, pid, raw, path, pair = job
            try:
                if what == "files":
                    seen = set(pipe_data)
                    fds = files.dump(pid, pipe_data)
                    _send(done, (ticket, (fds.SerializeToString(),
                                          [d.SerializeToString() for k, d in pipe_data.items() if k not in seen]), None))
                    continue
                vmas = [Vma.FromString(b) for b in raw]
                runs = pagedump.store(pid, vmas, Path(path))
                inherited = [] if pair is None else cow.shared(pid, pair[0], Mm.FromString(pair[1]),
                                                               Mm.FromString(pair[2]), runs)
                _send(done, (ticket, ([(r.vaddr, r.nr_pages) for r in runs],
                                      [(r.vaddr, r.nr_pages) for r in inherited]), None))
            except Unsupported as e:
                _send(done, (ticket, None, ("unsupported", str(e))))
            except (CkptError, OSError) as e:
                text = str(e) if what == "files" else f"pid {pid}: storing its pages: {e}"
                _send(done, (ticket, None, ("error", text)))
    except BaseException:  # noqa: BLE001 - anything: the dumper learns of it by the pipe's end
        code = 1
    os._exit(code)
