"""Memory, dump and restore side by side: the areas of a task, the contents of their pages,
and the mm fields that PR_SET_MM_MAP puts back (KERNEL-FACTS.md: vDSO and PR_SET_MM_MAP)."""
from __future__ import annotations

import bisect
import errno
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.calls import Calls
from engine.handover import Handover
from engine import images, memfd, pagedump, pageworker, proc, uffd
from engine.errors import CkptError, Unsupported
from engine.images.mm_pb2 import Mm, PageMap, PageRun, Vma
from engine.ptrace import Tracee
from native import lib

PAGE = images.PAGE_SIZE
# Areas the kernel provides: vvar cannot even be read, the vDSO is the running kernel's.
KERNEL_AREAS = ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]")
VDSO_BLOCK = ("[vvar]", "[vvar_vclock]", "[vdso]")
TASK_TOP = 0x7FFFFFFFF000  # end of user space with 4-level page tables (x86-64)
SCRATCH = 64 * 1024
IOV_MAX = 1024
POPULATE_MIN = 64  # pages: below that, faulting on the copy costs less than a remote madvise
UFFD_MIN = 256  # pages: below that, the userfaultfd's making and taking cost more than it saves
WRITE_MAX = 256  # pages: below that, writing them from here costs less than the task's open + preadv
PR_SET_MM, PR_SET_MM_MAP, PR_SET_VMA, PR_SET_VMA_ANON_NAME = 35, 14, 0x53564D41, 0
MM_MAP = struct.Struct("<11QQII")  # struct prctl_mm_map (uapi/linux/prctl.h), 104 bytes
# smaps VmFlags that an madvise() gives back (fs/proc/task_mmu.c show_smap_vma_flags).
ADVICE = {"dc": 10, "wf": 18, "dd": 16, "hg": 14, "nh": 15, "mg": 12, "rr": 1, "sr": 2}
MAP_NORESERVE = 0x4000  # uapi/asm-generic/mman.h


# --- dump ------------------------------------------------------------------------------------

def anon_shared(vma: Vma) -> bool:
    """MAP_SHARED|MAP_ANONYMOUS shows as /dev/zero (deleted) (shmem underneath)."""
    return vma.perms[3] == "s" and (vma.path == "" or vma.path.startswith("/dev/zero"))


def _by_path(vma: Vma) -> bool:
    """Areas of a file reopened by its path at restore (a memfd is made again instead)."""
    return vma.path.startswith("/") and not anon_shared(vma) and not vma.memfd


def _stored(vma: Vma) -> bool:
    """Private areas and anonymous shared ones hold contents only memory has; a shared file
    area's contents are in its file (a memfd's in its own pages file)."""
    if vma.path in KERNEL_AREAS:
        return False
    return vma.perms[3] == "p" or not vma.path.startswith("/") or vma.path.startswith("/dev/zero")


def dump(t: Tracee, out: Path, owner: int = 0, worker: pageworker.Worker | None = None,
         into: PageMap | None = None, parent: tuple[int, Mm] | None = None,
         packed: pagedump.Packed | None = None) -> tuple[Mm, list[PageRun] | None]:
    """The task's areas, mm fields and pages (written to its pages file); read through thread
    t, filed under its process, or under `owner` when that is another task: one asleep in
    vfork, whose memory is read through its child. With a worker and a page map, a task with
    little memory is handed over whole: its Mm is filled in, and its runs put in that map, by
    the worker's finish() (None returned); with its parent's thread and Mm, the worker also
    lists the pages it shares with it (engine.cow). A small task kept here has its pages
    appended to `packed`, if given, when it has a page map to say so in."""
    pid = t.pid
    owner = owner or t.tgid
    # Asked with the dump's other questions (engine.questions), or now.
    brk = t.answers.brk if t.answers is not None else t.call("brk(0)", lib.SYS_brk, 0)
    small = _resident(pid) <= pageworker.SMALL
    if worker is not None and into is not None and small and worker.free():
        mm = Mm(pid=owner)
        t.areas_fixed = True  # the worker reads them while we go on with the task
        worker.memory(pid, (owner, brk, t.kept_scratch()), out, mm, into, parent)
        return mm, None
    mm, stored = describe(pid, owner, brk, t.kept_scratch(), out)
    # A small task's pages in one native call (~0.3 ms; the Python path took ~1.4); a large
    # one's long runs are spliced by the task itself.
    if small and packed is not None and into is not None:
        got = packed.store(pid, stored)
        if got is not None:
            into.pages, into.pages_at = packed.name, got[1]
            return mm, got[0]
    return mm, pagedump.store(pid, stored, images.pages_path(out, owner), None if small else t)


