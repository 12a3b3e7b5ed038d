"""Per-process attributes, dump and restore side by side: credentials (ids, groups, capability
sets, securebits), resource limits, personality, no_new_privs, dumpable, pdeathsig, the THP
switch, the robust futex list, clear_child_tid and seccomp filters. Read from /proc, from the
tracer (get_robust_list, PTRACE_SECCOMP_GET_FILTER) and by remote prctl; put back by remote
syscalls in the stub, credentials and what they reset last."""
from __future__ import annotations

import errno
import os
import struct

from engine import proc
from engine.errors import CkptError, Unsupported, raise_for
from engine.images.task_pb2 import Creds, Rlimit, SeccompFilter, Task
from engine.mm import KERNEL_AREAS, Layout
from engine.ptrace import Tracee
from native import ffi, lib

KIND = "task"
PER_THREAD = True  # restore() also runs in every other thread: creds, filters... are per thread

# uapi/linux/prctl.h
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_DUMPABLE = 1, 2, 3, 4
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_GET_SECUREBITS, PR_SET_SECUREBITS = 8, 24, 27, 28
PR_SET_NO_NEW_PRIVS, PR_GET_TID_ADDRESS, PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 38, 40, 41, 42
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4
PR_THP_DISABLE_EXCEPT_ADVISED = 1 << 1  # Linux 6.18: PR_GET_THP_DISABLE then returns 3
PAGE_IS_HUGE = 1 << 6  # uapi/linux/fs.h (PAGEMAP_SCAN), not in native.lib
MADV_DONTNEED = 4
# uapi/linux/seccomp.h
SECCOMP_MODE_STRICT, SECCOMP_MODE_FILTER, SECCOMP_SET_MODE_FILTER = 1, 2, 1
# uapi/linux/ptrace.h: struct seccomp_metadata {__u64 filter_off; __u64 flags;}
PTRACE_SECCOMP_GET_METADATA = 0x420D
SECCOMP_METADATA = struct.Struct("<QQ")
SOCK_FILTER = 8  # sizeof(struct sock_filter) (uapi/linux/filter.h)
SOCK_FPROG = struct.Struct("<H6xQ")  # struct sock_fprog: len, then the pointer at offset 8
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
# /proc/PID/status lines of per-thread state the image keeps once for all threads.
THREAD_STATUS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                 "Seccomp", "Seccomp_filters")


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
    for line in proc.read(pid, "limits").splitlines()[1:]:
        res = next((i for i, n in enumerate(LIMITS) if line.startswith(n + " ")), None)
        if res is None:
            raise CkptError(f"pid {pid}: unknown line in /proc/PID/limits: {line!r}")
        soft, hard = line[len(LIMITS[res]):].split()[:2]
        out.append(Rlimit(resource=res, cur=UNLIMITED if soft == "unlimited" else int(soft),
                          max=UNLIMITED if hard == "unlimited" else int(hard)))
    return out


def _robust_list(pid: int) -> tuple[int, int]:
    head, size = ffi.new("uint64_t *"), ffi.new("size_t *")
    if lib.syscall(SYS_GET_ROBUST_LIST, ffi.cast("long", pid), head, size) < 0:
        raise CkptError(f"get_robust_list({pid}): {os.strerror(ffi.errno)}")
    return int(head[0]), int(size[0])


def _ptrace(pid: int, request: int, name: str, addr: int, data: object = ffi.NULL) -> int:
    """A raw request on a task this process has seized (any thread of the dumped process)."""
    rc = int(lib.ptrace_call(request, pid, ffi.cast("void *", addr), data))
    if rc < 0:
        raise_for(pid, name, ffi.errno)
    return rc


