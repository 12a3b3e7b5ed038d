"""A task's kernel structures, read by a BPF task iterator (Documentation/bpf/bpf_iterators.rst,
bpf-helpers(7)): for what no ptrace stop can show, such as the registers of a task asleep in
vfork (engine.asleep). A small program is assembled for each set of reads; run over one thread,
it follows pointers from the task's task_struct (or its user registers, bpf_task_pt_regs) with
bpf_probe_read_kernel and writes the bytes found to the iterator's output (bpf_seq_write).
Offsets come from the kernel's BTF (engine.btf). Needs CAP_BPF and CAP_PERFMON (or root)."""
from __future__ import annotations

import errno
import functools
import os
import struct
from dataclasses import dataclass
from typing import Sequence

from engine import btf
from engine.errors import CkptError, Unsupported
from native import ffi, lib

INSN = struct.Struct("<BBhi")  # struct bpf_insn: code, dst_reg:4 | src_reg:4, off, imm
CHUNK = 256  # bytes per probe read: the stack buffer below
BUF, SLOT = -8 - CHUNK, -8  # stack offsets (from r10) of the read buffer and the pointer slot
LOG_SIZE = 1 << 16
# The helpers used are GPL-only (bpf-helpers(7)): the program says its license is GPL.
LICENSE = b"GPL"
ITERATOR = "bpf_iter_task"  # the kernel function a task iterator attaches to (its BTF id)
R0, R1, R2, R3 = lib.BPF_REG_0, lib.BPF_REG_1, lib.BPF_REG_2, lib.BPF_REG_3
R6, R7, R8, R9, FP = lib.BPF_REG_6, lib.BPF_REG_7, lib.BPF_REG_8, lib.BPF_REG_9, lib.BPF_REG_10


@dataclass(frozen=True, slots=True)
class Read:
    """`size` bytes at a kernel address reached from a task: start at its task_struct (or, with
    regs, at its saved user registers); for each offset of `path` but the last, add it and follow
    the pointer found there; add the last one and read."""

    path: tuple[int, ...]
    size: int
    regs: bool = False


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return INSN.pack(code, (src << 4) | dst, off, imm)


def _ldx(dst: int, src: int, off: int) -> bytes:
    return _insn(lib.BPF_LDX | lib.BPF_MEM | lib.BPF_DW, dst, src, off)


def _mov(dst: int, src: int) -> bytes:
    return _insn(lib.BPF_ALU64 | lib.BPF_MOV | lib.BPF_X, dst, src)


def _movi(dst: int, imm: int) -> bytes:
    return _insn(lib.BPF_ALU64 | lib.BPF_MOV | lib.BPF_K, dst, imm=imm)


def _addi(dst: int, imm: int) -> bytes:
    return _insn(lib.BPF_ALU64 | lib.BPF_ADD | lib.BPF_K, dst, imm=imm)


def _call(helper: int) -> bytes:
    return _insn(lib.BPF_JMP | lib.BPF_CALL, imm=helper)


class _Program:
    """Instructions, with jumps to the program's end patched once it is known."""

    def __init__(self) -> None:
        self.insns: list[bytes] = []
        self.to_end: list[int] = []  # indexes of jumps to the end

    def add(self, *insns: bytes) -> None:
        self.insns += insns

    def bail_if(self, reg: int, jump: int, value: int) -> None:
        """Jump to the end (output stops there) when reg compares so with value."""
        self.to_end.append(len(self.insns))
        self.add(_insn(lib.BPF_JMP | jump | lib.BPF_K, reg, imm=value))

    def probe(self, dst_off: int, size: int, src: int, bail: bool = True) -> None:
        """bpf_probe_read_kernel(fp + dst_off, size, src); the end on failure, or without
        bail, zeros (the helper clears what it could not read) and on."""
        self.add(_mov(R3, src), _mov(R1, FP), _addi(R1, dst_off), _movi(R2, size),
                 _call(lib.BPF_FUNC_probe_read_kernel))
        if bail:
            self.bail_if(R0, lib.BPF_JNE, 0)

    def code(self) -> bytes:
        end = len(self.insns)
        self.add(_movi(R0, 0), _insn(lib.BPF_JMP | lib.BPF_EXIT))
        for i in self.to_end:
            code, regs, _, imm = INSN.unpack(self.insns[i])
            self.insns[i] = INSN.pack(code, regs, end - i - 1, imm)
        return b"".join(self.insns)


