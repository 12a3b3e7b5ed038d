"""A second restorer process on the other CPU: it rebuilds whole subtrees of forked tasks
(engine.cow) while the restorer goes on with the rest. A task's rebuild is mostly Python, so a
process beside the restorer runs where a thread would wait for the interpreter.

The restorer forks a chosen subtree's top task as usual, then parks it (Tracee.park: in pause(2),
every signal blocked) and hands it over; the helper seizes it and rebuilds it and everything it
forks. The helper takes only tasks that need nothing of the restorer's per-restore registries:
every fd they open anew is a pipe end or one of their own (no memfd, pidfd or description
shared with another task), and no area is shared memory or a memfd. Every task is whole before any runs:
the helper says it is done, waits for the word, then lets its tasks go while the restorer lets
go of its own. The helper is a fork of the restorer: it has the loaded checkpoint already."""
from __future__ import annotations

import heapq
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from engine import channel
from engine.errors import CkptError
from engine.images.files_pb2 import Files
from engine.images.mm_pb2 import Mm
from engine.mm import anon_shared
from engine.ptrace import Tracee, home_cpus, repin

FROM = 16  # forked tasks from which a restore starts a helper (its fork costs a few ms)
SHARE = 0.5  # the part of the live tasks the helper is given, at most
STOP_WAIT = 5.0  # seconds an aborted helper has to kill its tasks before it is killed itself
Job = tuple[int, int, int, int, int]  # dumped pid, pid as we see it, its syscall address, its pidfd of us, forker
Note = Callable[[list[int]], None]  # the helper writes down the pids (as we see them) of tasks it made


@dataclass
class Candidate:
    """What the choice looks at of one live task."""

    forker: int | None  # the task that forks it (engine.cow), None if the plan makes it
    stopped: bool  # dumped stopped, or its stop report taken (engine.stops): the restorer's
    files: Files
    parent_files: Files | None
    mm: Mm


def choose(tasks: Mapping[int, Candidate], forked_by: Mapping[int, list[int]],
           alike: Callable[[Files, Files], set[int]], cpus: int) -> set[int]:
    """The forked tasks whose subtrees the helper rebuilds (each with every task it forks, and
    they theirs): about SHARE of the live tasks, the largest subtrees that fit first; none with
    fewer than FROM forked tasks or a single CPU."""
    forker = {p: c.forker for p, c in tasks.items() if c.forker is not None}
    if cpus < 2 or len(forker) < FROM:
        return set()
    size: dict[int, int] = {}
    fits: dict[int, bool] = {}

    def measure(pid: int) -> None:
        order, todo = [], [pid]
        while todo:  # parents before children; sizes filled children first
            x = todo.pop()
            order.append(x)
            todo += forked_by.get(x, [])
        for x in reversed(order):
            kids = forked_by.get(x, [])
            size[x] = 1 + sum(size[k] for k in kids)
            fits[x] = _alone(tasks[x], alike) and all(fits[k] for k in kids)

    tops = [p for p, f in forker.items() if f not in forker]  # forked by a task the plan makes
    for p in tops:
        measure(p)
    want = int(len(tasks) * SHARE)
    heap = [(-size[p], p) for p in tops]
    heapq.heapify(heap)
    chosen: set[int] = set()
    got = 0
    while heap and got < want:
        n, p = heapq.heappop(heap)
        if fits[p] and got - n <= want:
            chosen.add(p)
            got -= n
        else:
            for k in forked_by.get(p, []):
                heapq.heappush(heap, (-size[k], k))
    return chosen


def _alone(c: Candidate, alike: Callable[[Files, Files], set[int]]) -> bool:
    """Whether the helper can rebuild this forked task by itself (see the module's text)."""
    if c.stopped or c.parent_files is None or c.mm.memfds:
        return False
    if any(v.memfd or anon_shared(v) for v in c.mm.vmas):
        return False
    # A pipe end is one description at restore, ours since before the helper's fork: handed
    # over from our fd table, it is the same object whoever hands it.
    kept = alike(c.files, c.parent_files)
    return all(e.pipe or not (e.memfd or e.HasField("kernel") or e.shared)
               for e in c.files.fds if e.fd not in kept)


class _Aborted(Exception):
    """The restorer failed: the helper kills its tasks and ends."""