def _seccomp(pid: int, count: int) -> list[SeccompFilter]:
    """The task's filters, oldest first (index 0 of PTRACE_SECCOMP_GET_FILTER is the newest)."""
    out = []
    for i in range(count):
        n = _ptrace(pid, lib.PTRACE_SECCOMP_GET_FILTER, "SECCOMP_GET_FILTER", i)
        prog = ffi.new("char[]", n * SOCK_FILTER)
        _ptrace(pid, lib.PTRACE_SECCOMP_GET_FILTER, "SECCOMP_GET_FILTER", i, prog)
        meta = ffi.new("char[]", SECCOMP_METADATA.pack(i, 0))
        _ptrace(pid, PTRACE_SECCOMP_GET_METADATA, "SECCOMP_GET_METADATA", SECCOMP_METADATA.size, meta)
        _, flags = SECCOMP_METADATA.unpack(ffi.buffer(meta, SECCOMP_METADATA.size))
        out.append(SeccompFilter(program=bytes(ffi.buffer(prog, n * SOCK_FILTER)), flags=flags))
    return out[::-1]


def _same_in_threads(pid: int, st: dict[str, str], filters: list[SeccompFilter]) -> None:
    """The image holds one set of per-thread attributes, given to every thread at restore:
    refuse a thread whose credentials, no_new_privs, personality or filters differ from the
    main thread's (as far as /proc and ptrace show them: securebits and pdeathsig of other
    threads are not visible from outside)."""
    personality = proc.read(pid, "personality")
    for tid in sorted(int(x) for x in os.listdir(f"/proc/{pid}/task") if int(x) != pid):
        other = proc.status(tid)
        differ = [k for k in THREAD_STATUS if other.get(k) != st.get(k)]
        if proc.read(tid, "personality") != personality:
            differ.append("personality")
        if not differ and st.get("Seccomp") == str(SECCOMP_MODE_FILTER) \
                and _seccomp(tid, int(other.get("Seccomp_filters", "0"))) != filters:
            differ.append("seccomp filters")
        if differ:
            raise Unsupported(f"pid {pid}: thread {tid} has its own {', '.join(differ)}: "
                              "per-thread credentials and filters are not dumped yet")


def dump(t: Tracee) -> Task:
    """Everything above for the seized task."""
    pid = t.pid
    st = proc.status(pid)
    mode = int(st.get("Seccomp", "0"))
    if mode == SECCOMP_MODE_STRICT:
        # Strict mode allows only read/write/exit/sigreturn: a restored task cannot be given
        # back the rest of its state by itself, and the mode cannot be set from outside.
        raise Unsupported(f"pid {pid}: seccomp strict mode (SECCOMP_MODE_STRICT)")
    with t.scratch() as buf:
        # One batch: the pdeathsig (an int) and the tid address (a pointer) land side by side.
        securebits, dumpable, thp, _, _ = t.batch(
            [(lib.SYS_prctl, PR_GET_SECUREBITS, 0, 0, 0, 0), *mm_calls(),
             (lib.SYS_prctl, PR_GET_PDEATHSIG, buf, 0, 0, 0), (lib.SYS_prctl, PR_GET_TID_ADDRESS, buf + 8, 0, 0, 0)],
            ["prctl(PR_GET_SECUREBITS)", *MM_CALLS, "prctl(PR_GET_PDEATHSIG)", "prctl(PR_GET_TID_ADDRESS)"])
        pdeathsig, clear_tid = struct.unpack("<i4xQ", t.read(buf, 16))
    return assemble(pid, securebits, dumpable, thp, pdeathsig, clear_tid)


MM_CALLS = ["prctl(PR_GET_DUMPABLE)", "prctl(PR_GET_THP_DISABLE)"]


def mm_calls() -> list[tuple[int, ...]]:
    """The remote calls that read what the task's memory (its mm) holds: dumpable, the THP
    switch. Any task sharing the memory answers them alike."""
    return [(lib.SYS_prctl, PR_GET_DUMPABLE, 0, 0, 0, 0), (lib.SYS_prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0)]


def assemble(pid: int, securebits: int, dumpable: int, thp: int, pdeathsig: int, clear_tid: int) -> Task:
    """The task's part from what remote calls (or the kernel's structures) told and /proc."""
    st = proc.status(pid)
    mode = int(st.get("Seccomp", "0"))
    head, size = _robust_list(pid)
    filters = _seccomp(pid, int(st.get("Seccomp_filters", "0"))) if mode == SECCOMP_MODE_FILTER else []
    _same_in_threads(pid, st, filters)
    return Task(pid=pid, creds=_creds(pid, securebits), rlimits=_limits(pid),
                personality=int(proc.read(pid, "personality"), 16), no_new_privs=st.get("NoNewPrivs") == "1",
                dumpable=dumpable, pdeathsig=pdeathsig, thp_disable=thp, robust_list=head, robust_len=size,
                clear_tid=clear_tid, seccomp_mode=mode, seccomp=filters)


