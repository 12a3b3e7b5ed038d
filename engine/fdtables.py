"""Fd tables shared by processes (clone with CLONE_FILES and without CLONE_VM). At dump,
kcmp(2) KCMP_FILES sorts the live tasks by table (in C: native/kcmp.c), so a group of
sharers is found in n log n calls. A task whose table is its parent's is marked `files_of_parent` in the tree image: the
plan forks it from its parent with CLONE_FILES, and only the parent's fds are restored. A
group is supported when it hangs off one member through parent links inside it, the shape
forks with CLONE_FILES make; any other is refused by name."""
from __future__ import annotations

import os

from engine.errors import CkptError, Unsupported
from native import ffi, lib

KCMP_FILES = 2  # uapi/linux/kcmp.h


def groups(pids: list[int], kind: int = KCMP_FILES) -> list[list[int]]:
    """These tasks grouped by the resource `kind` names, one list per resource they hold."""
    order = ffi.new("int[]", pids)
    group = ffi.new("int[]", len(pids))
    err = lib.ckpt_kcmp_groups(order, len(pids), kind, group)
    if err:
        raise CkptError(f"kcmp({kind}) over {len(pids)} tasks: {os.strerror(err)}")
    out: list[list[int]] = []
    for i in range(len(pids)):
        if i == 0 or group[i] != group[i - 1]:
            out.append([])
        out[-1].append(int(order[i]))
    return out


def of_parent(tasks: dict[int, tuple[int, int]]) -> set[int]:
    """The tasks whose fd table is their parent's (`tasks`: each live task's pid -> a thread of
    it we may kcmp, its parent's pid). Unsupported for a group of sharers not hanging off one
    of them."""
    task_of = {thread: pid for pid, (thread, _) in tasks.items()}
    out: set[int] = set()
    for threads in groups(list(task_of)):
        if len(threads) == 1:
            continue
        group = {task_of[t] for t in threads}
        heads = sorted(p for p in group if tasks[p][1] not in group)
        if len(heads) > 1:
            raise Unsupported(f"tasks {heads[0]} and {heads[1]} share one fd table (CLONE_FILES) while neither "
                              "descends from the other through tasks sharing it")
        out |= group - set(heads)
    return out
