"""Namespaces the dumped tasks made: a task whose pid, mount, net, ipc or uts namespace is
not its parent's (for a root: not the dumper's, as the restorer becomes its parent) made it (at its fork, or by unshare before forking what shares it); at
restore its fork makes a fresh one (CLONE_NEW*), and the state the namespace held is put
back in it by remote syscalls in that task: the host and domain names, lo up, mount
propagation and the proc and sysfs mounts made inside. What is not restored is refused at
dump, by name: user, cgroup and time namespaces, a namespace entered with setns by tasks
that do not inherit it from one creator, network interfaces other than lo, SysV IPC
objects, mounts of other kinds, mounts removed inside."""
from __future__ import annotations

import os
import struct
from collections import Counter
from dataclasses import dataclass

from engine.errors import CkptError, ProcessGone, Unsupported
from engine.images.ns_pb2 import Mount, Namespace, Namespaces
from engine.ptrace import Tracee
from engine.tree import Frozen
from native import lib

NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
KINDS = {"pid": lib.CLONE_NEWPID, "mnt": lib.CLONE_NEWNS, "net": lib.CLONE_NEWNET, "ipc": lib.CLONE_NEWIPC,
         "uts": lib.CLONE_NEWUTS}
NAMES = {flag: name for name, flag in KINDS.items()}
REFUSED = ("user", "cgroup", "time")
MOUNTABLE = ("proc", "sysfs")  # file systems a restore mounts again inside (no contents of their own)
UTSNAME = 65  # bytes of each struct utsname field
IFREQ = struct.Struct("<16sh22x")  # struct ifreq: the name, then ifr_flags (40 bytes)
AF_INET, SOCK_DGRAM, SOCK_CLOEXEC = 2, 2, 0o2000000
MS_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
            "relatime": 1 << 21, "strictatime": 1 << 24}
MS_PRIVATE, MS_REC = lib.MS_PRIVATE, lib.MS_REC


def ids(pid: int | str) -> dict[str, int]:
    """The task's namespaces by kind (the inode /proc/PID/ns/KIND links to)."""
    out = {}
    for kind in (*KINDS, *REFUSED, "pid_for_children"):
        try:
            link = os.readlink(f"/proc/{pid}/ns/{kind}")
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise ProcessGone(int(pid)) from None
            continue
        out[kind] = int(link[link.index("[") + 1:-1])
    return out


# --- mounts --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MountLine:
    """One line of /proc/PID/mountinfo, as much of it as a restore needs."""

    root: str
    mountpoint: str
    options: str
    shared: bool
    fstype: str
    source: str
    super_options: str

    @property
    def key(self) -> str:
        """What tells two mounts apart across mount namespaces (ids differ in each copy)."""
        return f"{self.mountpoint} {self.fstype} {self.source} {self.root}"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts(pid: int | str) -> list[MountLine]:
    """The mount table of a task's mount namespace, in mount order."""
    out = []
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(int(pid) if str(pid).isdigit() else 0) from None
    for line in lines:
        head, _, tail = line.partition(" - ")
        h, t = head.split(), tail.split()
        out.append(MountLine(_unescape(h[3]), _unescape(h[4]), h[5], any(x.startswith("shared:") for x in h[6:]),
                             t[0], _unescape(t[1]), t[2] if len(t) > 2 else ""))
    return out


def _mount_state(pid: int, inner: list[MountLine], outer: list[MountLine], ns: Namespace) -> None:
    """What the mount namespace made of the copy it started as: propagation, new mounts."""
    have = Counter(m.key for m in outer)
    kept: Counter[str] = Counter()
    for m in inner:
        if kept[m.key] < have[m.key]:
            kept[m.key] += 1
            continue
        if m.fstype not in MOUNTABLE:
            raise Unsupported(f"pid {pid}: the {m.fstype} mount at {m.mountpoint} made in its mount namespace "
                              f"is not restored (only {', '.join(MOUNTABLE)} mounts are)")
        flags = sum(MS_FLAGS.get(o, 0) for o in m.options.split(","))
        data = ",".join(o for o in m.super_options.split(",") if o not in ("rw", "ro"))
        ns.mounts.append(Mount(mountpoint=m.mountpoint, fstype=m.fstype, source=m.source, flags=flags, data=data))
    gone = have - kept
    if gone:
        key = next(iter(gone))
        raise Unsupported(f"pid {pid}: its mount namespace lost the mount {key.split()[0]} it started with "
                          "(unmounted inside: not restored)")
    shared = {m.key for m in inner if m.shared}
    ns.private = not shared and any(m.shared for m in outer)
    if shared and shared != {m.key for m in outer if m.shared}:
        raise Unsupported(f"pid {pid}: mount propagation in its mount namespace was changed mount by mount "
                          "(only making all of it private is restored)")
    ns.outer.extend(m.key for m in outer)