def describe(pid: int, owner: int, brk: int, ours: tuple[int, int] | None, out: Path) -> tuple[Mm, list[Vma]]:
    """The Mm of task pid (areas but `ours`, the scratch area; mm fields; its memfds described
    and their data stored in `out`), filed under `owner`, and the areas whose pages are stored.
    Passive (/proc only): the page worker runs it too."""
    vmas = [Vma(start=v.start, end=v.end, perms=v.perms, pgoff=v.pgoff, path=v.path, vmflags=v.vmflags,
                inode=v.inode) for v in proc.vmas(pid) if (v.start, v.end) != ours]
    memfds = memfd.dump(pid, vmas, out)
    for v in vmas:
        if v.path.startswith("/SYSV"):
            raise Unsupported(f"pid {pid}: SysV shared memory attached at {v.start:#x}")
        if v.path.endswith(" (deleted)") and not anon_shared(v) and not v.memfd:
            raise Unsupported(f"pid {pid}: mapping of a deleted file ({v.path})")
    f = proc.stat_fields(pid)

    def field(n: int) -> int:  # proc(5) numbering
        return int(f[n - 3])

    with open(f"/proc/{pid}/auxv", "rb") as a:
        auxv = a.read()
    mm = Mm(pid=owner, vmas=vmas, start_code=field(26), end_code=field(27), start_stack=field(28),
            start_data=field(45), end_data=field(46), start_brk=field(47), arg_start=field(48),
            arg_end=field(49), env_start=field(50), env_end=field(51), brk=brk, auxv=auxv,
            exe=os.readlink(f"/proc/{pid}/exe"), memfds=memfds)
    return mm, [v for v in vmas if _stored(v)]


def _resident(pid: int) -> int:
    """Bytes of anonymous and shared memory in use (what mostly gets stored: status RssAnon and
    RssShmem; areas reserved but never touched, such as thread stacks, do not count)."""
    st = proc.status(pid)
    return sum(int(st.get(k, "0 kB").split()[0]) for k in ("RssAnon", "RssShmem")) * 1024


# --- restore ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Layout:
    """Where the scratch area of a restore lives: a hole of the dumped layout."""

    scratch: int
    size: int


@dataclass(frozen=True, slots=True)
class Inherit:
    """What a task forked from its rebuilt parent keeps of the parent's memory (engine.cow)."""

    areas: list[Vma]  # its areas the fork gave it as they were: kept, not mapped again
    runs: list[PageRun]  # its stored pages still the parent's: left shared, not written
    drop: list[tuple[int, int]]  # (start, size) of kept areas where the parent has pages and it had none


def _block(areas: list[tuple[int, int, str]]) -> dict[str, tuple[int, int]]:
    return {name: (s, e) for s, e, name in areas if name in VDSO_BLOCK}


