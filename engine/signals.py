"""Signal state, dump and restore side by side: every sigaction, the blocked mask and the
alternate signal stack (remote syscalls), and the queued signals (PTRACE_PEEKSIGINFO)."""
from __future__ import annotations

import os
import signal
import struct
from typing import Sequence

from engine.asleep import Sighand, reported_altstack
from engine.errors import CkptError
from engine.images.core_pb2 import Core, PendingSignal, SigAction, SigAltStack
from engine.mm import Layout
from engine.ptrace import Tracee
from native import ffi, lib

SYS_RT_SIGACTION, SYS_SIGALTSTACK = 13, 131
KSIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask (the kernel's layout)
STACK_T = struct.Struct("<Qi4xQ")  # ss_sp, ss_flags, ss_size
NSIG = 64
SIGSET = 8  # bytes of a kernel sigset on x86-64
SIGINFO = 128
SS_ONSTACK, SS_DISABLE = 1, 2
PEEK_BATCH = 32


def _call(t: Tracee, what: str, nr: int, *args: int) -> None:
    rc = t.syscall(nr, *args)
    if rc < 0:
        raise CkptError(f"pid {t.pid}: remote {what}: {os.strerror(-rc)}")


SIGNALS = [s for s in range(1, NSIG + 1) if s not in (signal.SIGKILL, signal.SIGSTOP)]


def dump(t: Tracee, kernel: Sighand | None = None) -> tuple[list[SigAction], int, SigAltStack]:
    """The task's sigactions (all but SIGKILL and SIGSTOP), blocked mask and sigaltstack:
    as the kernel keeps them, read for every process at once (engine.asleep.sighands), when
    given and t is the main thread; else one batch of remote calls writing side by side in the
    scratch page, one read."""
    if kernel is not None and t.pid == t.tgid:
        base, size, own = kernel.altstack
        flags = reported_altstack(base, size, own, t.saved.rsp)
        # The mask the task had: the tracer blocks everything while it works.
        return actions(kernel.actions), t.mask, SigAltStack(sp=base, flags=flags, size=size)
    with t.scratch() as buf:
        calls: list[tuple[int, ...]] = [(SYS_RT_SIGACTION, sig, 0, buf + i * KSIGACTION.size, SIGSET)
                                        for i, sig in enumerate(SIGNALS)]
        calls.append((SYS_SIGALTSTACK, 0, buf + len(SIGNALS) * KSIGACTION.size))
        t.batch(calls, [f"rt_sigaction({sig})" for sig in SIGNALS] + ["sigaltstack"])
        raw = t.read(buf, len(SIGNALS) * KSIGACTION.size + STACK_T.size)
    values = list(KSIGACTION.iter_unpack(raw[:len(SIGNALS) * KSIGACTION.size]))
    sp, flags, size = STACK_T.unpack_from(raw, len(SIGNALS) * KSIGACTION.size)
    # The mask the task had: the tracer blocks everything while it works.
    return [SigAction(sig=sig, handler=h, flags=f, restorer=r, mask=m) for sig, (h, f, r, m) in zip(SIGNALS, values)
            if (h, f, r, m) != DEFAULT], t.mask, SigAltStack(sp=sp, flags=flags, size=size)


DEFAULT = (0, 0, 0, 0)  # SIG_DFL, no flags, no restorer, nothing blocked: what the image leaves out
_CAUGHT = frozenset(SIGNALS)


def actions(by_number: list[tuple[int, int, int, int]]) -> list[SigAction]:
    """The image's sigactions from (handler, flags, restorer, mask) of signals 1..64: those not
    at the default (most of a task's 62 are: making a message of each cost ~0.15 ms a task)."""
    return [SigAction(sig=sig, handler=h, flags=f, restorer=r, mask=m)
            for sig, (h, f, r, m) in enumerate(by_number, 1) if (h, f, r, m) != DEFAULT and sig in _CAUGHT]


def pending(t: Tracee, process_queue: bool = True, own_queue: bool = True) -> list[PendingSignal]:
    """Every queued signal, thread queue then process queue (each unless told not to), with siginfo."""
    out: list[PendingSignal] = []
    buf = ffi.new("char[]", SIGINFO * PEEK_BATCH)
    for shared in [q for q, wanted in ((False, own_queue), (True, process_queue)) if wanted]:
        off = 0
        while True:
            args = ffi.new("struct ptrace_peeksiginfo_args *",
                           {"off": off, "flags": lib.PTRACE_PEEKSIGINFO_SHARED if shared else 0, "nr": PEEK_BATCH})
            n = t.request(lib.PTRACE_PEEKSIGINFO, "PEEKSIGINFO", args, buf)
            out += [PendingSignal(shared=shared, siginfo=bytes(ffi.buffer(buf + i * SIGINFO, SIGINFO)))
                    for i in range(n)]
            if n < PEEK_BATCH:
                break
            off += n
    return out


def restore(t: Tracee, lay: Layout, core: Core, inherited: Sequence[SigAction] = ()) -> None:
    """Sigactions and sigaltstack by remote calls, then the queued signals. The stub keeps every
    signal blocked (and the tracer too) until detach sets the dumped mask, so none is
    delivered while the task is being rebuilt. A fresh stub has every action at its default
    (the executor resets them before it parks), a task made by another one has the actions
    `inherited` from it: only the others are set, in one batch. A signal the image (or the
    inherited list) leaves out is at its default."""
    _flush(t, lay)
    have = {a.sig: (a.handler, a.flags, a.restorer, a.mask) for a in inherited}
    want = {a.sig: (a.handler, a.flags, a.restorer, a.mask) for a in core.sigactions}
    todo = [(sig, want.get(sig, DEFAULT)) for sig in sorted(have.keys() | want.keys())
            if want.get(sig, DEFAULT) != have.get(sig, DEFAULT)]
    if todo:
        t.write(lay.scratch, b"".join(KSIGACTION.pack(*action) for _, action in todo))
        t.batch([(SYS_RT_SIGACTION, sig, lay.scratch + i * KSIGACTION.size, 0, SIGSET) for i, (sig, _) in enumerate(todo)],
                [f"rt_sigaction({sig})" for sig, _ in todo])
    restore_thread(t, lay, core.altstack, list(core.pending))


def _flush(t: Tracee, lay: Layout) -> None:
    """Drop what the stub was sent while the plan ran (SIGCHLD of its helpers and zombies):
    the task must get back its own queue only."""
    queued = pending(t)
    if not queued:
        return
    t.write(lay.scratch, struct.pack("<QQQ", (1 << 64) - 1, 0, 0))  # every signal; timeout 0
    for _ in queued:
        if t.syscall(lib.SYS_rt_sigtimedwait, lay.scratch, 0, lay.scratch + 8, SIGSET) < 0:
            break


def altstack_call(buf: int) -> tuple[int, ...]:
    """The remote call that writes the calling thread's sigaltstack (a stack_t) at buf."""
    return (SYS_SIGALTSTACK, 0, buf)


def altstack(raw: bytes) -> SigAltStack:
    """The SigAltStack of the stack_t that altstack_call wrote."""
    sp, flags, size = STACK_T.unpack_from(raw)
    return SigAltStack(sp=sp, flags=flags, size=size)


def restore_thread(t: Tracee, lay: Layout, st: SigAltStack, queued: list[PendingSignal]) -> None:
    """One thread's sigaltstack and queued signals (remote calls in that thread)."""
    flags = st.flags & ~SS_ONSTACK  # on the stack at dump time: the kernel derives that from sp
    t.write(lay.scratch, STACK_T.pack(st.sp, flags, st.size) if not flags & SS_DISABLE
            else STACK_T.pack(0, SS_DISABLE, 0))
    _call(t, "sigaltstack", SYS_SIGALTSTACK, lay.scratch, 0)
    if not queued:
        return
    me = t.call("getpid", lib.SYS_getpid)  # as the task sees itself
    tid = t.call("gettid", lib.SYS_gettid)
    for p in queued:
        t.write(lay.scratch, p.siginfo)
        (sig,) = struct.unpack_from("<i", p.siginfo)
        if p.shared:
            _call(t, f"rt_sigqueueinfo({sig})", lib.SYS_rt_sigqueueinfo, me, sig, lay.scratch)
        else:
            _call(t, f"rt_tgsigqueueinfo({sig})", lib.SYS_rt_tgsigqueueinfo, me, tid, sig, lay.scratch)