def check_outer(ns: Namespaces) -> None:
    """A new mount namespace starts as a copy of the restorer's: it must hold what the
    dumped one started with."""
    mine = Counter(m.key for m in mounts("self"))
    for n in ns.namespaces:
        if n.kind == lib.CLONE_NEWNS:
            want = Counter(n.outer)
            for key in sorted((want - mine) | (mine - want)):
                what = "lacks" if want[key] > mine[key] else "has an extra"
                raise CkptError(f"the restorer's mount namespace {what} mount {key.split()[0]} "
                                f"({key.split()[1]}) compared with the one task {n.creator}'s started from")


# --- dump ----------------------------------------------------------------------------------

def _uts(t: Tracee, ns: Namespace) -> None:
    with t.scratch() as buf:
        t.call("uname", lib.SYS_uname, buf)
        raw = t.read(buf, UTSNAME * 6)
    field = [raw[i * UTSNAME:(i + 1) * UTSNAME].split(b"\0")[0].decode(errors="surrogateescape") for i in range(6)]
    ns.hostname, ns.domainname = field[1], field[5]


def _lo_flags(t: Tracee, buf: int, new: int | None = None) -> int:
    """lo's interface flags, read (and set to `new`) through a socket made in the task."""
    fd = t.call("socket", lib.SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)
    try:
        t.write(buf, IFREQ.pack(b"lo", 0))
        t.call("ioctl(SIOCGIFFLAGS)", lib.SYS_ioctl, fd, lib.SIOCGIFFLAGS, buf)
        flags = IFREQ.unpack(t.read(buf, IFREQ.size))[1] & 0xFFFF
        if new is not None:
            t.write(buf, IFREQ.pack(b"lo", new))
            t.call("ioctl(SIOCSIFFLAGS)", lib.SYS_ioctl, fd, lib.SIOCSIFFLAGS, buf)
        return flags
    finally:
        t.syscall(lib.SYS_close, fd)


