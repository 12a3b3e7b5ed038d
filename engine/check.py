"""`ckpt check`: probe each kernel interface the engine uses, for real, on this kernel."""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from typing import Any, Callable

from native import ffi, lib

Probe = Callable[[], "str | None"]


def _errno_of(rc: int) -> int:
    return 0 if rc >= 0 else int(ffi.errno)


def _syscall(nr: int, *args: int) -> int:
    return int(lib.syscall(nr, *[ffi.cast("long", a) for a in args]))


def _present(name: str, nr: int, *args: int, absent: tuple[int, ...] = (errno.ENOSYS,)) -> str | None:
    """Any answer but ENOSYS means the syscall exists (bad arguments are on purpose)."""
    rc = _syscall(nr, *args)
    if rc >= 0 and name in ("pidfd_open", "userfaultfd"):
        os.close(rc)
    err = _errno_of(rc)
    return f"{name}: {os.strerror(err)}" if err in absent else None


def _on_tracee(what: Callable[[Any, int], "str | None"]) -> str | None:
    """Run a probe against a seized child (a sleeping interpreter), then let it go and kill it."""
    from engine.ptrace import Tracee

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        t = Tracee(child.pid)
        try:
            return what(t, child.pid)
        finally:
            t.detach(own_restart_block=True)
    except Exception as e:  # noqa: BLE001 - the probe reports any failure as missing
        return str(e)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def _remote_getpid(t: Any, pid: int) -> str | None:
    """Run getpid() in the child from its vDSO."""
    got = t.syscall(39)
    return None if got == pid else f"remote getpid() returned {got}, not {pid}"


def _rseq_config(t: Any, pid: int) -> str | None:
    """Ask for the child's rseq registration (glibc registers one)."""
    conf = ffi.new("char[32]")  # struct ptrace_rseq_configuration
    rc = lib.ptrace_call(lib.PTRACE_GET_RSEQ_CONFIGURATION, pid, ffi.cast("void *", 32), conf)
    return None if rc > 0 else f"PTRACE_GET_RSEQ_CONFIGURATION: {os.strerror(ffi.errno)}"


def _mm_map() -> str | None:
    size = ffi.new("unsigned int *")
    rc = lib.prctl(lib.PR_SET_MM, lib.PR_SET_MM_MAP_SIZE, int(ffi.cast("unsigned long", size)), 0, 0)
    if rc != 0:
        return f"prctl(PR_SET_MM_MAP_SIZE): {os.strerror(ffi.errno)}"
    return None if size[0] == 104 else f"struct prctl_mm_map is {size[0]} bytes here, we know 104"


def _pagemap_scan() -> str | None:
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        arg = ffi.new("struct pm_scan_arg *", {"size": ffi.sizeof("struct pm_scan_arg")})
        rc = lib.ioctl(fd, lib.PAGEMAP_SCAN, arg)
        return f"PAGEMAP_SCAN: {os.strerror(ffi.errno)}" if rc < 0 and ffi.errno == errno.ENOTTY else None
    finally:
        os.close(fd)


def _sock_diag() -> str | None:
    try:
        socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4).close()  # NETLINK_SOCK_DIAG
    except OSError as e:
        return f"NETLINK_SOCK_DIAG: {e.strerror}"
    return None


def _tcp_repair() -> str | None:
    with socket.socket() as s:
        try:
            s.setsockopt(socket.IPPROTO_TCP, 19, 1)  # TCP_REPAIR
        except OSError as e:
            return f"TCP_REPAIR: {e.strerror}"
    return None


def _bpf_task_iter() -> str | None:
    """Read our own user registers through a BPF task iterator (engine.asleep needs it)."""
    from engine.bpf import Read, read_task

    try:
        (regs,) = read_task(os.getpid(), [Read((0,), 8, regs=True)])
    except Exception as e:  # noqa: BLE001 - the probe reports any failure as missing
        return str(e)
    return None if len(regs) == 8 else "a BPF task iterator read nothing"


PROBES: dict[str, Probe] = {
    "ptrace seize, interrupt, remote syscall in the vDSO": lambda: _on_tracee(_remote_getpid),
    "PTRACE_GET_RSEQ_CONFIGURATION": lambda: _on_tracee(_rseq_config),
    "process_vm_readv/writev": lambda: _present("process_vm_readv", lib.SYS_process_vm_readv, 0, 0, 0, 0, 0, 0),
    "pidfd_open": lambda: _present("pidfd_open", lib.SYS_pidfd_open, os.getpid(), 0),
    "pidfd_getfd": lambda: _present("pidfd_getfd", lib.SYS_pidfd_getfd, -1, 0, 0),
    "clone3 with set_tid": lambda: _present("clone3", lib.SYS_clone3, 0, 0),
    "kcmp": lambda: _present("kcmp", lib.SYS_kcmp, os.getpid(), os.getpid(), 0, 0, 0),
    "prctl PR_SET_MM_MAP": _mm_map,
    "userfaultfd": lambda: _present("userfaultfd", lib.SYS_userfaultfd, os.O_CLOEXEC),
    "PAGEMAP_SCAN": _pagemap_scan,
    "sock_diag netlink": _sock_diag,
    "TCP repair": _tcp_repair,
    "BPF task iterator, BTF (tasks asleep in vfork)": _bpf_task_iter,
}


def run() -> dict[str, str | None]:
    """Every probe's answer: None when present, else why not."""
    return {name: probe() for name, probe in PROBES.items()}
