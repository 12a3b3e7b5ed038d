"""Run a validated plan for real with the native executor: the tree's processes exist, with
their pids, parents, groups, sessions and zombies; live tasks are parked stubs. A failure
kills and reaps every process the plan made."""
from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path
from typing import Any

from engine import proc
from engine.errors import CkptError, ProcessGone
from engine.plan import NEW_INIT, RESTORER, Exit, Fork, Plan, Reap, Setpgid, Setsid, Subreaper, Table, Wait, op_text
import native
from native import ffi, lib

TIMEOUT_MS = 30_000


def _actors(plan: Plan) -> list[int]:
    """Actor keys in executor order: the restorer first; a forked task with no operations of
    its own is an actor too."""
    forked = {op.pid for ops in plan.ops.values() for op in ops if isinstance(op, Fork)}
    return [RESTORER] + sorted((set(plan.ops) | forked) - {RESTORER})


def _in_new_pidns(plan: Plan) -> Plan:
    """The plan run under an init of ours in a new pid namespace: the init does what the
    restorer did (forks the roots, reaps its helpers)."""
    ops = dict(plan.ops)
    ops[NEW_INIT] = ops.pop(RESTORER, [])
    ops[RESTORER] = [Fork(NEW_INIT)]
    return Plan(ops, plan.helpers | {NEW_INIT})


def _encode(plan: Plan, table: Table, order: list[int]) -> tuple[Any, Any]:
    """The plan as the executor's arrays of actors and operations."""
    index = {key: i for i, key in enumerate(order)}
    actors = ffi.new("struct ckpt_plan_actor[]", len(order))
    flat: list[tuple[int, int, int]] = []
    depth = _depths(plan, table)
    shift = 1 if NEW_INIT in plan.ops else 0  # levels below ours the table's outermost is
    for i, key in enumerate(order):
        ops = plan.ops.get(key, [])
        actors[i].first, actors[i].nops = len(flat), len(ops)
        row = table.rows.get(key)
        levels = list(reversed(row.nspids or (key,))) if row else list(reversed(table.levels(key))) if key > 0 else []
        if len(levels) > lib.CKPT_PLAN_LEVELS:
            raise CkptError(f"pid {key} is {len(levels)} pid namespaces deep: at most {lib.CKPT_PLAN_LEVELS}")
        actors[i].nlevels = len(levels)
        actors[i].flags = (row.ns_flags | (lib.CLONE_FILES if row.files_of_parent else 0)) if row else 0
        actors[i].depth = depth.get(key, 0) + shift
        if key == NEW_INIT:
            actors[i].flags, actors[i].depth, actors[i].init = lib.CLONE_NEWPID | lib.CLONE_NEWNS, 1, 1
        if row and row.zombie:
            actors[i].blocked, actors[i].ignored, actors[i].caught = row.sigmasks
            actors[i].comm = row.comm.encode(errors="replace")[:15]
        for j, tid in enumerate(levels):
            actors[i].tids[j] = tid
        for op in ops:
            flat.append(_code(op, index, _seen_by(op, key, depth.get(key, 0), table)))
    raw = ffi.new("struct ckpt_plan_op[]", max(len(flat), 1))
    for j, (kind, a, b) in enumerate(flat):
        raw[j].kind, raw[j].a, raw[j].b = kind, a, b
    return actors, raw


def _depths(plan: Plan, table: Table) -> dict[int, int]:
    """Pid namespaces below ours each actor lives in: a task's from its pids, a helper's
    from its creator (forks come before what the forked run)."""
    depth = {key: len(row.nspids) - 1 for key, row in table.rows.items() if row.nspids}
    pending = [RESTORER]
    while pending:
        actor = pending.pop()
        for op in plan.ops.get(actor, []):
            if isinstance(op, Fork):
                depth.setdefault(op.pid, depth.get(actor, 0))
                pending.append(op.pid)
    return depth


def _seen_by(op: object, key: int, depth: int, table: Table) -> int:
    """The group a Setpgid names, as the actor sees it from its pid namespace (0: its own)."""
    if not isinstance(op, Setpgid) or op.pgid == key:
        return 0
    levels = table.levels(op.pgid)
    if depth >= len(levels):
        raise CkptError(f"task {key} joins group {op.pgid}, which has no number in its pid namespace")
    return levels[depth]


