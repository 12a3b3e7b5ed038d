"""A task asleep in vfork (or clone with CLONE_VFORK) until its child execs or exits. No ptrace
stop reaches it there: the kernel waits killable (wait_for_vfork_done, kernel/fork.c), so a
PTRACE_INTERRUPT stays queued, PTRACE_GETREGSET fails with ESRCH, and one seized cannot even be
detached (ESRCH) while its tracer lives. So what ptrace or its own syscalls would tell is read
from its kernel structures (engine.bpf, offsets from BTF): its user registers as the syscall
entry saved them, fs/gs, the extended FPU state as PTRACE_GETREGSET(NT_X86_XSTATE) would give it,
rseq, sigactions, sigaltstack, pdeathsig, clear_child_tid, securebits, the subreaper flag and
whether an itimer is armed. The registers are checked against /proc/PID/syscall."""
from __future__ import annotations

import dataclasses
import functools
import os
import struct
from dataclasses import dataclass
from typing import Any

from engine import bpf, btf, proc
from engine.bpf import Read, read_task
from engine.errors import CkptError
from native import ffi, lib

NSIG = 64
PT_REGS = 21  # u64 words of struct pt_regs, in struct user_regs_struct's order (r15 ... ss)
SIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask (struct k_sigaction, x86-64)
# The sa_flags rt_sigaction reports (UAPI_SA_FLAGS, kernel/signal.c: do_sigaction): the kernel
# keeps its own bits there too (SA_IMMUTABLE). SIGINFO NOCLDSTOP NOCLDWAIT ONSTACK RESTART
# NODEFER RESETHAND EXPOSE_TAGBITS RESTORER.
UAPI_SA_FLAGS = 0x4 | 0x1 | 0x2 | 0x08000000 | 0x10000000 | 0x40000000 | 0x80000000 | 0x800 | 0x04000000
HRTIMER_STATE_ENQUEUED = 1  # include/linux/hrtimer.h
SS_DISABLE, SS_ONSTACK, SS_AUTODISARM = 2, 1, 1 << 31
# The legacy (FXSAVE) area and the XSAVE header (Intel SDM vol. 1, 13.4): byte ranges.
FP_UPTO_MXCSR, MXCSR, ST_SPACE, XMM_SPACE, SW_BYTES, HEADER, EXTENDED = (0, 24), (24, 32), (32, 160), \
    (160, 416), (464, 512), 512, 576
FP, SSE, YMM, PKRU = 1 << 0, 1 << 1, 1 << 2, 9
FCW_INIT, MXCSR_INIT = 0x037F, 0x1F80
COMPACTED = 1 << 63  # xcomp_bv: the compacted format of XSAVES/XSAVEC


@dataclass(frozen=True, slots=True)
class Asleep:
    """What the task's own syscalls or ptrace would have told, read from the kernel."""

    regs: Any  # struct user_regs_struct, as PTRACE_GETREGSET(NT_PRSTATUS) gives it
    xstate: bytes  # as PTRACE_GETREGSET(NT_X86_XSTATE) gives it
    rseq: tuple[int, int, int]  # area, size, signature (0, 0, 0: none)
    actions: list[tuple[int, int, int, int]]  # for signals 1..64: handler, flags, restorer, mask
    altstack: tuple[int, int, int]  # sp, flags, size as sigaltstack() reports them
    pdeathsig: int
    clear_tid: int
    securebits: int
    subreaper: bool
    itimer: str  # the first armed itimer ("real", "virt", "prof"), "" when none


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each thing lies, from this kernel's BTF."""

    thread: int  # task_struct.thread
    thread_size: int
    thread_fields: dict[str, int]  # fsbase, gsbase, es, ds, fsindex, gsindex, pkru (when there)
    fpstate: tuple[int, ...]  # path to the task's struct fpstate (pointer followed)
    fpstate_regs: int
    task: dict[str, int]  # rseq, rseq_len, rseq_sig, sas_ss_sp, sas_ss_size, sas_ss_flags, pdeath_signal, ...
    pid: int  # task_struct.pid
    securebits: tuple[int, int]
    actions: tuple[int, int]
    subreaper: tuple[int, int, int]  # path and bit
    real_timer_state: tuple[int, int]
    itimers: tuple[int, int]
    real_incr: tuple[int, int]  # signal->it_real_incr
    posix_timers: tuple[int, int] | None  # signal->posix_timers when an hlist_head (its first), else None
    personality: int
    brk: tuple[int, int]  # task->mm->brk
    mm_flags: tuple[int, int]  # task->mm->flags (its first word)


