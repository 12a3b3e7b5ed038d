"""Dump of single-thread processes: identity, registers (general and xstate), every memory
area and the contents of its present pages, sigactions, blocked mask and sigaltstack.
Files, pending signals, timers and trees come next."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import BinaryIO

from engine import images, proc, signals
from engine.errors import CkptError
from engine.images.core_pb2 import Core, Regs
from engine.images.inventory_pb2 import Inventory
from engine.images.mm_pb2 import Mm, PageRun, Vma
from engine.ptrace import Tracee

VERSION = "0.1"
# Areas whose contents are not ours to save: vvar cannot even be read; the kernel provides them.
KERNEL_AREAS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
ZERO_PAGE = bytes(images.PAGE_SIZE)


def _stored_pages(vma: Vma) -> bool:
    """Private areas and anonymous shared ones keep contents only memory has; file-shared
    areas keep theirs in the file."""
    if vma.path in KERNEL_AREAS:
        return False
    return vma.perms[3] == "p" or not vma.path.startswith("/") or vma.path.startswith("/dev/zero")


def _dump_task(pid: int, out: Path) -> None:
    t = Tracee(pid)
    try:
        st = proc.stat(pid)
        regs = Regs(**{f: getattr(t.saved, f) for f in Regs.DESCRIPTOR.fields_by_name})
        core = Core(pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, comm=st.comm, regs=regs,
                    xstate=t.xstate())
        vmas = [Vma(start=v.start, end=v.end, perms=v.perms, pgoff=v.pgoff, path=v.path, vmflags=v.vmflags)
                for v in proc.vmas(pid)]
        runs: list[PageRun] = []
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pm, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem, \
                open(images.pages_path(out, pid), "xb") as pages:
            os.fchmod(pages.fileno(), 0o600)
            for vma in vmas:
                if _stored_pages(vma):
                    runs += _dump_pages(vma, pm, mem, pages)
        # After the memory: the scratch page these remote calls use must not be in the image.
        actions, blocked, altstack = signals.dump(t)
        core.sigactions.extend(actions)
        core.blocked = blocked
        core.altstack.CopyFrom(altstack)
        images.write(images.path_of(out, "core", pid), "core", [core])
        images.write(images.path_of(out, "mm", pid), "mm", [Mm(pid=pid, vmas=vmas)])
        images.write(images.path_of(out, "pagemap", pid), "pagemap", runs)
    finally:
        t.detach()


def _dump_pages(vma: Vma, pm: BinaryIO, mem: BinaryIO, pages: BinaryIO) -> list[PageRun]:
    """Store the present (or swapped) non-zero pages of one area; return their runs."""
    n = (vma.end - vma.start) // images.PAGE_SIZE
    entries = os.pread(pm.fileno(), n * 8, vma.start // images.PAGE_SIZE * 8)
    runs: list[PageRun] = []
    for i in range(n):
        e = int.from_bytes(entries[i * 8:i * 8 + 8], "little")
        if not e & (3 << 62):  # bit 63 present, bit 62 swapped (Documentation/admin-guide/mm/pagemap.rst)
            continue
        addr = vma.start + i * images.PAGE_SIZE
        page = os.pread(mem.fileno(), images.PAGE_SIZE, addr)
        if page == ZERO_PAGE:
            continue
        pages.write(page)
        if runs and runs[-1].vaddr + runs[-1].nr_pages * images.PAGE_SIZE == addr:
            runs[-1].nr_pages += 1
        else:
            runs.append(PageRun(vaddr=addr, nr_pages=1))
    return runs


def _refuse(pid: int) -> None:
    """Tasks this engine step cannot (or must not) dump: one clear reason."""
    if pid == os.getpid():
        raise CkptError(f"pid {pid} is the dumping process itself")
    st = proc.stat(pid)
    if st.flags & 0x00200000:  # PF_KTHREAD
        raise CkptError(f"pid {pid} ({st.comm}) is a kernel thread")
    if proc.threads(pid) > 1:
        raise CkptError(f"pid {pid} has {proc.threads(pid)} threads: only single-thread tasks are dumped yet")
    if proc.children(pid):
        raise CkptError(f"pid {pid} has children: process trees are dumped from engine part 2 on")


def dump(roots: list[int], out: Path, leave_running: bool = False) -> None:
    """Checkpoint these tasks into the empty (or new) directory `out`; kill them afterwards
    unless leave_running. A failed dump leaves every task running as it was."""
    if out.exists() and any(out.iterdir()):
        raise CkptError(f"{out}: the image directory is not empty")
    for pid in roots:
        _refuse(pid)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for pid in roots:
            _dump_task(pid, out)
        inv = Inventory(engine_version=VERSION, kernel=os.uname().release, roots=roots, pids=roots,
                        kinds=sorted(images.KINDS))
        images.write(images.path_of(out, "inventory"), "inventory", [inv])
    except BaseException:
        for p in out.iterdir():
            p.unlink()
        raise
    if not leave_running:
        for pid in roots:
            os.kill(pid, signal.SIGKILL)
