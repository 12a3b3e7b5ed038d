"""Storing a task's pages at dump: which pages (PAGEMAP_SCAN), and moved how. Large runs of
readable pages go without a copy of ours: the task itself vmsplices them into a pipe (a remote
call) and we splice them into the pages file, one copy in all, into the page cache. The rest is
read (process_vm_readv or /proc/PID/mem into a few reused buffers) and written in order, by a
writer thread once a task has more than a few MiB and no splicing, so that reading one chunk
overlaps writing the one before."""
from __future__ import annotations

import fcntl
import os
import queue
import struct
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator

from engine import handover, images
from engine.errors import CkptError
from engine.images.mm_pb2 import PageRun, Vma
from engine.ptrace import Tracee, home_cpus
from native import ffi, lib

PAGE = images.PAGE_SIZE
SCAN_PAGES = 4096  # regions per PAGEMAP_SCAN call
CHUNK = 4 << 20  # bytes per read and per write
BUFFERS = 3  # read buffers once threaded: one being read into, one being written, one spare
THREADED = 8 << 20  # bytes written in line before the writer thread starts: small tasks need none
GATHER = 1 << 20  # bytes of small pieces written at once
SPLICED = 256 << 10  # runs from this size are spliced (below it the pipe's setup costs more than a copy)
PIPE = 1 << 20  # bytes a pipe holds: fs.pipe-max-size, which only CAP_SYS_RESOURCE may pass
PIPES = 2  # pipes the task fills in turn
NATIVE_RUNS = 4096  # runs the native store makes room for (a small task has a few dozen)
# Buffers the kernel fills: not cleared first (a cleared 8 MiB read buffer per task, and a
# cleared scan vector per area, were a third of a small task's dump).
_UNCLEARED = ffi.new_allocator(should_clear_after_alloc=False)
_BIT0 = bytes(b & 1 for b in range(256))  # a byte -> its lowest bit, for bytes.translate


def _file_private(vma: Vma) -> bool:
    return vma.perms[3] == "p" and vma.path.startswith("/")