@functools.cache
def _layout() -> _Layout:
    """This kernel's layout, read from its BTF once per kernel (btf.remembered)."""
    kept = btf.remembered("asleep-layout", lambda: dataclasses.asdict(_measure()))
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in kept.items()}
    return _Layout(**fields)


def _measure() -> _Layout:
    b = btf.vmlinux()
    f = b.field
    thread = f("task_struct", "thread").offset
    names = ["fsbase", "gsbase", "es", "ds", "fsindex", "gsindex"] + (["pkru"] if b.has("thread_struct", "pkru") else [])
    fields = {n: f("thread_struct", n).offset for n in names}
    fpstate = f("fpu", "fpstate").offset
    if b.has("thread_struct", "fpu"):
        at = f("thread_struct", "fpu")
        embedded = b.kind(at.type) == btf.STRUCT
        path: tuple[int, ...] = (thread + at.offset + fpstate, 0) if embedded else (thread + at.offset, fpstate, 0)
    else:
        # Linux 6.15: the task's struct fpu follows its task_struct (x86_task_fpu()).
        path = (b.size(b.named(btf.STRUCT, "task_struct")) + fpstate, 0)
    task = {n: f("task_struct", n).offset for n in ("rseq", "rseq_len", "rseq_sig", "sas_ss_sp", "sas_ss_size",
                                                    "sas_ss_flags", "pdeath_signal", "clear_child_tid")}
    if b.kind(f("task_struct", "rseq").type) != btf.PTR:
        raise CkptError("this kernel's task_struct keeps rseq in another shape: reading a task in vfork is not "
                        "supported on it")
    signal = f("task_struct", "signal").offset
    sub = f("signal_struct", "is_child_subreaper")
    state = "state" if b.has("hrtimer", "state") else "is_queued"
    timers = f("signal_struct", "posix_timers")
    mm = f("task_struct", "mm").offset
    return _Layout(thread, b.size(b.named(btf.STRUCT, "thread_struct")), fields, path,
                   f("fpstate", "regs").offset, task, f("task_struct", "pid").offset,
                   (f("task_struct", "cred").offset, f("cred", "securebits").offset),
                   (f("task_struct", "sighand").offset, f("sighand_struct", "action").offset),
                   (signal, sub.offset, sub.bit),
                   (signal, f("signal_struct", "real_timer").offset + f("hrtimer", state).offset),
                   (signal, f("signal_struct", "it").offset), (signal, f("signal_struct", "it_real_incr").offset),
                   (signal, timers.offset) if b.size(timers.type) == 8 else None,  # a list_head is 16
                   f("task_struct", "personality").offset, (mm, f("mm_struct", "brk").offset),
                   (mm, f("mm_struct", "flags").offset))


def _cpuid(leaf: int, sub: int) -> tuple[int, int, int, int]:
    regs = ffi.new("unsigned int[4]")
    lib.ckpt_cpuid(leaf, sub, regs)
    return int(regs[0]), int(regs[1]), int(regs[2]), int(regs[3])


def _bits(mask: int, start: int = 2) -> list[int]:
    """The xstate components of a feature mask from `start` up (bit 63 is no component)."""
    return [i for i in range(start, 63) if mask >> i & 1]


def _compacted_offset(xcomp_bv: int, feature: int) -> int:
    """Where a component lies in a compacted xsave area (xfeature_get_offset, fpu/xstate.c)."""
    off = EXTENDED
    for i in _bits(xcomp_bv):
        size, _, ecx, _ = _cpuid(0xD, i)
        if ecx & 2:  # 64-byte aligned in the compacted format
            off = (off + 63) & ~63
        if i == feature:
            return off
        off += size
    raise CkptError(f"xstate component {feature} is not in the saved area (xcomp_bv {xcomp_bv:#x})")