def _code(op: object, index: dict[int, int], pgid: int) -> tuple[int, int, int]:
    match op:
        case Fork(pid, clone_parent):
            return lib.CKPT_OP_FORK, index[pid], int(clone_parent)
        case Setsid():
            return lib.CKPT_OP_SETSID, 0, 0
        case Setpgid():
            return lib.CKPT_OP_SETPGID, pgid, 0
        case Subreaper(on):
            return lib.CKPT_OP_SUBREAPER, int(on), 0
        case Wait(pid, step):
            return lib.CKPT_OP_WAIT, index[pid], step
        case Exit(status):
            return lib.CKPT_OP_EXIT, status, 0
        case Reap(pid):
            return lib.CKPT_OP_REAP, index[pid], 0
    raise TypeError(op)


def _stub() -> Any:
    """The stub program our children exec (native/stub.c, built beside the cffi module), or
    NULL when it is missing: the plan then runs in forks of this interpreter, only slower."""
    path = Path(native.__file__).with_name("ckpt-stub")
    return ffi.new("char[]", os.fsencode(path)) if os.access(path, os.X_OK) else ffi.NULL


def run(plan: Plan, table: Table, new_pidns: bool = False, keep: int = -1) -> dict[int, int]:
    """Build the tree (under an init of ours in a new pid namespace if asked: the table's
    pids are then that namespace's); return every actor's pid (as we see it) by key. `keep`:
    an fd of ours every actor keeps (at the same number)."""
    if new_pidns:
        plan = _in_new_pidns(plan)
    order = _actors(plan)
    actors, ops = _encode(plan, table, order)
    n = len(order)
    # Orphans of the plan's helpers that belong to no task of the tree come to us, and so
    # does everything a failure leaves behind: we reap it.
    was = ffi.new("int *")
    lib.prctl(lib.PR_GET_CHILD_SUBREAPER, int(ffi.cast("uintptr_t", was)), 0, 0, 0)
    lib.prctl(lib.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        rc = lib.ckpt_plan_run(actors, n, ops, len(ops), TIMEOUT_MS, _stub(), keep)
        pids = {key: int(actors[i].pid) for i, key in enumerate(order)}
        try:
            if rc == 0:
                _await_zombies(plan, pids)
                return pids
            if rc == -1:
                why = _failure(plan, order, actors)
            elif rc == -errno.ETIMEDOUT:
                why = f"the plan did not finish in {TIMEOUT_MS} ms"
            else:
                why = f"cannot run it: {os.strerror(-rc)}"
            raise CkptError(f"restore plan: {why}")
        except BaseException:
            kill(pids)  # while we are still the subreaper of what it leaves
            raise
    finally:
        lib.prctl(lib.PR_SET_CHILD_SUBREAPER, was[0], 0, 0, 0)


def _failure(plan: Plan, order: list[int], actors: Any) -> str:
    """The first actor that failed, its step and why, in one line."""
    for i, key in enumerate(order):
        a = actors[i]
        if a.err and a.step >= len(plan.ops[key]):
            return f"{plan.who(key)}, setting up its namespaces: {os.strerror(a.err)}"
        if a.err:
            op = plan.ops[key][a.step]
            if isinstance(op, Fork) and a.err == errno.EEXIST:
                return f"pid {op.pid} is already taken: cannot restore it with its pid"
            return f"{plan.who(key)}, step {a.step + 1} ({op_text(op)}): {os.strerror(a.err)}"
    return "an actor failed without saying why"


def _await_zombies(plan: Plan, pids: dict[int, int]) -> None:
    """Every actor that ends by exiting is a zombie (or reaped) before its state is read."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    for key, ops in plan.ops.items():
        if ops and isinstance(ops[-1], Exit):
            while not _dead(pids[key]):
                if time.monotonic() > deadline:
                    raise CkptError(f"restore plan: {key} did not exit")
                time.sleep(0.0005)


def _state(pid: int) -> str:
    """Its /proc state letter, "" when the pid is free."""
    try:
        return proc.stat(pid).state
    except ProcessGone:
        return ""


def _dead(pid: int) -> bool:
    """Exited: a zombie, or gone."""
    return _state(pid) in ("", "Z", "X")


def dead_but_there(pid: int) -> bool:
    """A zombie (or a task being reaped) still holding its pid."""
    return _state(pid) in ("Z", "X")


def kill(pids: dict[int, int]) -> None:
    """SIGKILL every process the plan made and reap what comes to us (its roots, and orphans
    since we were their subreaper); the rest is reaped by its own subreaper."""
    made = {p for k, p in pids.items() if k != RESTORER and p > 1 and p != os.getpid()}
    for pid in made:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while made and time.monotonic() < deadline:
        for pid in list(made):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG | getattr(os, "__WALL", 0x40000000))
            except ChildProcessError:
                # Not ours: gone, or a zombie its own subreaper collects; else its parent
                # (killed too) is still exiting and it comes to us next.
                if _dead(pid):
                    made.discard(pid)
                continue
            if done:
                made.discard(pid)
        if made:
            time.sleep(0.001)
