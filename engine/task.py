"""Per-process attributes, dump and restore side by side: credentials (ids, groups, capability
sets, securebits), resource limits, personality, no_new_privs, dumpable, pdeathsig, the THP
switch, the robust futex list, clear_child_tid and seccomp filters (engine.seccomp). Read from
/proc, from the tracer (get_robust_list) and by remote prctl; put back by remote syscalls in
the stub, credentials and what they reset last. Credentials, no_new_privs, personality and
filters belong to each thread (the kernel keeps them in the task_struct and its cred): every
thread's own are dumped (ThreadAttrs) and given back to it once it is made (engine.threads)."""
from __future__ import annotations

import errno
import os
import struct
from typing import Sequence

from engine import proc, seccomp
from engine.errors import CkptError, Unsupported
from engine.images.task_pb2 import Creds, Rlimit, SeccompFilter, Task, ThreadAttrs
from engine.mm import KERNEL_AREAS, Layout
from engine.ptrace import Tracee
from native import ffi, lib

KIND = "task"

# uapi/linux/prctl.h
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_GET_SECUREBITS, PR_SET_SECUREBITS = 8, 24, 27, 28
PR_SET_NO_NEW_PRIVS, PR_GET_TID_ADDRESS, PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 38, 40, 41, 42
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4
PR_THP_DISABLE_EXCEPT_ADVISED = 1 << 1  # Linux 6.18: PR_GET_THP_DISABLE then returns 3
PAGE_IS_HUGE = 1 << 6  # uapi/linux/fs.h (PAGEMAP_SCAN), not in native.lib
MADV_DONTNEED = 4
ROBUST_HEAD_SIZE = 24  # sizeof(struct robust_list_head), the only length set_robust_list takes
# uapi/linux/capability.h: version 3 takes two data structs (64 capability bits).
CAP_VERSION_3 = 0x20080522
CAP_HEADER = struct.Struct("<Ii")
CAP_DATA = struct.Struct("<III")  # effective, permitted, inheritable: one per 32 bits
# asm/unistd_64.h: not in native.lib
SYS_SETFSUID, SYS_SETFSGID, SYS_GET_ROBUST_LIST = 122, 123, 274
RLIM64 = struct.Struct("<QQ")  # struct rlimit64
NO_ID = (1 << 32) - 1  # setfsuid(-1) changes nothing and returns the current fsuid

# /proc/PID/limits rows (fs/proc/base.c lnames), indexed by RLIMIT_* number
# (uapi/asm-generic/resource.h: RLIMIT_CPU = 0 ... RLIMIT_RTTIME = 15).
LIMITS = ("Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
          "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
          "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
          "Max realtime priority", "Max realtime timeout")
UNLIMITED = (1 << 64) - 1


def _creds(pid: int, securebits: int) -> Creds:
    """Ids, groups and capability sets from /proc/PID/status."""
    st = proc.status(pid)
    uid, euid, suid, fsuid = (int(x) for x in st["Uid"].split())
    gid, egid, sgid, fsgid = (int(x) for x in st["Gid"].split())
    return Creds(uid=uid, euid=euid, suid=suid, fsuid=fsuid, gid=gid, egid=egid, sgid=sgid, fsgid=fsgid,
                 groups=[int(g) for g in st["Groups"].split()],
                 cap_inh=int(st["CapInh"], 16), cap_prm=int(st["CapPrm"], 16), cap_eff=int(st["CapEff"], 16),
                 cap_bnd=int(st["CapBnd"], 16), cap_amb=int(st["CapAmb"], 16), securebits=securebits)


def _limits(pid: int) -> list[Rlimit]:
    """Every limit from /proc/PID/limits: prlimit() on a task of another uid needs
    CAP_SYS_RESOURCE, which root lacks on some machines (KERNEL-FACTS.md)."""
    out = []
    for res, line in enumerate(proc.read(pid, "limits").splitlines()[1:]):
        # The kernel lists them in resource order (fs/proc/base.c lnames[]).
        if res >= len(LIMITS) or not line.startswith(LIMITS[res] + " "):
            raise CkptError(f"pid {pid}: unexpected line {res + 2} in /proc/PID/limits: {line!r}")
        soft, hard = line[len(LIMITS[res]):].split()[:2]
        out.append(Rlimit(resource=res, cur=UNLIMITED if soft == "unlimited" else int(soft),
                          max=UNLIMITED if hard == "unlimited" else int(hard)))
    return out


