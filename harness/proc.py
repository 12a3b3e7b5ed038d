"""Reading tasks from /proc, finding trees, killing and reaping them."""
from __future__ import annotations

import os
import signal
import time

from engine import proc as engine_proc
from engine.errors import ProcessGone
from engine.proc import TaskStat as Stat


def read_stat(pid: int) -> Stat | None:
    """Parse /proc/PID/stat, or None if the task is gone."""
    try:
        return engine_proc.stat(pid)
    except ProcessGone:
        return None


def all_stats() -> dict[int, Stat]:
    """Every task (thread-group leader) visible in /proc, by pid."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = read_stat(int(name))
            if st:
                out[st.pid] = st
    return out


def tree_of(root: int, stats: dict[int, Stat]) -> list[int]:
    """The root, its descendants, and every task of the root's session (orphans included)."""
    children: dict[int, list[int]] = {}
    for st in stats.values():
        children.setdefault(st.ppid, []).append(st.pid)
    seen: set[int] = set()
    todo = [root] if root in stats else []
    todo += [p for p, st in stats.items() if st.sid == root and p != root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, ()))
    return sorted(seen)


def inside(directory: str) -> list[int]:
    """Tasks whose cwd lies below `directory`: what a batch started, wherever it was reparented."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cwd = os.readlink(f"/proc/{name}/cwd")
            except OSError:
                continue
            if cwd == directory or cwd.startswith(directory + "/"):
                out.append(int(name))
    return out


def children(pid: int) -> list[int]:
    """Children of a task (no scan of all of /proc); none once it is gone."""
    try:
        return engine_proc.children(pid)
    except (ProcessGone, FileNotFoundError):
        return []


def status_fields(pid: int, tid: int | None = None) -> dict[str, str]:
    """/proc/PID/status (or a thread's) as {field: value}."""
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def nspid(pid: int) -> int:
    """The pid of a task in its innermost pid namespace."""
    try:
        return int(status_fields(pid)["NSpid"].split()[-1])
    except (OSError, KeyError, ValueError):
        return pid


def become_subreaper() -> None:
    """Orphans of our tests are reparented to us, so we can reap them and nothing escapes."""
    from native import check, lib

    check(lib.prctl(lib.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def _live(st: Stat) -> bool:
    """Not dead yet. A thread-group leader that exited shows Z while its other threads
    still run: /proc/PID/status counts them (a plain zombie says Threads: 1)."""
    if st.state not in ("Z", "X"):
        return True
    try:
        return int(status_fields(st.pid).get("Threads", "1")) > 1
    except (OSError, ValueError):
        return False


def alive(pid: int) -> bool:
    """True while the task (any of its threads) exists and is not a zombie."""
    st = read_stat(pid)
    return st is not None and _live(st)


def kill_trees(roots: list[int], rounds: int = 50) -> None:
    """SIGKILL every task of these trees, rescanning until none is left alive (forks race us)."""
    for _ in range(rounds):
        stats = all_stats()
        victims = {p for r in roots for p in tree_of(r, stats) if _live(stats[p])}
        victims.discard(os.getpid())
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)


def reap_children(exclude: set[int] = frozenset()) -> None:  # type: ignore[assignment]
    """Reap every zombie child of ours (orphans of tests reparented to us as subreaper).

    Only exited children are waited for, by pid, so subprocess's own children are untouched."""
    me = os.getpid()
    for st in all_stats().values():
        if st.ppid == me and st.state in ("Z", "X") and st.pid not in exclude:
            try:
                os.waitpid(st.pid, os.WNOHANG)
            except ChildProcessError:
                pass


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until these tasks are dead (zombies count as dead); return those still alive."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.005)
        left = [p for p in left if alive(p)]
    return left
