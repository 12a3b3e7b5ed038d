"""Fd tables shared by processes (clone with CLONE_FILES and without CLONE_VM). At dump,
kcmp(2) KCMP_FILES sorts the live tasks by table, so a group of sharers is found in n log n
calls. A task whose table is its parent's is marked `files_of_parent` in the tree image: the
plan forks it from its parent with CLONE_FILES, and only the parent's fds are restored. A
group is supported when it hangs off one member through parent links inside it, the shape
forks with CLONE_FILES make; any other is refused by name."""
from __future__ import annotations

import functools
import os

from engine.errors import CkptError, Unsupported
from native import ffi, lib

KCMP_FILES = 2  # uapi/linux/kcmp.h


def _cmp(a: int, b: int) -> int:
    """kcmp's order of the fd tables of tasks a and b: -1, 0 or 1."""
    r = int(lib.syscall(lib.SYS_kcmp, ffi.cast("long", a), ffi.cast("long", b), ffi.cast("long", KCMP_FILES),
                        ffi.cast("long", 0), ffi.cast("long", 0)))
    if r < 0:
        raise CkptError(f"kcmp(KCMP_FILES) of tasks {a} and {b}: {os.strerror(ffi.errno)}")
    if r == 3:  # "not equal, but ordering information is unavailable"
        raise CkptError(f"kcmp(KCMP_FILES) of tasks {a} and {b} gives no order: this kernel hides pointers")
    return (0, -1, 1)[r]


def of_parent(tasks: dict[int, tuple[int, int]]) -> set[int]:
    """The tasks whose fd table is their parent's (`tasks`: each live task's pid -> a thread of
    it we may kcmp, its parent's pid). Unsupported for a group of sharers not hanging off one
    of them."""
    order = sorted(tasks, key=functools.cmp_to_key(lambda a, b: _cmp(tasks[a][0], tasks[b][0])))
    out: set[int] = set()
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and _cmp(tasks[order[i]][0], tasks[order[j]][0]) == 0:
            j += 1
        group = set(order[i:j])
        heads = sorted(p for p in group if tasks[p][1] not in group)
        if len(heads) > 1:
            raise Unsupported(f"tasks {heads[0]} and {heads[1]} share one fd table (CLONE_FILES) while neither "
                              "descends from the other through tasks sharing it")
        out |= group - set(heads)
        i = j
    return out