def _robust_list(pid: int) -> tuple[int, int]:
    head, size = ffi.new("uint64_t *"), ffi.new("size_t *")
    if lib.syscall(SYS_GET_ROBUST_LIST, ffi.cast("long", pid), head, size) < 0:
        raise CkptError(f"get_robust_list({pid}): {os.strerror(ffi.errno)}")
    return int(head[0]), int(size[0])


def _prctl(t: Tracee, what: str, *args: int) -> int:
    return t.call(f"prctl({what})", lib.SYS_prctl, *args, *(0,) * (5 - len(args)))


def _personality(tid: int) -> int:
    return int(proc.read(tid, "personality"), 16)


def _thread_dump(tt: Tracee) -> ThreadAttrs:
    """A seized thread's own credentials, no_new_privs, personality and filters (securebits
    by a remote prctl in it: /proc does not show them)."""
    st = proc.status(tt.pid)
    filters = seccomp.dump(tt.pid, st)  # refuses strict mode before any remote call
    return ThreadAttrs(tid=tt.pid, creds=_creds(tt.pid, _prctl(tt, "PR_GET_SECUREBITS", PR_GET_SECUREBITS)),
                       no_new_privs=st.get("NoNewPrivs") == "1", personality=_personality(tt.pid), seccomp=filters)


def dump(t: Tracee, others: list[Tracee]) -> Task:
    """Everything above for the seized task, read through thread t (its main thread unless
    that one exited alone); `others`: its other threads, seized too."""
    pid = t.pid
    filters = seccomp.dump(pid, proc.status(pid))  # refuses strict mode before any remote call
    if t.answers is not None:  # asked with the dump's other questions (engine.questions)
        results, raw = t.answers.task
    else:
        with t.scratch() as buf:
            results = t.batch(calls(buf), CALLS)
            raw = t.read(buf, CALLS_SIZE)
    securebits, dumpable, thp, _, _, persona = results
    pdeathsig, clear_tid = struct.unpack("<i4xQ", raw)
    return assemble(t.tgid, pid, securebits, dumpable, thp, pdeathsig, clear_tid, filters,
                    [_thread_dump(tt) for tt in others], persona)


MM_CALLS = ["prctl(PR_GET_DUMPABLE)", "prctl(PR_GET_THP_DISABLE)"]
CALLS = ["prctl(PR_GET_SECUREBITS)", *MM_CALLS, "prctl(PR_GET_PDEATHSIG)", "prctl(PR_GET_TID_ADDRESS)",
         "personality(0xffffffff)"]
CALLS_SIZE = 16  # bytes the calls write from their buffer on


def calls(buf: int) -> list[tuple[int, ...]]:
    """The task part's remote calls, one batch: the pdeathsig (an int) and the tid address (a
    pointer) land side by side at buf. personality(0xffffffff) only answers: one call in a
    batch costs less than a /proc read."""
    return [(lib.SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0), *mm_calls(),
            (lib.SYS_prctl, PR_GET_PDEATHSIG, buf, 0, 0, 0), (lib.SYS_prctl, PR_GET_TID_ADDRESS, buf + 8, 0, 0, 0),
            (lib.SYS_personality, 0xFFFFFFFF)]


def mm_calls() -> list[tuple[int, ...]]:
    """The remote calls that read what the task's memory (its mm) holds: dumpable, the THP
    switch. Any task sharing the memory answers them alike."""
    return [(lib.SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0), (lib.SYS_prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0)]


def assemble(tgid: int, tid: int, securebits: int, dumpable: int, thp: int, pdeathsig: int, clear_tid: int,
             filters: list[SeccompFilter], threads: list[ThreadAttrs], persona: int | None = None) -> Task:
    """Process tgid's part from what remote calls (or the kernel's structures) told, read
    through its thread tid, and /proc of that thread; `threads`: its other threads' own;
    `persona`: its personality, when a remote call told it (else read from /proc)."""
    st = proc.status(tid)
    head, size = _robust_list(tid)
    if tid != tgid:
        # tid's robust list and tid address go with its thread (engine.threads). The main
        # thread's died with it (its exit walked the list and cleared the tid), and its
        # pdeathsig cannot be asked of a zombie: none.
        head = size = clear_tid = pdeathsig = 0
    return Task(pid=tgid, creds=_creds(tid, securebits), rlimits=_limits(tid),
                personality=_personality(tid) if persona is None else persona,
                no_new_privs=st.get("NoNewPrivs") == "1", dumpable=dumpable, pdeathsig=pdeathsig, thp_disable=thp,
                robust_list=head, robust_len=size, clear_tid=clear_tid,
                seccomp_mode=seccomp.SECCOMP_MODE_FILTER if filters else 0, seccomp=filters, threads=threads)