def assemble(reads: Sequence[Read], bail: bool = True) -> bytes:
    """The iterator program doing these reads, in order, into its output: all of them, or
    without bail, a fixed-size record per task whatever fails (zeros where a read did)."""
    p = _Program()
    # r6: the iterator's meta (its seq_file), r7: the task, NULL on the last call.
    p.add(_ldx(R6, R1, 0), _ldx(R7, R1, 8))
    p.bail_if(R7, lib.BPF_JEQ, 0)
    if any(r.regs for r in reads):
        p.add(_mov(R1, R7), _call(lib.BPF_FUNC_task_pt_regs), _mov(R9, R0))
    for r in reads:
        p.add(_mov(R8, R9 if r.regs else R7))
        for off in r.path[:-1]:
            p.add(_addi(R8, off))
            p.probe(SLOT, 8, R8, bail)
            p.add(_ldx(R8, FP, SLOT))  # a plain number now: the pointer found
        p.add(_addi(R8, r.path[-1]))
        for done in range(0, r.size, CHUNK):
            n = min(CHUNK, r.size - done)
            p.probe(BUF, n, R8, bail)
            p.add(_addi(R8, n), _ldx(R1, R6, 0), _mov(R2, FP), _addi(R2, BUF), _movi(R3, n),
                  _call(lib.BPF_FUNC_seq_write))
    return p.code()


@functools.cache
def _iterator() -> int:
    """The BTF id of the kernel function task iterators attach to."""
    return int(btf.remembered("bpf-iter-task", lambda: btf.vmlinux().func(ITERATOR)))


def _load(code: bytes) -> int:
    """The program's fd; Unsupported when this kernel or our privileges do not allow it."""
    log = ffi.new("char[]", LOG_SIZE)
    fd = lib.ckpt_bpf_load_task_iter(code, len(code) // INSN.size, _iterator(), LICENSE, log, LOG_SIZE)
    if fd < 0:
        err = ffi.errno
        if err in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
            raise Unsupported(f"BPF task iterators: {os.strerror(err)} (needs CAP_BPF and CAP_PERFMON)")
        words = ffi.string(log).decode(errors="replace").strip().splitlines()
        raise CkptError(f"the kernel refused our BPF program: {os.strerror(err)}"
                        + (f" ({words[-1]})" if words else ""))
    return int(fd)


def _run(code: bytes, tid: int, what: str) -> bytes:
    """All a task iterator of this program writes, over thread `tid` (0: every process)."""
    prog = _load(code)
    try:
        it = lib.ckpt_bpf_task_iter(prog, tid)
        if it < 0:
            raise CkptError(f"{what}: a BPF task iterator: {os.strerror(ffi.errno)}")
        try:
            parts = []
            while chunk := os.read(it, 1 << 20):
                parts.append(chunk)
        finally:
            os.close(it)
    finally:
        os.close(prog)
    return b"".join(parts)


def _fields(out: bytes, at: int, reads: Sequence[Read]) -> list[bytes]:
    """The bytes of each read, from offset `at` of the output on."""
    got = []
    for r in reads:
        got.append(out[at:at + r.size])
        at += r.size
    return got


def read_all(reads: Sequence[Read]) -> list[list[bytes]]:
    """Each read's bytes, for every process of our pid namespace, in one pass (a task iterator
    without a filter visits thread-group leaders on this kernel, not every thread)."""
    out = _run(assemble(reads, bail=False), 0, "every task")
    size = sum(r.size for r in reads)
    if len(out) % size:
        raise CkptError(f"a BPF task iterator gave {len(out)} bytes, not records of {size}")
    return [_fields(out, at, reads) for at in range(0, len(out), size)]


def read_task(tid: int, reads: Sequence[Read]) -> list[bytes]:
    """Each read's bytes, from the thread `tid` (as we see it) in the kernel's memory."""
    out = _run(assemble(reads), tid, f"pid {tid}")
    at = 0
    for i, r in enumerate(reads):
        if at + r.size > len(out):
            # The program stops at the first read that fails (or writes nothing: the task is gone).
            raise CkptError(f"pid {tid}: reading its kernel state stopped at read {i + 1} of "
                            f"{len(reads)} (offsets {r.path}): the task is gone or its structures moved")
        at += r.size
    return _fields(out, 0, reads)