def uabi_xstate(area: bytes, user_mask: int, like: bytes, pkru: int) -> bytes:
    """A task's saved xsave area as PTRACE_GETREGSET(NT_X86_XSTATE) gives it: the user's
    components at their standard offsets, the ones in their init state zeroed or at their init
    values (__copy_xstate_to_uabi_buf, arch/x86/kernel/fpu/xstate.c). `like`: any task's
    NT_X86_XSTATE here, for the buffer's size and the machine's software-reserved bytes and
    MXCSR mask."""
    hdr = int.from_bytes(area[HEADER:HEADER + 8], "little") & user_mask
    xcomp_bv = int.from_bytes(area[HEADER + 8:HEADER + 16], "little")
    out = bytearray(len(like))

    def part(span: tuple[int, int], used: bool, init: bytes = b"") -> None:
        a, z = span
        out[a:z] = area[a:z] if used else init.ljust(z - a, b"\0")

    part(FP_UPTO_MXCSR, bool(hdr & FP), struct.pack("<H", FCW_INIT))
    part(MXCSR, bool(hdr & (SSE | YMM)), struct.pack("<I", MXCSR_INIT) + like[MXCSR[0] + 4:MXCSR[1]])
    part(ST_SPACE, bool(hdr & FP))
    part(XMM_SPACE, bool(hdr & SSE))
    out[SW_BYTES[0]:SW_BYTES[1]] = like[SW_BYTES[0]:SW_BYTES[1]]
    out[HEADER:HEADER + 8] = hdr.to_bytes(8, "little")
    for i in _bits(hdr):
        size, std, _, _ = _cpuid(0xD, i)
        if i == PKRU:
            out[std:std + 4] = struct.pack("<I", pkru)
            continue
        at = _compacted_offset(xcomp_bv, i) if xcomp_bv & COMPACTED else std
        out[std:std + size] = area[at:at + size]
    return bytes(out)


def read(pid: int, like: bytes) -> Asleep:
    """The state of a task asleep in vfork (`like`: see uabi_xstate)."""
    lay = _layout()
    t = lay.task
    raw = read_task(pid, [
        Read((0,), PT_REGS * 8, regs=True), Read((lay.thread,), lay.thread_size),
        Read((t["rseq"],), 8), Read((t["rseq_len"],), 4), Read((t["rseq_sig"],), 4),
        Read((t["sas_ss_sp"],), 8), Read((t["sas_ss_size"],), 8), Read((t["sas_ss_flags"],), 4),
        Read((t["pdeath_signal"],), 4), Read((t["clear_child_tid"],), 8),
        Read(lay.securebits, 4), Read(lay.actions, NSIG * SIGACTION.size), Read(lay.subreaper[:2], 1),
        Read(lay.real_timer_state, 1), Read(lay.itimers, 32),
        Read(lay.fpstate, 24)])
    (pt, thread, rseq, rseq_len, rseq_sig, ss_sp, ss_size, ss_flags, pdeath, clear_tid, secure, actions, sub,
     timer_state, itimers, fpstate) = raw
    size, _, _, user_mask = struct.unpack("<IIQQ", fpstate[:24])
    (area,) = read_task(pid, [Read(lay.fpstate[:-1] + (lay.fpstate_regs,), size)])
    tf = {n: int.from_bytes(thread[o:o + (8 if n.endswith("base") else 4 if n == "pkru" else 2)], "little")
          for n, o in lay.thread_fields.items()}
    regs = ffi.new("struct user_regs_struct *")
    words = struct.unpack(f"<{PT_REGS}Q", pt)
    for name, value in zip(("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
                            "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss"), words):
        setattr(regs, name, value)
    regs.fs_base, regs.gs_base = tf["fsbase"], tf["gsbase"]
    regs.ds, regs.es, regs.fs, regs.gs = tf["ds"], tf["es"], tf["fsindex"], tf["gsindex"]
    _check(pid, regs)
    base_ss, size_ss = int.from_bytes(ss_sp, "little"), int.from_bytes(ss_size, "little")
    flags = reported_altstack(base_ss, size_ss, int.from_bytes(ss_flags, "little"), regs.rsp)
    armed = int.from_bytes(timer_state, "little") & HRTIMER_STATE_ENQUEUED
    prof, _, virt, _ = struct.unpack("<4Q", itimers)  # it[CPUCLOCK_PROF], it[CPUCLOCK_VIRT]
    return Asleep(regs=regs, xstate=uabi_xstate(area, user_mask, like, tf.get("pkru", 0)),
                  rseq=(int.from_bytes(rseq, "little"), int.from_bytes(rseq_len, "little"),
                        int.from_bytes(rseq_sig, "little")),
                  actions=[(h, f & UAPI_SA_FLAGS, r, m) for h, f, r, m in SIGACTION.iter_unpack(actions)],
                  altstack=(base_ss, flags, size_ss),
                  pdeathsig=int.from_bytes(pdeath, "little", signed=True), clear_tid=int.from_bytes(clear_tid, "little"),
                  securebits=int.from_bytes(secure, "little"), subreaper=bool(sub[0] >> lay.subreaper[2] & 1),
                  itimer="real" if armed else "virt" if virt else "prof" if prof else "")


def reported_altstack(base: int, size: int, own: int, sp: int) -> int:
    """The flags sigaltstack(NULL, &old) reports for a thread whose stack pointer is sp, from
    what the kernel keeps (kernel/signal.c: do_sigaltstack, sas_ss_flags(), on_sig_stack()),
    as a signed int like the ss_flags of a stack_t."""
    on = not own & SS_AUTODISARM and base < sp <= base + size
    flags = (SS_DISABLE if not size else SS_ONSTACK if on else 0) | own
    return flags - (1 << 32) if flags & (1 << 31) else flags