# --- restore ---------------------------------------------------------------------------------

def thread_attrs(msg: Task, tids: list[int]) -> dict[int, ThreadAttrs]:
    """Each thread's own attributes, by tid; an image from before they were dumped per thread
    has none, and every thread then had the main thread's (the dump refused any other)."""
    if msg.threads:
        return {a.tid: a for a in msg.threads}
    return {tid: ThreadAttrs(tid=tid, creds=msg.creds, no_new_privs=msg.no_new_privs, personality=msg.personality,
                             seccomp=msg.seccomp) for tid in tids}


def _capset(t: Tracee, lay: Layout, eff: int, prm: int, inh: int) -> None:
    low, high = (v & 0xFFFFFFFF for v in (eff, prm, inh)), (v >> 32 for v in (eff, prm, inh))
    t.write(lay.scratch, CAP_HEADER.pack(CAP_VERSION_3, 0) + CAP_DATA.pack(*low) + CAP_DATA.pack(*high))
    rc = t.syscall(lib.SYS_capset, lay.scratch, lay.scratch + CAP_HEADER.size)
    if rc < 0:
        raise CkptError(f"pid {t.pid}: remote capset(eff={eff:#x}, prm={prm:#x}, inh={inh:#x}): "
                        f"{os.strerror(-rc)}")


def _rlimits(t: Tracee, lay: Layout, limits: list[Rlimit]) -> None:
    """prlimit64 on itself, in one batch, for the limits that differ from the stub's own:
    raising a hard limit needs CAP_SYS_RESOURCE, which may be missing."""
    have = {(r.resource, r.cur, r.max) for r in _limits(t.pid)}
    todo = [r for r in limits if (r.resource, r.cur, r.max) not in have]
    if not todo:
        return
    t.write(lay.scratch, b"".join(RLIM64.pack(r.cur, r.max) for r in todo))
    got = t.batch([(lib.SYS_prlimit64, 0, r.resource, lay.scratch + i * RLIM64.size, 0) for i, r in enumerate(todo)],
                  must=False)
    for r, rc in zip(todo, got):
        if rc < 0:
            why = " (a hard limit above the restorer's needs CAP_SYS_RESOURCE)" if rc == -errno.EPERM else ""
            raise CkptError(f"pid {t.pid}: remote prlimit64(resource {r.resource}, {r.cur}, {r.max}): "
                            f"{os.strerror(-rc)}{why}")


def thp_switch(t: Tracee, msg: Task) -> None:
    """PR_SET_THP_DISABLE as dumped; best done before memory is filled (see _unhuge)."""
    if msg.thp_disable & 1:
        _prctl(t, "PR_SET_THP_DISABLE", PR_SET_THP_DISABLE, 1, msg.thp_disable & PR_THP_DISABLE_EXCEPT_ADVISED)
    else:
        _prctl(t, "PR_SET_THP_DISABLE", PR_SET_THP_DISABLE, 0)


def _huge_ranges(pid: int, areas: list[proc.Area]) -> list[tuple[int, int]]:
    """Anonymous PMD-mapped huge pages in these areas (PAGEMAP_SCAN: huge, neither file nor
    the huge zero page)."""
    out: list[tuple[int, int]] = []
    vec = ffi.new("struct page_region[]", 512)
    arg = ffi.new("struct pm_scan_arg *")
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for a in areas:
            start = a.start
            while start < a.end:
                arg.size, arg.start, arg.end = ffi.sizeof(arg[0]), start, a.end
                arg.vec, arg.vec_len = int(ffi.cast("uintptr_t", vec)), 512
                arg.category_mask = PAGE_IS_HUGE | lib.PAGE_IS_FILE | lib.PAGE_IS_PFNZERO
                arg.category_inverted = lib.PAGE_IS_FILE | lib.PAGE_IS_PFNZERO
                arg.return_mask = PAGE_IS_HUGE
                n = lib.ioctl(fd, lib.PAGEMAP_SCAN, arg)
                if n < 0:
                    raise CkptError(f"pid {pid}: PAGEMAP_SCAN [{start:#x}, {a.end:#x}): {os.strerror(ffi.errno)}")
                out += [(int(vec[i].start), int(vec[i].end)) for i in range(n)]
                start = int(arg.walk_end)
    finally:
        os.close(fd)
    return out


