"""The visible-state oracle: snapshot every task of every test tree from /proc, and diff.

Numbers that change legitimately across C/R (pipe and socket inodes, namespace ids) are
replaced by labels given in a fixed traversal order, so two snapshots compare by shape:
the same pipe shared by the same fds, the same namespaces shared by the same tasks.
Pids are compared as seen inside the test's pid namespace (NSpid, NSpgid, NSsid).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from harness import proc

NS_TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "uts", "user")
_INODE = re.compile(r"^(pipe|socket|anon_inode|net|ipc|mnt|pid|uts|user|cgroup|time|pid_for_children):\[(\d+)\]$")
_STATES = {"Z": "zombie", "T": "stopped", "t": "traced", "X": "dead"}


@dataclass
class _Labels:
    """Stable names for kernel object ids, in order of first sight."""

    host: dict[str, str]
    seen: dict[str, str] = field(default_factory=dict)

    def __call__(self, target: str) -> str:
        m = _INODE.match(target)
        if not m:
            return target
        if target in self.host:
            return self.host[target]
        if target not in self.seen:
            n = sum(1 for v in self.seen.values() if v.startswith(m.group(1) + ":"))
            self.seen[target] = f"{m.group(1)}:#{n + 1}"
        return self.seen[target]


def _host_namespaces() -> dict[str, str]:
    """Our own namespaces are named "type:host": tests outside private namespaces share them."""
    out = {}
    for t in NS_TYPES:
        try:
            out[os.readlink(f"/proc/self/ns/{t}")] = f"{t}:host"
        except OSError:
            pass
    return out


def _innermost(fields: dict[str, str], key: str, fallback: str) -> int:
    value = fields.get(key) or fields.get(fallback, "0")
    return int(value.split()[-1])


def _maps(pid: int) -> list[str]:
    """/proc/PID/maps with adjacent pieces of one area merged (the kernel may split or merge them)."""
    out: list[list[Any]] = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            perms, offset = parts[1], int(parts[2], 16)
            path = parts[5].strip() if len(parts) > 5 else ""
            prev = out[-1] if out else None
            if (prev and prev[1] == start and prev[2] == perms and prev[4] == path
                    and (not path.startswith("/") or prev[3] + (prev[1] - prev[0]) == offset)):
                prev[1] = end
                continue
            out.append([start, end, perms, offset, path])
    return [f"{s:x}-{e:x} {p} {path}" + (f" @{o:x}" if path.startswith("/") else "")
            for s, e, p, o, path in out]


def _fds(pid: int, label: _Labels) -> list[str]:
    out = []
    base = f"/proc/{pid}/fd"
    for name in sorted(os.listdir(base), key=int):
        try:
            target = label(os.readlink(f"{base}/{name}"))
            with open(f"/proc/{pid}/fdinfo/{name}") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
        except FileNotFoundError:
            continue
        out.append(f"{name} {target} flags={info.get('flags', '?').strip()} pos={info.get('pos', '?').strip()}")
    return out


def _task(pid: int, to_vpid: dict[int, int], aspects: tuple[str, ...], label: _Labels) -> dict[str, Any]:
    """One task's visible state, limited to the aspects asked for."""
    st = proc.status_fields(pid)
    state: dict[str, Any] = {}
    if "tree" in aspects:
        ppid = int(st.get("PPid", "0"))
        state["tree"] = {
            "ppid": to_vpid.get(ppid, "outside"),
            "pgid": _innermost(st, "NSpgid", "Tgid"),
            "sid": _innermost(st, "NSsid", "Tgid"),
            "state": _STATES.get(st.get("State", "?")[:1], "alive"),
        }
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")) if os.path.isdir(f"/proc/{pid}/task") else []
    if "threads" in aspects:
        state["threads"] = sorted(proc.nspid(pid) if t == pid else _thread_vtid(pid, t) for t in tids)
    if "sigmask" in aspects:
        state["sigmask"] = {
            "ignored": st.get("SigIgn"),
            "caught": st.get("SigCgt"),
            "blocked": [_thread_field(pid, t, "SigBlk") for t in tids],
        }
    zombie = st.get("State", "")[:1] == "Z"
    if "maps" in aspects and not zombie:
        state["maps"] = _maps(pid)
    if "fds" in aspects and not zombie:
        state["fds"] = _fds(pid, label)
    if "fs" in aspects and not zombie:
        state["fs"] = {"cwd": os.readlink(f"/proc/{pid}/cwd"), "root": os.readlink(f"/proc/{pid}/root")}
    if "sched" in aspects and not zombie:
        state["sched"] = {"cpus": [_thread_field(pid, t, "Cpus_allowed_list") for t in tids]}
    if "ns" in aspects and not zombie:
        state["ns"] = {t: label(os.readlink(f"/proc/{pid}/ns/{t}")) for t in NS_TYPES
                       if os.path.exists(f"/proc/{pid}/ns/{t}")}
    return state


def _thread_vtid(pid: int, tid: int) -> int:
    try:
        return _innermost(proc.status_fields(pid, tid), "NSpid", "Pid")
    except OSError:
        return -1


def _thread_field(pid: int, tid: int, key: str) -> str:
    try:
        return proc.status_fields(pid, tid).get(key, "?")
    except OSError:
        return "gone"


Snapshot = dict[str, dict[int, dict[str, Any]]]


def capture(roots: list[tuple[str, int, tuple[str, ...]]]) -> Snapshot:
    """Snapshot each (test name, root pid, aspects) tree: {test: {vpid: state}}."""
    stats = proc.all_stats()
    trees = {name: proc.tree_of(root, stats) for name, root, _ in roots}
    to_vpid = {pid: proc.nspid(pid) for pids in trees.values() for pid in pids}
    label = _Labels(_host_namespaces())
    snap: Snapshot = {}
    for name, _root, aspects in roots:
        tasks: dict[int, dict[str, Any]] = {}
        for pid in trees[name]:
            try:
                tasks[to_vpid[pid]] = _task(pid, to_vpid, aspects, label)
            except (FileNotFoundError, ProcessLookupError):
                continue
        snap[name] = tasks
    return snap


def _diff_value(where: str, before: Any, after: Any, out: list[str]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            _diff_value(f"{where}.{key}", before.get(key), after.get(key), out)
    elif isinstance(before, list) and isinstance(after, list) and all(isinstance(x, str) for x in before + after):
        gone = [x for x in before if x not in after]
        new = [x for x in after if x not in before]
        out.extend(f"{where}: - {x}" for x in gone)
        out.extend(f"{where}: + {x}" for x in new)
        if not gone and not new:
            out.append(f"{where}: order changed")
    else:
        out.append(f"{where}: {before!r} -> {after!r}")


def diff(before: dict[int, dict[str, Any]], after: dict[int, dict[str, Any]]) -> list[str]:
    """Lines saying how one test's tree changed; empty when it did not."""
    out: list[str] = []
    if sorted(before) != sorted(after):
        out.append(f"tasks: {sorted(before)} -> {sorted(after)}")
    for vpid in sorted(set(before) & set(after)):
        _diff_value(f"pid {vpid}", before[vpid], after[vpid], out)
    return out