@dataclass(frozen=True, slots=True)
class Told:
    """What a dump's remote questions (engine.questions) ask of a main thread, as the kernel
    keeps it: what each call returns is read from the same field."""

    brk: int  # mm->brk: brk(0)
    mm_flags: int  # the first word of mm->flags: PR_GET_DUMPABLE and PR_GET_THP_DISABLE read there
    pdeathsig: int
    clear_tid: int
    securebits: int
    personality: int
    subreaper: bool
    itimers_idle: bool  # no itimer armed and no interval set: getitimer gives zeros for all three
    no_posix_timers: bool  # signal->posix_timers empty (False: some, or this kernel keeps a list_head)


@dataclass(frozen=True, slots=True)
class Sighand:
    """A process's sigactions and its main thread's own alternate stack, as the kernel keeps
    them; with what its main thread would answer the dump's questions."""

    actions: list[tuple[int, int, int, int]]  # for signals 1..64: handler, flags, restorer, mask
    altstack: tuple[int, int, int]  # the main thread's sas_ss_sp, sas_ss_size, sas_ss_flags
    told: Told | None = None


def sighands(pids: set[int]) -> dict[int, Sighand] | None:
    """The Sighand of each of these processes by pid, with what its main thread would answer a
    dump's questions (Told), read in one pass of a BPF task iterator (which visits every process
    of the system, not each thread: only ours are unpacked); None in a pid namespace other than
    the initial one (the kernel's pid field is the global pid)."""
    if len(proc.levels(proc.status(os.getpid()), "NSpid", 0)) != 1:
        return None
    lay = _layout()
    t = lay.task
    out: dict[int, Sighand] = {}
    timers = lay.posix_timers or (lay.pid,)  # (read but unused when the kernel keeps a list_head)
    for (pid, actions, sp, size, flags, pdeath, clear_tid, secure, persona, sub, timer_state, itimers, incr, first,
         brk, mm_flags) in bpf.read_all([
            Read((lay.pid,), 4), Read(lay.actions, NSIG * SIGACTION.size), Read((t["sas_ss_sp"],), 8),
            Read((t["sas_ss_size"],), 8), Read((t["sas_ss_flags"],), 4), Read((t["pdeath_signal"],), 4),
            Read((t["clear_child_tid"],), 8), Read(lay.securebits, 4), Read((lay.personality,), 4),
            Read(lay.subreaper[:2], 1), Read(lay.real_timer_state, 1), Read(lay.itimers, 32), Read(lay.real_incr, 8),
            Read(timers, 8), Read(lay.brk, 8), Read(lay.mm_flags, 8)]):
        if (number := int.from_bytes(pid, "little")) not in pids:
            continue
        idle = not int.from_bytes(timer_state, "little") & HRTIMER_STATE_ENQUEUED and not any(itimers + incr)
        told = Told(brk=int.from_bytes(brk, "little"), mm_flags=int.from_bytes(mm_flags, "little"),
                    pdeathsig=int.from_bytes(pdeath, "little", signed=True),
                    clear_tid=int.from_bytes(clear_tid, "little"), securebits=int.from_bytes(secure, "little"),
                    personality=int.from_bytes(persona, "little"), subreaper=bool(sub[0] >> lay.subreaper[2] & 1),
                    itimers_idle=idle, no_posix_timers=lay.posix_timers is not None and not any(first))
        out[number] = Sighand(
            actions=[(h, f & UAPI_SA_FLAGS, r, m) for h, f, r, m in SIGACTION.iter_unpack(actions)],
            altstack=(int.from_bytes(sp, "little"), int.from_bytes(size, "little"), int.from_bytes(flags, "little")),
            told=told)
    return out


def _check(pid: int, regs: Any) -> None:
    """The registers read must be the ones /proc/PID/syscall shows (its syscall, stack and
    instruction pointers): else we read the wrong structures."""
    fields = proc.read(pid, "syscall").split()
    if fields[0] == "running":
        raise CkptError(f"pid {pid} runs: its registers cannot be read from the kernel")
    want = (int(fields[0]) & (1 << 64) - 1, int(fields[-2], 16), int(fields[-1], 16))
    got = (regs.orig_rax, regs.rsp, regs.rip)
    if want != got:
        raise CkptError(f"pid {pid}: the registers read from the kernel (syscall, sp, ip {got}) are not what "
                        f"/proc/{pid}/syscall shows ({' '.join(fields)}): its kernel structures were misread")
