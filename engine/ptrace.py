"""A seized task: registers, memory, and remote syscalls run on a `syscall` instruction the
task already has mapped (in its vDSO), never patching its code. See KERNEL-FACTS.md."""
from __future__ import annotations

import mmap
import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

from engine.errors import CkptError, raise_for
from native import ffi, lib

SYSCALL_INSN = b"\x0f\x05"
NO_SYSCALL = (1 << 64) - 1  # orig_rax = -1: the kernel's restart logic leaves rip/rax alone
# Restart codes a task stopped inside a syscall may hold in rax (include/linux/errno.h).
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
SYSCALL_STOP = signal.SIGTRAP | 0x80  # PTRACE_O_TRACESYSGOOD
WALL = getattr(lib, "__WALL")
SYS_MMAP, SYS_MUNMAP = 9, 11  # spelled out: inside a class, lib.__WALL would be name-mangled


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class Tracee:
    """A task seized and stopped with PTRACE_SEIZE + PTRACE_INTERRUPT until detach()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._ptrace(lib.PTRACE_SEIZE, "SEIZE", data=lib.PTRACE_O_TRACESYSGOOD)
        try:
            self._ptrace(lib.PTRACE_INTERRUPT, "INTERRUPT")
            self._wait_event_stop()
            self.saved = self.get_regs()
            self._syscall_at: int | None = None
        except BaseException:
            # Best effort: the task may already be gone; the first error is the one to report.
            lib.ptrace_call(lib.PTRACE_DETACH, pid, ffi.NULL, ffi.NULL)
            raise

    # --- raw requests ------------------------------------------------------------------------

    def _ptrace(self, request: int, name: str, addr: Any = ffi.NULL, data: Any = 0) -> int:
        rc = lib.ptrace_call(request, self.pid, addr, ffi.cast("void *", data))
        if rc == -1:
            raise_for(self.pid, name, ffi.errno)
        return int(rc)

    def _wait(self) -> int:
        status = ffi.new("int *")
        while lib.waitpid(self.pid, status, WALL) < 0:
            if ffi.errno != 4:  # EINTR
                raise_for(self.pid, "waitpid", ffi.errno)
        st = int(status[0])
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            raise CkptError(f"pid {self.pid} died while traced (status {st:#x})")
        return st

    def _wait_event_stop(self) -> None:
        """Wait for the PTRACE_INTERRUPT stop; signals met on the way are delivered, not lost."""
        for _ in range(64):
            st = self._wait()
            if (st >> 16) == lib.PTRACE_EVENT_STOP:
                return
            # A signal-delivery-stop came first: let the task have its signal, stop again.
            self._ptrace(lib.PTRACE_CONT, "CONT", data=os.WSTOPSIG(st))
            self._ptrace(lib.PTRACE_INTERRUPT, "INTERRUPT")
        raise CkptError(f"pid {self.pid} keeps receiving signals; cannot stop it")

    # --- registers and memory ----------------------------------------------------------------

    def get_regs(self) -> Any:
        """A copy of the general registers (struct user_regs_struct)."""
        regs = ffi.new("struct user_regs_struct *")
        iov = ffi.new("struct iovec *", {"iov_base": regs, "iov_len": ffi.sizeof(regs[0])})
        self._ptrace(lib.PTRACE_GETREGSET, "GETREGSET", ffi.cast("void *", lib.NT_PRSTATUS), iov)
        return regs

    def set_regs(self, regs: Any) -> None:
        """Write the general registers."""
        iov = ffi.new("struct iovec *", {"iov_base": regs, "iov_len": ffi.sizeof(regs[0])})
        self._ptrace(lib.PTRACE_SETREGSET, "SETREGSET", ffi.cast("void *", lib.NT_PRSTATUS), iov)

    def xstate(self, limit: int = 16384) -> bytes:
        """The extended FPU state (NT_X86_XSTATE), as long as the kernel gives it."""
        buf = ffi.new("char[]", limit)
        iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": limit})
        self._ptrace(lib.PTRACE_GETREGSET, "GETREGSET(NT_X86_XSTATE)", ffi.cast("void *", lib.NT_X86_XSTATE), iov)
        return bytes(ffi.buffer(buf, iov.iov_len))

    def read(self, addr: int, size: int) -> bytes:
        """process_vm_readv of one range."""
        buf = ffi.new("char[]", size)
        local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
        remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", addr), "iov_len": size})
        n = lib.process_vm_readv(self.pid, local, 1, remote, 1, 0)
        if n != size:
            raise_for(self.pid, f"process_vm_readv({addr:#x}, {size})", ffi.errno if n < 0 else 5)
        return bytes(ffi.buffer(buf, size))

    def syscall_address(self) -> int:
        """The address of a `syscall` instruction inside the task's vDSO."""
        if self._syscall_at is None:
            with open(f"/proc/{self.pid}/maps") as f:
                vdso = next((line.split()[0] for line in f if line.rstrip().endswith("[vdso]")), None)
            if vdso is None:
                raise CkptError(f"pid {self.pid} has no [vdso] to run remote syscalls from")
            start, end = (int(x, 16) for x in vdso.split("-"))
            off = self.read(start, end - start).find(SYSCALL_INSN)
            if off < 0:
                raise CkptError(f"pid {self.pid}: no syscall instruction in its vDSO")
            self._syscall_at = start + off
        return self._syscall_at

    # --- remote syscalls ---------------------------------------------------------------------

    def syscall(self, nr: int, *args: int) -> int:
        """Run one syscall in the task; returns its result (negative errno on failure)."""
        if len(args) > 6:
            raise ValueError("a syscall takes at most 6 arguments")
        regs = ffi.new("struct user_regs_struct *", self.saved[0])
        regs.rip, regs.rax, regs.orig_rax = self.syscall_address(), nr, NO_SYSCALL
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & NO_SYSCALL)
        self.set_regs(regs)
        for stop in ("entry", "exit"):
            self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
            st = self._wait()
            if not os.WIFSTOPPED(st) or os.WSTOPSIG(st) != SYSCALL_STOP:
                raise CkptError(f"pid {self.pid}: expected a syscall-{stop} stop, got status {st:#x}")
        return _signed(self.get_regs().rax)

    @contextmanager
    def scratch(self, size: int = 4096) -> Iterator[int]:
        """A private anonymous area mapped in the task for syscall arguments, unmapped after."""
        addr = self.syscall(SYS_MMAP, 0, size, mmap.PROT_READ | mmap.PROT_WRITE,
                            mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if addr < 0:
            raise CkptError(f"pid {self.pid}: remote mmap of a scratch page: {os.strerror(-addr)}")
        try:
            yield addr
        finally:
            rc = self.syscall(SYS_MUNMAP, addr, size)
            if rc < 0:
                raise CkptError(f"pid {self.pid}: remote munmap of the scratch page: {os.strerror(-rc)}")

    def detach(self) -> None:
        """Put the saved registers back (resolving an interrupted syscall's restart) and let go."""
        regs = ffi.new("struct user_regs_struct *", self.saved[0])
        if _signed(regs.orig_rax) >= 0:
            # Stopped inside a syscall: after our remote calls the kernel would no longer restart
            # it for us, so apply its restart rules here (arch/x86/kernel/signal.c).
            code = -_signed(regs.rax)
            if code in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
                regs.rax, regs.rip = regs.orig_rax, regs.rip - 2
            elif code == ERESTART_RESTARTBLOCK:
                regs.rax = -4 & NO_SYSCALL  # EINTR: the restart block cannot be carried over
            regs.orig_rax = NO_SYSCALL
        self.set_regs(regs)
        self._ptrace(lib.PTRACE_DETACH, "DETACH")