def _regions(pagemap: int, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, categories) of the present or swapped pages of [start, end), by PAGEMAP_SCAN
    (Documentation/admin-guide/mm/pagemap.rst)."""
    vec = _UNCLEARED("struct page_region[]", SCAN_PAGES)
    arg = ffi.new("struct pm_scan_arg *")
    while start < end:
        arg.size, arg.start, arg.end = ffi.sizeof(arg[0]), start, end
        arg.vec, arg.vec_len = int(ffi.cast("uintptr_t", vec)), SCAN_PAGES
        arg.category_anyof_mask = lib.PAGE_IS_PRESENT | lib.PAGE_IS_SWAPPED
        arg.return_mask = lib.PAGE_IS_PRESENT | lib.PAGE_IS_SWAPPED | lib.PAGE_IS_FILE | lib.PAGE_IS_PFNZERO
        n = lib.ioctl(pagemap, lib.PAGEMAP_SCAN, arg)
        if n < 0:
            raise CkptError(f"PAGEMAP_SCAN [{start:#x}, {end:#x}): {os.strerror(ffi.errno)}")
        for i in range(n):
            yield int(vec[i].start), int(vec[i].end), int(vec[i].categories)
        start = int(arg.walk_end)


class _Sink:
    """The pages file (0600), created at its first write (a task with no stored pages has none).
    Chunks reach the file in the order they are put; past THREADED bytes a writer thread writes
    them while the caller reads the next, unless pages are spliced (_Splicer): its drain thread
    writes to the same fd, and everything else is then written in line, after a flush."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.done = 0  # bytes put so far
        self.spare: list[Any] = []  # read buffers, made when first needed
        self.free: queue.SimpleQueue[Any] | None = None  # once threaded: buffers back from the writer
        self.todo: queue.SimpleQueue[tuple[Any, int] | None] | None = None
        self.writer: threading.Thread | None = None
        self.error: Exception | None = None
        self.never_threaded = False  # set once pages are spliced: they go in line
        self.gathered: list[bytes] = []  # pieces not written yet (in line, before any splice)
        self.gathered_n = 0

    def buffer(self) -> Any:
        """A read buffer of CHUNK bytes, free to fill (once threaded, maybe after a wait)."""
        if self.free is not None:
            return self.free.get()
        if not self.spare:
            self.spare.append(_UNCLEARED("char[]", CHUNK))
        return self.spare[0]

    def put(self, data: Any, n: int) -> None:
        """Append the first n bytes of data (a buffer from buffer(), or bytes)."""
        self._check()
        self.done += n
        if self.todo is not None:
            self.todo.put((data, n))
            return
        if isinstance(data, bytes) and not self.never_threaded:
            # Small pieces (a small task's, or shared pages read one run at a time) go out
            # together: one write instead of one a piece.
            self.gathered.append(data)
            self.gathered_n += n
            if self.gathered_n >= GATHER:
                self._out()
        else:
            self._out()
            self._write(data, n)
        if self.done >= THREADED and not self.never_threaded:
            self._out()
            self._thread()

    def _out(self) -> None:
        """Write what was gathered."""
        if self.gathered:
            data = b"".join(self.gathered)
            self.gathered, self.gathered_n = [], 0
            self._write(data, len(data))

    def in_line(self) -> None:
        """From now on write in line: stop the writer thread, if any, once it wrote what it has."""
        self._out()  # before anything spliced
        self.never_threaded = True
        if self.writer is not None and self.todo is not None:
            self.todo.put(None)
            self.writer.join()
            self.writer, self.free, self.todo = None, None, None
        self._check()

    def open(self) -> None:
        """Create the file now (spliced pages are written to its fd by another thread)."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def _thread(self) -> None:
        self.free, self.todo = queue.SimpleQueue(), queue.SimpleQueue()
        for buf in self.spare + [_UNCLEARED("char[]", CHUNK) for _ in range(BUFFERS - len(self.spare))]:
            self.free.put(buf)
        self.writer = threading.Thread(target=self._drain, name="ckpt-pages", daemon=True)
        self.writer.start()

    def _drain(self) -> None:
        """The writer thread: write chunks until told to stop; after an error only hand buffers back."""
        assert self.todo is not None and self.free is not None
        while (item := self.todo.get()) is not None:
            data, n = item
            if self.error is None:
                try:
                    self._write(data, n)
                except Exception as e:  # noqa: BLE001 - any: the reader must not wait on a dead writer
                    self.error = e
            if not isinstance(data, bytes):
                self.free.put(data)

    def _write(self, data: Any, n: int) -> None:
        self.open()
        view = memoryview(data if isinstance(data, bytes) else ffi.buffer(data, n))
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        """Wait for the writer to finish, close the file (if made); an error it met is raised."""
        try:
            self._out()
        except OSError as e:
            self.error = self.error or e
        if self.writer is not None and self.todo is not None:
            self.todo.put(None)
            self.writer.join()
            self.writer = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            raise CkptError(f"writing {self.path}: {getattr(self.error, 'strerror', None) or self.error}")


class _Splicer:
    """Pages moved by the task's own vmsplice(2) into pipes it made (remote calls), and by a
    drain thread with splice(2) from our copies of their read ends into the pages file: no
    copy of ours. A call fills a pipe (PIPE bytes) once at most and says how much it put
    there; the calls take the PIPES pipes in turn, so the task fills one while the drain
    empties another, and the drain takes the pieces in the order they were put. The pipes'
    fds live in the task only while its pages are stored (its fd table is read after);
    the task's ends are closed before ours, so the task never writes to a pipe without a
    reader (that would queue it a SIGPIPE)."""

    def __init__(self, t: Tracee, sink: _Sink) -> None:
        self.t, self.sink = t, sink
        self.stack = ExitStack()
        self.w: list[int] = []  # the task's write ends
        self.r: list[int] = []  # our read ends
        self.turn = 0  # the pipe the next call fills
        self.iov = 0  # where in the task the iovec of a call goes
        self.broken = False  # setting up failed once: copy from then on
        self.todo: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()  # (pipe, bytes)
        self.cond = threading.Condition()
        self.pushed = self.moved = 0  # bytes the task put in the pipes; bytes the drain took out
        self.error: OSError | None = None
        self.drain: threading.Thread | None = None
        self.alive = False  # the drain runs

    def move(self, addr: int, n: int) -> int:
        """Move [addr, addr + n) to the sink; the bytes moved, a prefix (0 when the task
        cannot make the pipes or vmsplice refuses: the caller copies the rest, after flush())."""
        if self.drain is None and not self._start():
            return 0
        done = 0
        while done < n:
            self.t.write(self.iov, struct.pack("QQ", addr + done, n - done))
            got = self.t.syscall(lib.SYS_vmsplice, self.w[self.turn], self.iov, 1, 0)
            if got <= 0:
                break
            with self.cond:
                self.pushed += got
            self.sink.done += got
            self.todo.put((self.turn, got))
            self.turn = (self.turn + 1) % len(self.w)
            done += got
        return done

    def flush(self) -> None:
        """Wait until the drain wrote everything the task put in the pipes; its error, raised."""
        with self.cond:
            self.cond.wait_for(lambda: self.moved >= self.pushed or not self.alive)
        if self.error is None and self.moved < self.pushed:
            raise CkptError(f"writing {self.sink.path}: the thread splicing pages into it stopped")
        if self.error is not None:
            raise CkptError(f"writing {self.sink.path}: {self.error.strerror}")

    def _start(self) -> bool:
        if self.broken:
            return False
        self.broken = True
        scratch = self.stack.enter_context(self.t.scratch())
        self.iov = scratch + 8
        for _ in range(PIPES):
            if self.t.syscall(lib.SYS_pipe2, scratch, os.O_CLOEXEC) < 0:
                return False  # out of fds, say: copied then; the ends made go at close()
            r, w = struct.unpack("ii", self.t.read(scratch, 8))
            self.w.append(w)
            try:
                # Through t's own pidfd: t may not lead its group.
                self.r.append(handover.take(self.t.pid, r, "the task's page pipe", handover.PIDFD_THREAD))
            except (CkptError, OSError):
                return False
            finally:
                self.t.syscall(lib.SYS_close, r)
            try:
                fcntl.fcntl(self.r[-1], fcntl.F_SETPIPE_SZ, PIPE)
            except OSError:
                pass  # a smaller pipe only means more trips through it
        self.sink.in_line()
        self.sink.open()
        # Not on the CPU we (and so the task) are pinned to: the drain copies while the task
        # fills the next pipe, where on one CPU each would wait for the other.
        home = home_cpus()
        others = home - os.sched_getaffinity(0) if len(home) > 1 else set()
        self.drain = threading.Thread(target=self._drain, args=(others,), name="ckpt-splice", daemon=True)
        self.alive = True
        self.drain.start()
        self.broken = False
        return True

    def _drain(self, cpus: set[int]) -> None:
        """The drain thread: each piece, in order, from its pipe into the file (after a write
        error, into /dev/null: the task's calls must still end), until told to stop."""
        if cpus:
            try:
                os.sched_setaffinity(0, cpus)
            except OSError:
                pass  # a cpuset that changed: the pinned CPU will do
        out = self.sink.fd
        try:
            while (piece := self.todo.get()) is not None:
                pipe, left = piece
                while left:
                    try:
                        if out >= 0:
                            k = os.splice(self.r[pipe], out, left, flags=os.SPLICE_F_MOVE)
                        else:  # even /dev/null refused: read and drop
                            k = len(os.read(self.r[pipe], min(left, PIPE)))
                    except OSError as e:
                        if out == self.sink.fd:
                            self.error = e
                            out = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
                            continue
                        if out < 0:
                            break  # nothing reads the pipe: the piece is given up
                        os.close(out)
                        out = -1
                        continue
                    if k == 0:  # cannot be (the piece is in the pipe): do not spin
                        break
                    left -= k
                    with self.cond:
                        self.moved += k
                        self.cond.notify_all()
                with self.cond:  # a piece cut short counts as moved: flush() must not wait for it
                    self.moved += left
                    self.cond.notify_all()
        finally:
            if out not in (self.sink.fd, -1):
                os.close(out)
            with self.cond:
                self.alive = False
                self.cond.notify_all()

    def close(self) -> None:
        """Close the task's ends, let the drain finish its pieces and stop, close ours."""
        try:
            for w in self.w:
                self.t.syscall(lib.SYS_close, w)
        finally:
            self.w = []
            if self.drain is not None:
                self.todo.put(None)
                self.drain.join()
                self.drain = None
            for r in self.r:
                os.close(r)
            self.r = []
            self.stack.close()


class _Reader:
    """Reads a task's memory: process_vm_readv where the area is readable and every page is
    mapped by this task alone (about four times the rate of /proc/PID/mem here, which copies
    page by page); /proc/PID/mem elsewhere, as it may read what the task cannot.
    process_vm_readv pins the pages (FOLL_PIN), and pinning an anonymous page shared
    copy-on-write makes the kernel unshare it first: a dump that leaves the task running would
    have broken its sharing with its parent or children."""

    def __init__(self, pid: int, mem: int, pagemap: int, splicer: _Splicer | None) -> None:
        self.pid, self.mem, self.pagemap = pid, mem, pagemap
        self.splicer = splicer
        self.local = ffi.new("struct iovec *")
        self.remote = ffi.new("struct iovec *")

    def read(self, vma: Vma, addr: int, n: int, sink: _Sink) -> None:
        """Write n bytes (n <= CHUNK) at addr of the area to the sink, run by run of pages
        mapped by this task alone or not."""
        if vma.perms[0] != "r":
            self._slow(addr, n, sink)
            return
        for start, size, alone in self._runs(addr, n):
            if not alone:
                self._slow(start, size, sink)
                continue
            if self.splicer is not None and size >= SPLICED:
                done = self.splicer.move(start, size)
                start, size = start + done, size - done
                if not size:
                    continue
            self._fast(start, size, sink)

    def _fast(self, addr: int, n: int, sink: _Sink) -> None:
        if self.splicer is not None:
            self.splicer.flush()  # what the pipe holds goes first
        buf = sink.buffer()
        self.local.iov_base = buf
        self.local.iov_len = self.remote.iov_len = n
        self.remote.iov_base = ffi.cast("void *", addr)
        if lib.process_vm_readv(self.pid, self.local, 1, self.remote, 1, 0) == n:
            sink.put(buf, n)
            return
        if sink.free is not None:
            sink.free.put(buf)  # not used after all
        self._slow(addr, n, sink)  # a short copy

    def _slow(self, addr: int, n: int, sink: _Sink) -> None:
        """Through /proc/PID/mem: unreadable pages, shared ones, or a short copy."""
        if self.splicer is not None:
            self.splicer.flush()
        data = os.pread(self.mem, n, addr)
        if len(data) != n:
            raise CkptError(f"short read of {n} bytes at {addr:#x} from /proc/PID/mem")
        sink.put(data, n)

    def _runs(self, addr: int, n: int) -> Iterator[tuple[int, int, bool]]:
        """(start, size, mapped by this task alone) of the runs of [addr, addr + n), by pagemap
        bit 56."""
        raw = os.pread(self.pagemap, n // PAGE * 8, addr // PAGE * 8)
        # Bit 56 of each little-endian entry is bit 0 of its byte 7: one byte 0 or 1 per page.
        alone = raw[7::8].translate(_BIT0)
        i, pages = 0, len(alone)
        while i < pages:
            bit = alone[i]
            j = alone.find(b"\0" if bit else b"\1", i)
            j = pages if j < 0 else j
            yield addr + i * PAGE, (j - i) * PAGE, bool(bit)
            i = j


def _area(vma: Vma, pagemap: int, reader: _Reader, sink: _Sink) -> list[PageRun]:
    """Store the pages of one area that memory alone holds; return their runs in file order.
    Zero pages (the kernel's shared zero page) are not stored; in a private file area neither
    are pages still shared with the page cache (the file has them)."""
    runs: list[PageRun] = []
    for start, end, cat in _regions(pagemap, vma.start, vma.end):
        if cat & lib.PAGE_IS_PFNZERO or (_file_private(vma) and cat & lib.PAGE_IS_FILE):
            continue
        for off in range(start, end, CHUNK):
            reader.read(vma, off, min(CHUNK, end - off), sink)
        if runs and runs[-1].vaddr + runs[-1].nr_pages * PAGE == start:
            runs[-1].nr_pages += (end - start) // PAGE
        else:
            runs.append(PageRun(vaddr=start, nr_pages=(end - start) // PAGE))
    return runs


def store(pid: int, vmas: list[Vma], path: Path, t: Tracee | None = None) -> list[PageRun]:
    """Write the stored pages of these areas of the task into path; their runs in file order.
    With t, a stopped thread of a task sharing this memory, large runs are spliced; without,
    all is done in one native call (unless the runs are too many for it)."""
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if t is None:
            done = _native(pid, vmas, path, pagemap, mem)
            if done is not None:
                return done
        return _python(pid, vmas, path, t, pagemap, mem)
    finally:
        os.close(pagemap)
        os.close(mem)


_STEP = {lib.CKPT_PAGES_SCAN: "PAGEMAP_SCAN", lib.CKPT_PAGES_PAGEMAP: "reading its pagemap",
         lib.CKPT_PAGES_MEM: "reading /proc/PID/mem"}  # the steps that fail at an address


class Packed:
    """One pages file that the small tasks one writer of a dump stores go to, one after another
    (images.PACKED). A file a task costs a create a task: up to ~0.8 ms on an ext4 without a
    journal whose inode tables hold many recently deleted inodes (each is skipped, read first)."""

    def __init__(self, directory: Path, writer: str) -> None:
        self.name = images.PACKED.format(writer=writer)
        self.path = directory / self.name
        self.fd = -1  # the file is created at the first task stored
        self.size = 0

    def store(self, pid: int, vmas: list[Vma]) -> tuple[list[PageRun], int] | None:
        """Append the task's stored pages (as store() without splicing): its runs and where they
        begin in this file; None when the runs outgrow the native store (nothing left here)."""
        pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.fd < 0:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            at = self.size
            try:
                runs = _native(pid, vmas, self.path, pagemap, mem, self.fd)
            except BaseException:
                self._back(at)
                raise
            if runs is None:
                self._back(at)
                return None
            self.size += sum(r.nr_pages for r in runs) * PAGE
            return runs, at
        finally:
            os.close(pagemap)
            os.close(mem)

    def _back(self, at: int) -> None:
        """Drop what a task that could not be stored here wrote."""
        os.ftruncate(self.fd, at)
        os.lseek(self.fd, at, os.SEEK_SET)

    def close(self) -> None:
        """Close the file (it stays: its pages are the image's)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _native(pid: int, vmas: list[Vma], path: Path, pagemap: int, mem: int, out: int = -1) -> list[PageRun] | None:
    """store() in C (native/pages.c), into a new file at path, or appended to the open file
    `out`; None when the runs outgrow NATIVE_RUNS (nothing left on disk at path: the Python
    path takes the task; the caller drops what went to `out`)."""
    areas = _UNCLEARED("struct ckpt_area[]", max(len(vmas), 1))
    for i, v in enumerate(vmas):
        areas[i].start, areas[i].end = v.start, v.end
        areas[i].readable, areas[i].file_private = v.perms[0] == "r", _file_private(v)
    runs = _UNCLEARED("uint64_t[]", 2 * NATIVE_RUNS)
    res = ffi.new("struct ckpt_pages *")
    if lib.ckpt_store_pages(pid, pagemap, mem, areas, len(vmas), bytes(path), out, runs, NATIVE_RUNS, res) == 0:
        return [PageRun(vaddr=runs[2 * i], nr_pages=runs[2 * i + 1]) for i in range(res.nruns)]
    if res.step == lib.CKPT_PAGES_RUNS:
        if out < 0:
            path.unlink(missing_ok=True)
        return None
    if res.step == lib.CKPT_PAGES_FILE:
        raise CkptError(f"writing {path}: {os.strerror(res.err)}")
    if res.step == lib.CKPT_PAGES_ALLOC:
        raise CkptError(f"buffers to store the pages in: {os.strerror(res.err)}")
    raise CkptError(f"{_STEP[res.step]} at {res.addr:#x}: {os.strerror(res.err)}")


def _python(pid: int, vmas: list[Vma], path: Path, t: Tracee | None, pagemap: int, mem: int) -> list[PageRun]:
    """store() in Python: the splicing path, and what outgrows the native one."""
    runs: list[PageRun] = []
    sink = _Sink(path)
    splicer = None if t is None else _Splicer(t, sink)
    try:
        reader = _Reader(pid, mem, pagemap, splicer)
        for vma in vmas:
            runs += _area(vma, pagemap, reader, sink)
    finally:
        try:
            if splicer is not None:
                splicer.close()
                splicer.flush()
        finally:
            sink.close()
    return runs