class Helper:
    """The restorer's side. `work(job, note)` rebuilds a handed task and its subtree (noting
    each task it forks as it goes), `release()` lets them all go, `drop()` kills them: all
    three run in the helper, on its own state."""

    def __init__(self, chosen: set[int], work: Callable[[Job, Note], None], release: Callable[[], None],
                 drop: Callable[[], None]) -> None:
        self.chosen = chosen
        self._work, self._release, self._drop = work, release, drop
        self.pid = 0
        self.jobs = self.said = self.done = -1
        self.parked: list[int] = []  # pids of the tasks handed over, as we see them
        self.tasks: list[int] = []  # every task the helper forked (as it wrote down)
        self._error: str | None = None  # its failure, as it wrote it down

    def give(self, t: Tracee, pid: int, pidfd: int, forker: int) -> None:
        """Hand over forked task pid (t, traced by us, stopped where it was forked): parked,
        then seized by the helper; the helper starts at the first."""
        if not self.pid:
            self._start()
        at = t.syscall_address()
        t.park()
        self.parked.append(t.pid)
        self._ask((pid, t.pid, at, pidfd, forker))

    def ready(self) -> None:
        """Say there is no more; wait until every handed task is rebuilt (CkptError with the
        helper's line if one failed, or if it died)."""
        if not self.pid:
            return
        self._ask(None)
        got = os.read(self.said, 1)
        self._read_answers()
        if got != b"r":
            raise CkptError(self._error or "the restore helper died")

    def go(self) -> None:
        """Let the helper let go of its tasks."""
        if self.pid:
            self._ask("go")

    def finish(self) -> None:
        """Wait for the helper to have let go of every task of its."""
        if self.pid and self._reap() != 0:
            self._read_answers()
            raise CkptError(self._error or "the restore helper died letting its tasks go")

    def abort(self) -> None:
        """A failed restore: the helper kills its tasks and ends (killed itself if it does not
        within STOP_WAIT); then every task it said it has, and every parked one, is killed."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + STOP_WAIT
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
                    break
                time.sleep(0.001)
            self.pid = 0
        # (Also when it ended by itself: one that died letting its tasks go left some running.)
        self._read_answers()
        for pid in self.tasks + self.parked:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.close()

    def close(self) -> None:
        """Our ends of the channels go."""
        for fd in (self.jobs, self.said, self.done):
            if fd >= 0:
                os.close(fd)
        self.jobs = self.said = self.done = -1

    def _read_answers(self) -> None:
        """What the helper wrote down: its tasks as it made them, and its failure if any."""
        if self.done < 0:
            return
        self.tasks = []  # (read whole each time)
        for kind, value in channel.unpack(os.pread(self.done, os.fstat(self.done).st_size, 0)):
            if kind == "tasks":
                self.tasks += value
            elif kind == "error":
                self._error = value

    def _ask(self, job: Any) -> None:
        try:
            channel.send(self.jobs, job)
        except BrokenPipeError:
            self._read_answers()
            raise CkptError(self._error or "the restore helper died") from None

    def _reap(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return os.waitstatus_to_exitcode(status)

    def _start(self) -> None:
        jobs_r, self.jobs = os.pipe2(os.O_CLOEXEC)
        said_r, said_w = os.pipe2(os.O_CLOEXEC)
        self.said = said_r
        self.done = os.memfd_create("ckpt-restore-helper", os.MFD_CLOEXEC)
        others = sorted(home_cpus() - os.sched_getaffinity(0))
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the helper; its end is os._exit
            try:
                os.close(self.jobs)
                os.close(said_r)
                _serve(jobs_r, said_w, self.done, others, self._work, self._release, self._drop)
            finally:
                os._exit(1)  # never back into the restorer's code: a fork of it
        os.close(jobs_r)
        os.close(said_w)


def _note(done: int, kind: str, value: Any) -> None:
    """Write down for the restorer (a file nobody waits on: no wakeup)."""
    channel.send(done, (kind, value))


def _abort(signum: int, frame: Any) -> None:  # pragma: no cover - in the helper
    raise _Aborted


def _serve(jobs: int, said: int, done: int, others: Iterable[int], work: Callable[[Job, Note], None],
           release: Callable[[], None], drop: Callable[[], None]) -> None:  # pragma: no cover - the helper
    """The helper: rebuild what is handed over until told there is no more; say so; on the word,
    let every task go. A failure (or the restorer's SIGTERM) kills its tasks first."""
    code = 1
    signal.signal(signal.SIGTERM, _abort)
    try:
        try:
            for cpu in others:
                repin(cpu)
                break
            while (job := channel.recv(jobs)) is not None:
                work(job, lambda pids: _note(done, "tasks", pids))
            os.write(said, b"r")
            if channel.recv(jobs) != "go":
                raise _Aborted
            release()
            code = 0
        except BaseException as e:  # noqa: BLE001 - any failure: its tasks die, the restorer hears
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            drop()
            if not isinstance(e, (_Aborted, EOFError)):
                _note(done, "error", str(e) if isinstance(e, CkptError) else f"restore helper: {e!r}")
            os.write(said, b"e")
    finally:
        os._exit(code)