def _net(t: Tracee, ns: Namespace) -> None:
    with open(f"/proc/{t.pid}/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.read().splitlines()[2:]]
    others = [n for n in names if n != "lo"]
    if others:
        raise Unsupported(f"pid {t.pid}: its network namespace has interfaces other than lo "
                          f"({', '.join(others)}): not restored")
    with t.scratch() as buf:
        ns.lo_up = bool(_lo_flags(t, buf) & lib.IFF_UP)


def _ipc(t: Tracee) -> None:
    """SysV objects are not dumped yet: their presence is refused."""
    with t.scratch() as buf:
        t.call("shmctl(SHM_INFO)", lib.SYS_shmctl, 0, lib.SHM_INFO, buf)
        shm = struct.unpack_from("<i", t.read(buf, 4))[0]  # shm_info.used_ids
        t.call("semctl(SEM_INFO)", lib.SYS_semctl, 0, 0, lib.SEM_INFO, buf)
        sem = struct.unpack_from("<10i", t.read(buf, 40))[7]  # seminfo.semusz: sets in use
        t.call("msgctl(MSG_INFO)", lib.SYS_msgctl, 0, lib.MSG_INFO, buf)
        msg = struct.unpack_from("<i", t.read(buf, 4))[0]  # msginfo.msgpool: queues in use
    if shm or sem or msg:
        raise Unsupported(f"pid {t.pid}: its ipc namespace holds SysV objects ({shm} shared memory segments, "
                          f"{sem} semaphore sets, {msg} message queues): not dumped yet")


def dump(frozen: Frozen) -> Namespaces:
    """The namespaces made by tasks of the frozen tree and their state; each task's entry
    gets its CLONE_NEW* flags."""
    seen: dict[int, dict[str, int]] = {}
    made: dict[tuple[str, int], int] = {}  # (kind, id) -> the task that made it
    out = Namespaces()
    for pid, task in frozen.tasks.items():  # parents first
        parent, leader = task.entry.ppid, task.acting
        if task.zombie:
            continue  # a zombie has no namespaces left: it was forked into its parent's
        # A zombie main thread has none left either: its live thread's. A task asleep in vfork
        # has no thread seized but its own /proc.
        mine = seen[pid] = ids(leader.pid if leader is not None else pid)
        # A root is restored as a child of the restorer: what it has that we lack, it made.
        outer: int | str = parent or "self"
        theirs = seen[parent] if parent else ids("self")
        for kind in REFUSED:
            if mine.get(kind) != theirs.get(kind):
                raise Unsupported(f"pid {pid}: it is in a {kind} namespace of its own ({kind} namespaces are not "
                                  "supported)")
        if mine.get("pid_for_children", mine["pid"]) != mine["pid"]:
            raise Unsupported(f"pid {pid}: it unshared a pid namespace for its children (not supported yet)")
        f = 0
        for kind, flag in KINDS.items():
            if mine[kind] == theirs[kind]:
                continue
            if kind == "pid" and not _is_init(frozen, pid, parent):
                raise Unsupported(f"pid {pid}: its pid namespace is not its parent's, and it is not that "
                                  "namespace's init (entered with setns: not supported)")
            if (kind, mine[kind]) in made:
                raise Unsupported(f"pid {pid}: its {kind} namespace is also task {made[kind, mine[kind]]}'s, "
                                  "which it did not inherit (entered with setns: not supported)")
            if leader is None:
                raise Unsupported(f"pid {pid}: it made a {kind} namespace and waits in vfork, where the "
                                  "namespace's state cannot be read")
            made[kind, mine[kind]] = pid
            f |= flag
            out.namespaces.append(_state(kind, leader, outer, mine[kind]))
        task.entry.ns_flags = f
    return out


def _is_init(frozen: Frozen, pid: int, parent: int) -> bool:
    """Pid 1 of a namespace one level below its parent's (a root's parent, the restorer, is
    at the one level our /proc shows)."""
    mine = frozen.tasks[pid].entry.nspids
    above = len(frozen.tasks[parent].entry.nspids) if parent else 1
    return len(mine) == above + 1 and mine[-1] == 1


def _state(kind: str, t: Tracee, parent: int | str, ident: int) -> Namespace:
    ns = Namespace(kind=KINDS[kind], id=ident, creator=t.tgid)
    if kind == "uts":
        _uts(t, ns)
    elif kind == "net":
        _net(t, ns)
    elif kind == "ipc":
        _ipc(t)
    elif kind == "mnt":
        _mount_state(t.pid, mounts(t.pid), mounts(parent), ns)
    elif kind == "pid":
        ns.last_pid = _last_pid(t)
    return ns


def _last_pid(t: Tracee, value: int | None = None) -> int:
    """The ns_last_pid of t's pid namespace (the sysctl answers for the caller's namespace:
    read, or written when value is given, by a remote call in t)."""
    with t.scratch() as buf:
        (path,) = _strings(t, buf, 256, NS_LAST_PID)
        fd = t.call(f"open({NS_LAST_PID})", lib.SYS_open, path, (os.O_RDONLY if value is None else os.O_WRONLY)
                    | os.O_CLOEXEC, 0)
        text = b"" if value is None else str(value).encode()
        t.write(buf + 256, text)
        io = (lib.SYS_read, fd, buf + 256, 32) if value is None else (lib.SYS_write, fd, buf + 256, len(text))
        done, _ = t.batch([io, (lib.SYS_close, fd)], must=False)
        if done < 0:
            raise CkptError(f"pid {t.pid}: remote {'read' if value is None else 'write'} of {NS_LAST_PID}: "
                            f"{os.strerror(-done)}")
        return int(t.read(buf + 256, done)) if value is None else value


def finish(t: Tracee, ns: Namespace) -> None:
    """What a namespace gets once every task in it exists: a pid namespace's last pid, so the
    next fork there gets the pid it would have had (every restored pid came by set_tid,
    which leaves the namespace's cursor alone)."""
    if ns.kind == lib.CLONE_NEWPID and ns.last_pid:
        _last_pid(t, ns.last_pid)


# --- restore -------------------------------------------------------------------------------

def _strings(t: Tracee, buf: int, size: int, *texts: str) -> list[int]:
    """NUL-terminated copies of the texts in the task's scratch area; their addresses."""
    raw = [x.encode(errors="surrogateescape") + b"\0" for x in texts]
    if sum(map(len, raw)) > size:
        raise CkptError(f"pid {t.pid}: {sum(map(len, raw))} bytes of names do not fit the scratch area")
    t.write(buf, b"".join(raw))
    at, out = buf, []
    for r in raw:
        out.append(at)
        at += len(r)
    return out


def restore(t: Tracee, ns: Namespace) -> None:
    """Give a namespace that task t's fork made the state the dumped one held."""
    size = 8192
    with t.scratch(size) as buf:
        if ns.kind == lib.CLONE_NEWUTS:
            for nr, name in ((lib.SYS_sethostname, ns.hostname), (lib.SYS_setdomainname, ns.domainname)):
                (at,) = _strings(t, buf, size, name)
                t.call(f"set name {name!r}", nr, at, len(name.encode(errors="surrogateescape")))
        elif ns.kind == lib.CLONE_NEWNET and ns.lo_up:
            _lo_flags(t, buf, _lo_flags(t, buf) | lib.IFF_UP)
        elif ns.kind == lib.CLONE_NEWNS:
            if ns.private:
                (root,) = _strings(t, buf, size, "/")
                t.call("mount(/, MS_REC|MS_PRIVATE)", lib.SYS_mount, 0, root, 0, MS_REC | MS_PRIVATE, 0)
            for m in ns.mounts:
                source, target, fstype, data = _strings(t, buf, size, m.source, m.mountpoint, m.fstype, m.data)
                t.call(f"mount({m.fstype} at {m.mountpoint})", lib.SYS_mount, source, target, fstype, m.flags, data)
