"""Filling a rebuilt task's private anonymous memory with UFFDIO_COPY: the kernel allocates each
page and copies the stored page into it, where a first touch would zero it and a preadv then
copy over it. The userfaultfd is made in the task (it belongs to the mm of its maker) and
taken over with pidfd_getfd; its copy source is the pages file mapped in our own address
space. Nothing ever faults on it: it only carries the copies, and is gone before the task
runs (userfaultfd(2), ioctl_userfaultfd(2))."""
from __future__ import annotations

import mmap
import os
import threading
from pathlib import Path
from typing import Any

from engine import handover
from engine.errors import CkptError
from engine.images.mm_pb2 import Vma
from engine.ptrace import Tracee, home_cpus
from native import ffi, lib

EAGAIN, EEXIST = 11, 17
PAGE = 4096
SPLIT_MIN = 16 << 20  # bytes: from there the copies are shared among threads, one per CPU


def usable(area: Vma) -> bool:
    """A private anonymous area (heap, stack and named ones included) whose pages may come as
    small pages: transparent-huge-page areas (MADV_HUGEPAGE) are left to faults, which give
    them huge pages again."""
    anon = not area.path or area.path in ("[heap]", "[stack]") or area.path.startswith("[anon:")
    return anon and area.perms[3] == "p" and "hg" not in area.vmflags.split()


def _ioctl(fd: int, request: int, arg: Any, what: str) -> None:
    if lib.ioctl(fd, request, arg) < 0:
        raise CkptError(f"{what}: {os.strerror(ffi.errno)}")


class Filler:
    """One task's userfaultfd and mapped pages file; copy() the runs, then close()."""

    def __init__(self, t: Tracee, pages: Path) -> None:
        self.pid = t.pid
        self.registered: list[tuple[int, int]] = []
        self.fd = self._take(t)
        try:
            api = ffi.new("struct uffdio_api *", {"api": lib.UFFD_API})
            _ioctl(self.fd, lib.UFFDIO_API, api, "UFFDIO_API")
            with open(pages, "rb") as f:
                self.source = mmap.mmap(f.fileno(), 0, mmap.MAP_PRIVATE, mmap.PROT_READ)
            self.view = ffi.from_buffer(self.source)
            self.base = int(ffi.cast("uintptr_t", self.view))
        except BaseException:
            os.close(self.fd)
            raise

    @staticmethod
    def _take(t: Tracee) -> int:
        """A userfaultfd made by the task, now ours; the task's own fd closed again."""
        theirs = t.call("userfaultfd", lib.SYS_userfaultfd, os.O_CLOEXEC | lib.UFFD_USER_MODE_ONLY)
        try:
            return handover.take(t.pid, theirs, "its userfaultfd")
        finally:
            t.call("close(userfaultfd)", lib.SYS_close, theirs)

    def register(self, area: Vma) -> None:
        """Take the area's missing pages (done once per area, before its first copy)."""
        reg = ffi.new("struct uffdio_register *")
        reg.range.start, reg.range.len = area.start, area.end - area.start
        reg.mode = lib.UFFDIO_REGISTER_MODE_MISSING
        _ioctl(self.fd, lib.UFFDIO_REGISTER, reg, f"pid {self.pid}: UFFDIO_REGISTER [{area.start:#x}, {area.end:#x})")
        self.registered.append((area.start, area.end))

    def copy(self, jobs: list[tuple[int, int, int]]) -> None:
        """Each (vaddr, size, off): size bytes at offset off of the pages file into the task's
        fresh pages at vaddr. Many bytes are split among threads, one per CPU we may use: the
        ioctl lets go of the interpreter, and each page is allocated and filled by its thread."""
        for vaddr, size, off in jobs:
            if off + size > len(self.source):
                raise CkptError(f"pid {self.pid}: the pages file ends at {len(self.source)}, a run needs "
                                f"[{off}, {off + size}) (truncated pages file?)")
        total = sum(size for _, size, _ in jobs)
        cpus = home_cpus()
        if total < SPLIT_MIN or len(cpus) < 2:
            self._copy_all(jobs)
            return
        shares = _split(jobs, len(cpus))
        errors: list[BaseException] = []

        def work(share: list[tuple[int, int, int]]) -> None:
            os.sched_setaffinity(0, cpus)  # the restore pins its own thread, and we inherited that
            try:
                self._copy_all(share)
            except BaseException as e:  # noqa: BLE001 - raised below, in the restoring thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(share,), name="ckpt-uffd") for share in shares[1:]]
        for th in threads:
            th.start()
        try:
            self._copy_all(shares[0])
        finally:
            for th in threads:
                th.join()
        if errors:
            raise errors[0]

    def _copy_all(self, jobs: list[tuple[int, int, int]]) -> None:
        a = ffi.new("struct uffdio_copy *")
        for vaddr, size, off in jobs:
            done = 0
            while done < size:
                a.dst, a.src, a.len = vaddr + done, self.base + off + done, size - done
                a.mode, a.copy = lib.UFFDIO_COPY_MODE_DONTWAKE, 0
                if lib.ioctl(self.fd, lib.UFFDIO_COPY, a) == 0:
                    break
                err = ffi.errno
                if a.copy > 0:
                    done += int(a.copy)  # a partial copy (EAGAIN): go on from there
                elif err != EAGAIN:
                    what = "a page is there already" if err == EEXIST else os.strerror(err)
                    raise CkptError(f"pid {self.pid}: UFFDIO_COPY of {size - done} bytes at {vaddr + done:#x}: {what}")

    def close(self) -> None:
        """Unregister every area (the task keeps no trace of us) and let go of the source."""
        try:
            for start, end in self.registered:
                rng = ffi.new("struct uffdio_range *", {"start": start, "len": end - start})
                _ioctl(self.fd, lib.UFFDIO_UNREGISTER, rng, f"pid {self.pid}: UFFDIO_UNREGISTER [{start:#x}, {end:#x})")
        finally:
            os.close(self.fd)
            ffi.release(self.view)
            self.source.close()


def _split(jobs: list[tuple[int, int, int]], n: int) -> list[list[tuple[int, int, int]]]:
    """The jobs cut into n shares of about equal bytes (a job may be cut in two at a page)."""
    total = sum(size for _, size, _ in jobs)
    quota = -(-total // n // PAGE) * PAGE
    shares: list[list[tuple[int, int, int]]] = [[]]
    room = quota
    for vaddr, size, off in jobs:
        while size:
            if room == 0:
                shares.append([])
                room = quota
            take = min(size, room)
            shares[-1].append((vaddr, take, off))
            vaddr, size, off, room = vaddr + take, size - take, off + take, room - take
    return shares
