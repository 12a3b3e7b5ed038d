"""Storing a task's pages at dump: which pages (PAGEMAP_SCAN), read how (process_vm_readv or
/proc/PID/mem into one reused buffer), written in large chunks. A writer thread overlapping
the reads with the writes was tried and measured no faster here: the page cache's allocation
of fresh pages is the limit, not the reading."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from engine import images
from engine.errors import CkptError
from engine.images.mm_pb2 import PageRun, Vma
from native import ffi, lib

PAGE = images.PAGE_SIZE
SCAN_PAGES = 4096  # regions per PAGEMAP_SCAN call
CHUNK = 8 << 20  # bytes per read and per write
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
    """The pages file (0600), created at its first write (a task with no stored pages has none)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.buf: Any = None  # the read buffer, made at the first read: most tasks of a tree have few pages

    def write(self, data: bytes | memoryview) -> None:
        """Append data."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def close(self) -> None:
        """Close the file, if made."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Reader:
    """Reads a task's memory: process_vm_readv where the area is readable and every page is
    mapped by this task alone (about four times the rate of /proc/PID/mem here, which copies
    page by page); /proc/PID/mem elsewhere, as it may read what the task cannot.
    process_vm_readv pins the pages (FOLL_PIN), and pinning an anonymous page shared
    copy-on-write makes the kernel unshare it first: a dump that leaves the task running would
    have broken its sharing with its parent or children."""

    def __init__(self, pid: int, mem: int, pagemap: int) -> None:
        self.pid, self.mem, self.pagemap = pid, mem, pagemap
        self.local = ffi.new("struct iovec *")
        self.remote = ffi.new("struct iovec *")

    def read(self, vma: Vma, addr: int, n: int, sink: _Sink) -> None:
        """Write n bytes (n <= CHUNK) at addr of the area to the sink."""
        if vma.perms[0] == "r" and self._exclusive(addr, n):
            if sink.buf is None:
                sink.buf = _UNCLEARED("char[]", CHUNK)
            self.local.iov_base = sink.buf
            self.local.iov_len = self.remote.iov_len = n
            self.remote.iov_base = ffi.cast("void *", addr)
            if lib.process_vm_readv(self.pid, self.local, 1, self.remote, 1, 0) == n:
                sink.write(ffi.buffer(sink.buf, n))
                return
        data = os.pread(self.mem, n, addr)  # unreadable, shared, or a short copy: the slow way
        if len(data) != n:
            raise CkptError(f"short read of {n} bytes at {addr:#x} from /proc/PID/mem")
        sink.write(data)

    def _exclusive(self, addr: int, n: int) -> bool:
        """Whether every page of [addr, addr + n) is mapped by this task alone (pagemap bit 56)."""
        raw = os.pread(self.pagemap, n // PAGE * 8, addr // PAGE * 8)
        # Bit 56 of each little-endian entry is bit 0 of its byte 7: test them all in C.
        return b"\0" not in raw[7::8].translate(_BIT0)


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


def store(pid: int, vmas: list[Vma], path: Path) -> list[PageRun]:
    """Write the stored pages of these areas of the task into path; their runs in file order."""
    runs: list[PageRun] = []
    pagemap = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    sink = _Sink(path)
    try:
        reader = _Reader(pid, mem, pagemap)
        for vma in vmas:
            runs += _area(vma, pagemap, reader, sink)
    finally:
        sink.close()
        os.close(pagemap)
        os.close(mem)
    return runs
