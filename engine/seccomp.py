"""Seccomp filters, dump and restore side by side. Filters are per thread: each thread points
at the newest filter of a chain it shares with the threads it was cloned from or that were
cloned from it (a tree over the process). Dumped per thread, oldest first, with
PTRACE_SECCOMP_GET_FILTER; restored by remote seccomp() calls in the rebuilt threads, each
filter installed once and inherited by the threads cloned after it (plan())."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from engine.errors import Unsupported, raise_for
from engine.images.task_pb2 import SeccompFilter
from engine.mm import Layout
from engine.ptrace import Tracee
from native import ffi, lib

# uapi/linux/seccomp.h
SECCOMP_MODE_STRICT, SECCOMP_MODE_FILTER, SECCOMP_SET_MODE_FILTER = 1, 2, 1
# uapi/linux/ptrace.h: struct seccomp_metadata {__u64 filter_off; __u64 flags;}
PTRACE_SECCOMP_GET_METADATA = 0x420D
SECCOMP_METADATA = struct.Struct("<QQ")
SOCK_FILTER = 8  # sizeof(struct sock_filter) (uapi/linux/filter.h)
SOCK_FPROG = struct.Struct("<H6xQ")  # struct sock_fprog: len, then the pointer at offset 8


def mode(tid: int, st: Mapping[str, str]) -> int:
    """The thread's seccomp mode from its /proc status; Unsupported for strict mode."""
    got = int(st.get("Seccomp", "0"))
    if got == SECCOMP_MODE_STRICT:
        # Strict mode allows only read/write/exit/sigreturn: a restored task cannot be given
        # back the rest of its state by itself, and the mode cannot be set from outside.
        raise Unsupported(f"pid {tid}: seccomp strict mode (SECCOMP_MODE_STRICT)")
    return got


def _ptrace(tid: int, request: int, name: str, addr: int, data: object = ffi.NULL) -> int:
    """A raw request on a thread this process has seized."""
    rc = int(lib.ptrace_call(request, tid, ffi.cast("void *", addr), data))
    if rc < 0:
        raise_for(tid, name, ffi.errno)
    return rc


def dump(tid: int, st: Mapping[str, str]) -> list[SeccompFilter]:
    """A seized thread's filters, oldest first; st: its /proc status."""
    if mode(tid, st) != SECCOMP_MODE_FILTER:
        return []
    out = []
    # Index 0 is the oldest filter: get_nth_filter() in kernel/seccomp.c counts from the root
    # of the chain, whatever ptrace(2) says (checked here: the first-installed comes first).
    for i in range(int(st.get("Seccomp_filters", "0"))):
        n = _ptrace(tid, lib.PTRACE_SECCOMP_GET_FILTER, "SECCOMP_GET_FILTER", i)
        prog = ffi.new("char[]", n * SOCK_FILTER)
        _ptrace(tid, lib.PTRACE_SECCOMP_GET_FILTER, "SECCOMP_GET_FILTER", i, prog)
        meta = ffi.new("char[]", SECCOMP_METADATA.pack(i, 0))
        _ptrace(tid, PTRACE_SECCOMP_GET_METADATA, "SECCOMP_GET_METADATA", SECCOMP_METADATA.size, meta)
        _, flags = SECCOMP_METADATA.unpack(ffi.buffer(meta, SECCOMP_METADATA.size))
        out.append(SeccompFilter(program=bytes(ffi.buffer(prog, n * SOCK_FILTER)), flags=flags))
    return out


def install(t: Tracee, lay: Layout, f: SeccompFilter, index: int) -> None:
    """Install one filter in the calling thread (index: its place in the thread's list, for
    errors). Our own later remote calls are not filtered: tasks are seized, and threads made,
    with PTRACE_O_SUSPEND_SECCOMP (ptrace(2)); installing without no_new_privs needs
    CAP_SYS_ADMIN, which the stub has until its credentials are restored."""
    prog = lay.scratch + SOCK_FPROG.size
    t.write(lay.scratch, SOCK_FPROG.pack(len(f.program) // SOCK_FILTER, prog) + f.program)
    t.call(f"seccomp(SET_MODE_FILTER, filter {index})", lib.SYS_seccomp, SECCOMP_SET_MODE_FILTER, f.flags, lay.scratch)


@dataclass(frozen=True, slots=True)
class Clone:
    """Thread `by` makes thread `tid`, which inherits the filters `by` has at that moment."""

    by: int
    tid: int


@dataclass(frozen=True, slots=True)
class Install:
    """Thread `by` installs the filter at `index` of its own list."""

    by: int
    index: int


Step = Union[Clone, Install]


def _key(f: SeccompFilter) -> tuple[bytes, int]:
    return f.program, f.flags


def plan(lists: Mapping[int, Sequence[SeccompFilter]], main: int) -> list[Step]:
    """The clones and installs, in order, that give every thread of `lists` (by tid; `main`
    exists already, the others are made) its list of filters, each installed once for all the
    threads whose lists agree up to it. Filters are told apart by content (program and flags):
    the kernel shows no filter identity, so equal filters over equal older ones are taken to
    be one, inherited; that keeps a later SECCOMP_FILTER_FLAG_TSYNC working as it did."""
    keys = {tid: [_key(f) for f in fs] for tid, fs in lists.items()}
    steps: list[Step] = []
    # Work items: a made thread that has installed the first `depth` filters of its list, and
    # the threads not made yet whose lists begin with those same filters.
    work = [(main, 0, [tid for tid in lists if tid != main])]
    while work:
        maker, depth, group = work.pop()
        mine = keys[maker]
        while True:
            ahead: list[int] = []
            branches: dict[tuple[bytes, int], list[int]] = {}
            for tid in group:
                if len(keys[tid]) == depth:
                    steps.append(Clone(maker, tid))  # its list ends here
                elif depth < len(mine) and keys[tid][depth] == mine[depth]:
                    ahead.append(tid)  # goes on with the maker
                else:
                    branches.setdefault(keys[tid][depth], []).append(tid)
            for first, *rest in branches.values():
                # Made here, it installs the filter of its branch and makes the rest later.
                steps += [Clone(maker, first), Install(first, depth)]
                work.append((first, depth + 1, rest))
            if depth == len(mine):
                break  # nothing is ahead: a thread going on would have had a longer list
            steps.append(Install(maker, depth))
            depth, group = depth + 1, ahead
    return steps