# --- restore ---------------------------------------------------------------------------------

def _prctl(t: Tracee, what: str, *args: int) -> int:
    return t.call(f"prctl({what})", lib.SYS_prctl, *args, *(0,) * (5 - len(args)))


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


def _seccomp_restore(t: Tracee, lay: Layout, filters: list[SeccompFilter]) -> None:
    """Install each filter, oldest first. Our own later remote calls are not filtered: the task
    is seized with PTRACE_O_SUSPEND_SECCOMP (ptrace(2))."""
    for i, f in enumerate(filters):
        prog = lay.scratch + SOCK_FPROG.size
        t.write(lay.scratch, SOCK_FPROG.pack(len(f.program) // SOCK_FILTER, prog) + f.program)
        t.call(f"seccomp(SET_MODE_FILTER, filter {i})", lib.SYS_seccomp, SECCOMP_SET_MODE_FILTER, f.flags, lay.scratch)


def _creds_restore(t: Tracee, lay: Layout, c: Creds) -> None:
    """From the stub's root credentials to the dumped ones, in an order where each step still
    has the capability it needs (capabilities(7), prctl(2), capset(2))."""
    now = _creds(t.pid, _prctl(t, "PR_GET_SECUREBITS", PR_GET_SECUREBITS))
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


def restore(t: Tracee, lay: Layout, msg: Task) -> None:
    """Limits, personality, switches, robust list and tid address; then no_new_privs and the
    seccomp filters while the stub is still privileged (installing one without no_new_privs
    needs CAP_SYS_ADMIN); then credentials; then dumpable and pdeathsig, which a change of
    credentials resets (commit_creds in kernel/cred.c). In a thread other than the main one
    only the per-thread attributes: its robust list and tid address are the threads part's,
    and a new thread starts with pdeathsig 0 (copy_process)."""
    st = proc.status(t.pid)
    main = st.get("Tgid") == str(t.pid)
    if msg.seccomp_mode == SECCOMP_MODE_STRICT:
        raise Unsupported(f"pid {msg.pid}: seccomp strict mode (SECCOMP_MODE_STRICT)")
    if st.get("NoNewPrivs") == "1" and not msg.no_new_privs:
        raise CkptError(f"pid {t.pid}: the restorer runs with no_new_privs, which cannot be cleared")
    if main:
        _rlimits(t, lay, list(msg.rlimits))
        thp_switch(t, msg)
        if msg.thp_disable & 1:
            _unhuge(t, msg.thp_disable)
        if msg.robust_list:
            t.call("set_robust_list", lib.SYS_set_robust_list, msg.robust_list, msg.robust_len)
        if msg.clear_tid:
            t.call("set_tid_address", lib.SYS_set_tid_address, msg.clear_tid)
    t.call("personality", lib.SYS_personality, msg.personality)
    if msg.no_new_privs:
        _prctl(t, "PR_SET_NO_NEW_PRIVS", PR_SET_NO_NEW_PRIVS, 1)
    _seccomp_restore(t, lay, list(msg.seccomp))
    _creds_restore(t, lay, msg.creds)
    # dumpable belongs to the mm, but every thread's change of credentials resets it.
    if msg.dumpable in (0, 1):
        _prctl(t, "PR_SET_DUMPABLE", PR_SET_DUMPABLE, msg.dumpable)
    elif _prctl(t, "PR_GET_DUMPABLE", PR_GET_DUMPABLE) != msg.dumpable:
        # 2 (SUID_DUMP_ROOT) only comes from fs.suid_dumpable on a change of credentials.
        raise CkptError(f"pid {t.pid}: dumpable was {msg.dumpable}, which prctl cannot set")
    if main:
        _prctl(t, "PR_SET_PDEATHSIG", PR_SET_PDEATHSIG, msg.pdeathsig)