def _unhuge(t: Tracee, thp: int) -> None:
    """Memory was filled before the parts run, while the stub still had THP on: huge pages
    the task could never have got since it turned THP off are made small again (copy out,
    MADV_DONTNEED, copy back through /proc/PID/mem, which faults in small pages now). With
    the switch set before memory (thp_switch) this finds nothing."""
    areas = [a for a in proc.vmas(t.pid) if a.perms[3] == "p" and a.path not in KERNEL_AREAS
             and not {"ht", "lo"} & set(a.vmflags.split())  # hugetlb; mlocked areas refuse DONTNEED
             and (thp == 1 or "hg" not in a.vmflags.split())]  # 3: advised areas may keep theirs
    ranges = _huge_ranges(t.pid, areas)
    if not ranges:
        return
    mem = os.open(f"/proc/{t.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        for start, end in ranges:
            data = os.pread(mem, end - start, start)
            if len(data) != end - start:
                raise CkptError(f"pid {t.pid}: short read of [{start:#x}, {end:#x}) through /proc/PID/mem")
            t.call("madvise(MADV_DONTNEED)", lib.SYS_madvise, start, end - start, MADV_DONTNEED)
            if os.pwrite(mem, data, start) != len(data):
                raise CkptError(f"pid {t.pid}: short write of [{start:#x}, {end:#x}) through /proc/PID/mem")
    finally:
        os.close(mem)


def _creds_restore(t: Tracee, lay: Layout, c: Creds, securebits: int) -> None:
    """From the stub's root credentials (and its `securebits`) to the dumped ones, in an order
    where each step still has the capability it needs (capabilities(7), prctl(2), capset(2))."""
    now = _creds(t.pid, securebits)
    if now == c:
        return  # the stub has them already (a task of the restorer's own credentials)
    missing = c.cap_prm & ~now.cap_prm | c.cap_bnd & ~now.cap_bnd
    if missing:
        # Neither set can grow (capabilities(7)): the restorer must hold what the task held.
        raise CkptError(f"pid {t.pid}: the task had capabilities {missing:#x} that the restorer "
                        "lacks (permitted or bounding set): they cannot be given back")
    t.write(lay.scratch, struct.pack(f"<{len(c.groups)}I", *c.groups))
    t.call("setgroups", lib.SYS_setgroups, len(c.groups), lay.scratch)
    t.call("setresgid", lib.SYS_setresgid, c.gid, c.egid, c.sgid)
    # Keep the permitted set when the uids leave 0; the effective set is cleared anyway and
    # raised again just after, for what follows still needs CAP_SETUID/SETGID/SETPCAP.
    _prctl(t, "PR_SET_KEEPCAPS", PR_SET_KEEPCAPS, 1)
    t.call("setresuid", lib.SYS_setresuid, c.uid, c.euid, c.suid)
    _capset(t, lay, now.cap_prm, now.cap_prm, now.cap_inh)
    # setfsuid reports no error: ask back with an invalid id, which changes nothing.
    t.syscall(SYS_SETFSUID, c.fsuid)
    t.syscall(SYS_SETFSGID, c.fsgid)
    fsuid, fsgid = t.syscall(SYS_SETFSUID, NO_ID), t.syscall(SYS_SETFSGID, NO_ID)
    if (fsuid, fsgid) != (c.fsuid, c.fsgid):
        raise CkptError(f"pid {t.pid}: setfsuid/setfsgid({c.fsuid}, {c.fsgid}) left {fsuid}, {fsgid}")
    # Inheritable before the bounding drops: capset caps it by the bounding set of the moment.
    _capset(t, lay, now.cap_prm, now.cap_prm, c.cap_inh)
    for cap in range(64):
        if now.cap_bnd >> cap & 1 and not c.cap_bnd >> cap & 1:
            _prctl(t, f"PR_CAPBSET_DROP, {cap}", PR_CAPBSET_DROP, cap)
    # Ambient raises need the cap permitted and inheritable, and must precede
    # SECBIT_NO_CAP_AMBIENT_RAISE.
    _prctl(t, "PR_CAP_AMBIENT_CLEAR_ALL", PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(64):
        if c.cap_amb >> cap & 1:
            _prctl(t, f"PR_CAP_AMBIENT_RAISE, {cap}", PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)
    # Securebits (keep-caps among them) and their locks: the last step needing CAP_SETPCAP.
    _prctl(t, f"PR_SET_SECUREBITS, {c.securebits:#x}", PR_SET_SECUREBITS, c.securebits)
    _capset(t, lay, c.cap_eff, c.cap_prm, c.cap_inh)


def _own(t: Tracee, lay: Layout, personality: int, no_new_privs: bool, creds: Creds,
         first: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
    """What a thread has of its own but filters: personality, no_new_privs, then credentials;
    the calls `first` (name, (nr, args...)) go in one batch with the first two (and the read of
    the securebits the credentials start from)."""
    if proc.status_field(t.pid, "NoNewPrivs") == "1" and not no_new_privs:
        raise CkptError(f"pid {t.pid}: the restorer runs with no_new_privs, which cannot be cleared")
    calls = [*first, ("personality", (lib.SYS_personality, personality))]
    if no_new_privs:
        calls.append(("prctl(PR_SET_NO_NEW_PRIVS)", (lib.SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)))
    calls.append(("prctl(PR_GET_SECUREBITS)", (lib.SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0)))  # for the creds
    got = t.batch([c for _, c in calls], [w for w, _ in calls])
    _creds_restore(t, lay, creds, got[-1])


def restore_thread(t: Tracee, lay: Layout, a: ThreadAttrs) -> None:
    """A made thread's own personality, no_new_privs and credentials; its filters came with
    the clones (engine.threads), while it still had the stub's privileges. It starts with
    pdeathsig 0 (copy_process); its robust list and tid address are engine.threads'."""
    _own(t, lay, a.personality, a.no_new_privs, a.creds)


def restore(t: Tracee, lay: Layout, msg: Task) -> None:
    """Limits, switches, robust list and tid address; then the main thread's personality,
    no_new_privs and credentials (its seccomp filters were installed with the threads, by
    engine.threads, while the stub was still privileged); then dumpable and pdeathsig, which a
    change of credentials resets (commit_creds in kernel/cred.c). The other threads have had
    theirs (restore_thread)."""
    if msg.seccomp_mode == seccomp.SECCOMP_MODE_STRICT:
        raise Unsupported(f"pid {msg.pid}: seccomp strict mode (SECCOMP_MODE_STRICT)")
    _rlimits(t, lay, list(msg.rlimits))
    first: list[tuple[str, Sequence[int]]] = []
    if msg.thp_disable & 1:
        thp_switch(t, msg)
        _unhuge(t, msg.thp_disable)
    else:
        first.append(("prctl(PR_SET_THP_DISABLE)", (lib.SYS_prctl, PR_SET_THP_DISABLE, 0, 0, 0, 0)))
    # Set even when dumped empty: the stub's C library registered its own, in memory that
    # is gone now (or, worse, taken by one of the task's areas the kernel would write to).
    first += [("set_robust_list", (lib.SYS_set_robust_list, msg.robust_list, msg.robust_len or ROBUST_HEAD_SIZE)),
              ("set_tid_address", (lib.SYS_set_tid_address, msg.clear_tid))]
    _own(t, lay, msg.personality, msg.no_new_privs, msg.creds, first)
    # dumpable belongs to the mm, but every thread's change of credentials resets it.
    pdeathsig = (lib.SYS_prctl, PR_SET_PDEATHSIG, msg.pdeathsig, 0, 0, 0)
    if msg.dumpable in (0, 1):
        t.batch([(lib.SYS_prctl, PR_SET_DUMPABLE, msg.dumpable, 0, 0, 0), pdeathsig],
                ["prctl(PR_SET_DUMPABLE)", "prctl(PR_SET_PDEATHSIG)"])
        return
    if _prctl(t, "PR_GET_DUMPABLE", PR_GET_DUMPABLE) != msg.dumpable:
        # 2 (SUID_DUMP_ROOT) only comes from fs.suid_dumpable on a change of credentials.
        raise CkptError(f"pid {t.pid}: dumpable was {msg.dumpable}, which prctl cannot set")
    t.batch([pdeathsig], ["prctl(PR_SET_PDEATHSIG)"])
