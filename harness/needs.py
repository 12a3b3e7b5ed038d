"""Run-time probes for what a spec `needs`: each returns None when present, else why not."""
from __future__ import annotations

import errno
import gzip
import os
import socket
import tempfile
from functools import lru_cache
from typing import Callable

Probe = Callable[[], "str | None"]


def _syscall_ok(name: str, *args: int) -> str | None:
    """Probe a syscall: any answer but ENOSYS (and EPERM from a seccomp policy) means present."""
    from native import ffi, lib

    nr = getattr(lib, f"SYS_{name}")
    rc = lib.syscall(nr, *[ffi.cast("long", a) for a in args])
    if rc >= 0:
        if name in ("io_uring_setup", "userfaultfd", "fanotify_init", "pidfd_open"):
            os.close(rc)
        return None
    err = ffi.errno
    if err in (errno.ENOSYS, errno.EPERM):
        return f"{name}(2) fails with {errno.errorcode.get(err, err)}"
    return None


@lru_cache(maxsize=1)
def _kconfig() -> dict[str, str]:
    """The running kernel's config from /proc/config.gz, when it is there."""
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line and not line.startswith("#"))
    except OSError:
        return {}


def _ipv6() -> str | None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as e:
        return f"no IPv6 loopback: {e.strerror}"
    return None


def _io_uring() -> str | None:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            if f.read().strip() == "2":
                return "io_uring is disabled (kernel.io_uring_disabled=2)"
    except OSError:
        pass
    from native import ffi, lib

    params = ffi.new("char[120]")  # struct io_uring_params, zeroed
    rc = lib.syscall(lib.SYS_io_uring_setup, ffi.cast("long", 1), ffi.cast("long", ffi.cast("intptr_t", params)))
    if rc < 0:
        return f"io_uring_setup(2) fails: {os.strerror(ffi.errno)}"
    os.close(rc)
    return None


def _o_direct() -> str | None:
    with tempfile.TemporaryDirectory(prefix="zdtm-probe-") as d:
        try:
            fd = os.open(os.path.join(d, "f"), os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
        except OSError as e:
            return f"O_DIRECT not supported on {tempfile.gettempdir()}: {e.strerror}"
        os.close(fd)
    return None


def _file(path: str, what: str) -> Probe:
    return lambda: None if os.path.exists(path) else f"{what} missing ({path})"


def _veth() -> str | None:
    cfg = _kconfig()
    if cfg:
        return None if cfg.get("CONFIG_VETH") in ("y", "m") else "kernel built without CONFIG_VETH"
    return None if os.path.exists("/sys/module/veth") else "veth driver not loaded"


def _thp() -> str | None:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "transparent huge pages are off" if "[never]" in f.read() else None
    except OSError:
        return "no transparent huge page support"


def _avx() -> str | None:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return None if " avx " in line + " " else "the CPU has no AVX"
    return "no CPU flags in /proc/cpuinfo"


def _leases() -> str | None:
    try:
        with open("/proc/sys/fs/leases-enable") as f:
            return None if f.read().strip() == "1" else "file leases are disabled (fs.leases-enable=0)"
    except OSError:
        return "no fs.leases-enable"


def _seccomp() -> str | None:
    with open("/proc/self/status") as f:
        return None if "Seccomp:" in f.read() else "kernel without seccomp"


def _memfd() -> str | None:
    try:
        os.close(os.memfd_create("zdtm-probe"))
    except OSError as e:
        return f"memfd_create fails: {e.strerror}"
    return None


PROBES: dict[str, Probe] = {
    "ipv6": _ipv6,
    "io_uring": _io_uring,
    "userfaultfd": lambda: _syscall_ok("userfaultfd", os.O_CLOEXEC),
    "fanotify": lambda: _syscall_ok("fanotify_init", 0, os.O_RDONLY),
    "posix_mq": _file("/proc/sys/fs/mqueue", "POSIX message queues"),
    "sysv_ipc": _file("/proc/sysvipc", "SysV IPC"),
    "o_direct": _o_direct,
    "memfd": _memfd,
    "pidfd": lambda: _syscall_ok("pidfd_open", os.getpid(), 0),
    "seccomp": _seccomp,
    "veth": _veth,
    "thp": _thp,
    "rseq": lambda: _syscall_ok("rseq", 0, 0, 0, 0),
    "avx": _avx,
    "leases": _leases,
    "timens": _file("/proc/self/ns/time", "time namespaces"),
}


@lru_cache(maxsize=None)
def missing(need: str) -> str | None:
    """Why `need` is not available on this machine, or None when it is."""
    return PROBES[need]()