def _move_vdso(t: Tracee, have: dict[str, tuple[int, int]], want: dict[str, tuple[int, int]]) -> None:
    """Move the stub's vvar/vDSO block to the dumped addresses, keeping its inner offsets."""
    if set(have) != set(want) or any(have[n][1] - have[n][0] != want[n][1] - want[n][0] for n in want):
        raise Unsupported("the image's vDSO/vvar layout differs from this kernel's "
                          f"(dumped {sorted(want.items())}, here {sorted(have.items())})")
    lo = min(s for s, _ in have.values())
    vdso_off = t.syscall_address() - have["[vdso]"][0]
    dlo = min(s for s, _ in want.values())
    if lo == dlo:
        return
    size = max(e for _, e in have.values()) - lo
    moves = [(lo, dlo)]
    if lo < dlo + size and dlo < lo + size:
        # Through a free spot first: the old and new places overlap, which mremap refuses.
        # (Else straight there: nothing else is left in the stub's address space but areas
        # a forked task keeps, its own, which its vDSO's dumped place cannot overlap.)
        tmp = t.call("mmap (vDSO transit)", lib.SYS_mmap, 0, size, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        moves = [(lo, tmp), (tmp, dlo)]
    for base_from, base_to in moves:
        for name in VDSO_BLOCK:
            if name not in have:
                continue
            s, e = have[name]
            t.call(f"mremap({name})", lib.SYS_mremap, base_from + s - lo, e - s, e - s,
                   lib.MREMAP_MAYMOVE | lib.MREMAP_FIXED, base_to + s - lo)
            if name == "[vdso]":
                # Stopped at syscall exit: the next call starts from the vDSO's new place.
                t.moved_syscall(base_to + s - lo + vdso_off)


def _hole(vmas: list[Vma], size: int) -> int:
    """An address in the widest hole of the dumped layout, away from its neighbours (a stack
    keeps a guard gap below it)."""
    edges = sorted((v.start, v.end) for v in vmas if v.path != "[vsyscall]")
    best, at = 0, 0
    prev = 1 << 32
    for s, e in edges + [(TASK_TOP, TASK_TOP)]:
        if s > prev and s - prev > best:
            best, at = s - prev, prev
        prev = max(prev, e)
    if best < size + (4 << 20):
        raise CkptError("no hole in the dumped address space for the restore's scratch area")
    return (at + best // 2) & ~(PAGE - 1)


def _prot(perms: str) -> int:
    return ((mmap.PROT_READ if perms[0] == "r" else 0) | (mmap.PROT_WRITE if perms[1] == "w" else 0)
            | (mmap.PROT_EXEC if perms[2] == "x" else 0))


def _anon_name(path: str) -> str | None:
    return path[len("[anon:"):-1] if path.startswith("[anon:") and path.endswith("]") else None


def prepare(t: Tracee, mm: Mm, keep: list[Vma] | None = None, like: Mm | None = None) -> Layout:
    """Empty the stub's address space but its vDSO block (and the areas to `keep`: a forked
    task's inherited ones, engine.cow), move that block where the task had it, and map a
    scratch area in a hole of the dumped layout. `like`: the memory the task was forked with,
    rebuilt (its vDSO block is where that one's was dumped), else /proc says where it is."""
    areas = [(v.start, v.end, v.path) for v in like.vmas] if like else [(a.start, a.end, a.path) for a in proc.maps(t.pid)]
    have = _block(areas)
    want = _block([(v.start, v.end, v.path) for v in mm.vmas])
    kept = sorted([*have.values(), *((v.start, v.end) for v in keep or ())])
    gaps, at = [], PAGE
    for s, e in kept + [(TASK_TOP, TASK_TOP)]:
        if s > at:
            gaps.append((at, s - at))
        at = max(at, e)
    calls = [(lib.SYS_munmap, s, n) for s, n in gaps]
    what = [f"munmap(at {s:#x})" for s, _ in gaps]
    at = _hole(list(mm.vmas), SCRATCH)
    scratch = (lib.SYS_mmap, at, SCRATCH, mmap.PROT_READ | mmap.PROT_WRITE,
               mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | lib.MAP_FIXED_NOREPLACE, -1, 0)
    if have == want:  # the block stays: the scratch area goes in the same batch
        return Layout(t.batch([*calls, scratch], [*what, "mmap(scratch)"])[-1], SCRATCH)
    t.batch(calls, what)
    _move_vdso(t, have, want)
    return Layout(t.batch([scratch], ["mmap(scratch)"])[0], SCRATCH)


def open_in(t: Tracee, lay: Layout, path: str, flags: int) -> int:
    """Open a path in the task (close-on-exec); the new fd."""
    raw = path.encode() + b"\0"
    if len(raw) > lay.size:
        raise CkptError(f"path too long for the scratch area: {path}")
    t.write(lay.scratch, raw)
    return t.call(f"open({path})", lib.SYS_open, lay.scratch, flags | os.O_CLOEXEC, 0)


class SharedAnon:
    """Anonymous shared memory objects of one restore, by the inode they had at dump: the
    first task that maps one makes it, as large as every area of it needs (an area split by
    mprotect or shrunk by mremap maps it at an offset), and every area, in that task or
    another, maps it through /proc/PID/map_files, so tasks share it again. The restore's
    memfds come along (engine.memfd)."""

    def __init__(self, mms: list[Mm]) -> None:
        self.memfds = memfd.Memfds(mms)
        self.size: dict[int, int] = {}
        for m in mms:
            for v in m.vmas:
                if anon_shared(v) and v.inode:
                    self.size[v.inode] = max(self.size.get(v.inode, 0), v.pgoff + v.end - v.start)
        self.made: dict[int, tuple[int, int, int]] = {}  # inode -> (pid, start, end) of an area of it

    def open(self, t: Tracee, v: Vma, hand: Handover) -> int:
        """An fd of the object of area v inside the task, made now if no task has it yet."""
        if v.inode not in self.made:
            size = self.size.get(v.inode, v.pgoff + v.end - v.start)
            rw, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
            tmp = t.call("mmap(shared anon object)", lib.SYS_mmap, 0, size, rw, flags, -1, 0)
            try:
                return _give_area(hand, t.pid, tmp, tmp + size)
            finally:
                t.call("munmap(shared anon object)", lib.SYS_munmap, tmp, size)
        return _give_area(hand, *self.made[v.inode])


def _give_area(hand: Handover, pid: int, start: int, end: int) -> int:
    """The object behind an area of a task, opened by us (the task's /proc may be its pid
    namespace's) and handed to the task being rebuilt."""
    ours = os.open(f"/proc/{pid}/map_files/{start:x}-{end:x}", os.O_RDWR | os.O_CLOEXEC)
    try:
        return hand.give(ours)
    finally:
        os.close(ours)


def _map_areas(t: Tracee, lay: Layout, mm: Mm, shared_anon: SharedAnon,
               hand: Handover, kept: set[int]) -> list[tuple[int, int, int]]:
    """Map every dumped area but the kernel's, at its address, with its prot and backing: the
    files opened in one batch, the areas mapped, advised and named in another (each at its own
    fixed address, so their order does not matter); shared anonymous ones one by one; memfds
    through fds the restorer hands over (engine.memfd), sealed once mapped. Returns the
    (start, size, prot) of areas mapped writable for now, to be given their prot later. Areas
    whose start is in `kept` are there already (engine.cow)."""
    accounted: list[tuple[int, int, int]] = []
    areas = [v for v in mm.vmas if v.path not in KERNEL_AREAS and v.start not in kept]
    files = sorted({(v.path, v.perms[3] == "s" and v.perms[1] == "w") for v in areas if _by_path(v)})
    opening = Calls(t, lay.scratch, lay.size)
    for path, writes in files:
        at = opening.put(path.encode() + b"\0")
        opening.add(f"open({path})", lib.SYS_open, at, (os.O_RDWR if writes else os.O_RDONLY) | os.O_CLOEXEC, 0)
    fds = dict(zip(files, opening.run()))
    given: list[int] = []  # fds of memfds handed over for their areas
    try:
        mapping = Calls(t, lay.scratch, lay.size)
        for v in areas:
            size, prot = v.end - v.start, _prot(v.perms)
            shared = v.perms[3] == "s"
            flags = (mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE) | lib.MAP_FIXED
            vmflags = v.vmflags.split()
            if "gd" in vmflags:
                flags |= lib.MAP_GROWSDOWN
            if "nr" in vmflags:
                flags |= MAP_NORESERVE
            # A private area made read-only after it was written keeps its commit charge
            # (VmFlags "ac"); the kernel drops it from one never written (mprotect_fixup):
            # map it writable, and take write away once its pages are in (restore()).
            if not shared and "ac" in vmflags and v.perms[1] != "w":
                prot |= mmap.PROT_WRITE
                accounted.append((v.start, size, _prot(v.perms)))
            if _by_path(v):
                fd = fds[(v.path, shared and v.perms[1] == "w")]
                mapping.add(f"mmap({v.path})", lib.SYS_mmap, v.start, size, prot, flags, fd, v.pgoff)
            elif v.memfd:
                given.append(shared_anon.memfds.area(hand, v))
                mapping.add(f"mmap({v.path} at {v.start:#x})", lib.SYS_mmap, v.start, size, prot, flags,
                            given[-1], v.pgoff)
            elif anon_shared(v) and v.inode:
                mapping.run()  # its object may be an area of this task queued above
                fd = shared_anon.open(t, v, hand)
                try:
                    t.call(f"mmap(shared anon at {v.start:#x})", lib.SYS_mmap, v.start, size, prot, flags, fd, v.pgoff)
                finally:
                    t.syscall(lib.SYS_close, fd)
                shared_anon.made.setdefault(v.inode, (t.pid, v.start, v.end))
            else:
                mapping.add(f"mmap({v.path or 'anon'} at {v.start:#x})", lib.SYS_mmap, v.start, size, prot,
                            flags | mmap.MAP_ANONYMOUS, -1, 0)
            for flag in vmflags:
                if flag in ADVICE:
                    mapping.add(f"madvise({flag})", lib.SYS_madvise, v.start, size, ADVICE[flag])
            name = _anon_name(v.path)
            if name is not None:
                at = mapping.put(name.encode() + b"\0")
                mapping.add("prctl(PR_SET_VMA_ANON_NAME)", lib.SYS_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME,
                            v.start, size, at)
        mapping.run()
    finally:
        if fds or given:
            t.batch([(lib.SYS_close, fd) for fd in [*fds.values(), *given]], must=False)
    for v in areas:
        if v.memfd:
            shared_anon.memfds.mapped(v)
    return accounted


def _pieces(runs: list[PageRun], skip: list[PageRun], at: int = 0) -> list[tuple[PageRun, int]]:
    """The stored runs without the pages to `skip` (sorted, each within a run), each with its
    offset in the pages file (where the runs begin at byte `at`)."""
    out: list[tuple[PageRun, int]] = []
    holes = sorted((r.vaddr, r.vaddr + r.nr_pages * PAGE) for r in skip)
    off = at
    for r in runs:
        start, end = r.vaddr, r.vaddr + r.nr_pages * PAGE
        i = bisect.bisect_left(holes, (start, 0))
        at = start
        while at < end:
            hs, he = holes[i] if i < len(holes) and holes[i][0] < end else (end, end)
            if hs > at:
                out.append((PageRun(vaddr=at, nr_pages=(hs - at) // PAGE), off + at - start))
            at, i = max(at, he), i + 1
        off += end - start
    return out


def _fill(t: Tracee, lay: Layout, mm: Mm, pieces: list[tuple[PageRun, int]], pages: Path, kept: set[int]) -> None:
    """Put the stored pages back (each run with its offset in the pages file): UFFDIO_COPY into
    private anonymous areas when there are enough such pages to pay for the userfaultfd (not in
    areas a fork gave, `kept`: their pages are there); into other writable areas a remote
    preadv straight from the pages file, or, when they are few, process_vm_writev from here
    (no remote call); /proc/PID/mem for the rest (it may write where the task cannot)."""
    starts = [v.start for v in mm.vmas]  # in address order, as /proc/PID/maps lists them
    # A run never crosses areas: the dump stores pages area by area.
    placed = [(r, mm.vmas[bisect.bisect_right(starts, r.vaddr) - 1], off) for r, off in pieces]

    def usable(area: Vma) -> bool:
        return uffd.usable(area) and area.start not in kept

    copied = sum(r.nr_pages for r, area, _ in placed if usable(area)) >= UFFD_MIN
    filler = uffd.Filler(t, pages) if copied else None
    writable = [r.nr_pages for r, area, _ in placed if not (copied and usable(area)) and area.perms[1] == "w"]
    by_task = sum(writable) >= WRITE_MAX
    fd = open_in(t, lay, str(pages.resolve()), os.O_RDONLY) if by_task else -1
    try:
        with open(pages, "rb", buffering=0) as local:
            batch: list[PageRun] = []
            batch_off = batch_end = 0
            registered: set[int] = set()
            copies: list[tuple[int, int, int]] = []
            for r, area, off in placed:
                size = r.nr_pages * PAGE
                by_uffd = filler is not None and usable(area)
                by_preadv = not by_uffd and area.perms[1] == "w" and by_task
                if batch and (not by_preadv or off != batch_end):  # one preadv: runs consecutive in the file
                    _preadv(t, lay, fd, batch, batch_off)
                    batch = []
                if filler is not None and by_uffd:
                    if area.start not in registered:
                        filler.register(area)
                        registered.add(area.start)
                    copies.append((r.vaddr, size, off))
                elif by_preadv:
                    if r.nr_pages >= POPULATE_MIN:
                        t.call("madvise(POPULATE_WRITE)", lib.SYS_madvise, r.vaddr, size, lib.MADV_POPULATE_WRITE)
                    if not batch:
                        batch_off = off
                    batch.append(r)
                    batch_end = off + size
                    if len(batch) == min(IOV_MAX, lay.size // 16):
                        _preadv(t, lay, fd, batch, batch_off)
                        batch = []
                elif area.perms[1] == "w":
                    t.write(r.vaddr, os.pread(local.fileno(), size, off))
                else:
                    _poke(t, area, r.vaddr, os.pread(local.fileno(), size, off))
            if batch:
                _preadv(t, lay, fd, batch, batch_off)
            if filler is not None:
                filler.copy(copies)
    finally:
        if fd >= 0:
            t.syscall(lib.SYS_close, fd)
        if filler is not None:
            filler.close()


def _poke(t: Tracee, area: Vma, addr: int, data: bytes) -> None:
    """Write pages of an area the task may not write; /proc/PID/mem refuses some (PROT_NONE):
    open those for writing a moment."""
    try:
        t.poke(addr, data)
        return
    except OSError as e:
        if e.errno != errno.EIO:
            raise
    t.call("mprotect(+w)", lib.SYS_mprotect, addr, len(data), _prot(area.perms) | mmap.PROT_READ | mmap.PROT_WRITE)
    t.write(addr, data)
    t.call("mprotect(back)", lib.SYS_mprotect, addr, len(data), _prot(area.perms))


def _preadv(t: Tracee, lay: Layout, fd: int, batch: list[PageRun], off: int) -> None:
    """One remote preadv of consecutive stored runs (consecutive in the pages file too)."""
    t.write(lay.scratch, b"".join(struct.pack("<QQ", r.vaddr, r.nr_pages * PAGE) for r in batch))
    want = sum(r.nr_pages for r in batch) * PAGE
    done = t.call("preadv(pages)", lib.SYS_preadv, fd, lay.scratch, len(batch), off, 0)
    if done != want:
        raise CkptError(f"pid {t.pid}: preadv of pages gave {done} of {want} bytes (truncated pages file?)")


def _set_mm(t: Tracee, lay: Layout, mm: Mm) -> None:
    """PR_SET_MM_MAP: code/data/brk/stack/arg/env bounds, auxv and the exe link."""
    # The kernel refuses a new exe while the old one is still mapped (EBUSY): when the stub
    # already runs the dumped executable, the link is right as it is (exe_fd -1 keeps it).
    same = os.readlink(f"/proc/{t.pid}/exe") == mm.exe
    exe = -1 if same else open_in(t, lay, mm.exe.removesuffix(" (deleted)"), os.O_RDONLY)
    try:
        auxv_at = lay.scratch + MM_MAP.size
        t.write(auxv_at, mm.auxv)
        t.write(lay.scratch, MM_MAP.pack(mm.start_code, mm.end_code, mm.start_data, mm.end_data,
                                         mm.start_brk, mm.brk, mm.start_stack, mm.arg_start, mm.arg_end,
                                         mm.env_start, mm.env_end, auxv_at, len(mm.auxv), exe & 0xFFFFFFFF))
        t.call("prctl(PR_SET_MM_MAP)", lib.SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, lay.scratch, MM_MAP.size, 0)
    finally:
        if exe >= 0:
            t.syscall(lib.SYS_close, exe)


def restore(t: Tracee, lay: Layout, mm: Mm, runs: list[PageRun], pages: Path, shared_anon: SharedAnon,
            hand: Handover, inherit: Inherit | None = None, pages_at: int = 0) -> None:
    """Rebuild the address space in the prepared stub: areas, contents, locks, mm fields (the
    runs' contents from byte pages_at of `pages` on). A task forked from its rebuilt parent
    keeps what `inherit` says (engine.cow)."""
    shared_anon.memfds.make(mm, pages.parent)
    kept = {v.start for v in inherit.areas} if inherit else set()
    accounted = _map_areas(t, lay, mm, shared_anon, hand, kept)
    if inherit and inherit.drop:
        t.batch([(lib.SYS_madvise, s, n, mmap.MADV_DONTNEED) for s, n in inherit.drop],
                [f"madvise(DONTNEED at {s:#x})" for s, _ in inherit.drop])
    pieces = _pieces(runs, inherit.runs if inherit else [], pages_at)
    if pieces:
        _fill(t, lay, mm, pieces, pages, kept)
    t.batch([(lib.SYS_mprotect, start, size, prot) for start, size, prot in accounted],
            [f"mprotect(at {start:#x})" for start, _, _ in accounted])
    for v in mm.vmas:
        flags = v.vmflags.split()
        if "lo" in flags:
            # mlock2(MLOCK_ONFAULT) when the area only locks pages as they fault in ("lf").
            t.call("mlock2", lib.SYS_mlock2, v.start, v.end - v.start, 1 if "lf" in flags else 0)
    _set_mm(t, lay, mm)


def finish(t: Tracee, lay: Layout) -> None:
    """Remove the scratch area."""
    t.call("munmap(scratch)", lib.SYS_munmap, lay.scratch, lay.size)
