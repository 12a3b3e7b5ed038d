"""A seized task: registers, memory, and remote syscalls run on a `syscall` instruction the
task already has mapped (in its vDSO), never patching its code. See KERNEL-FACTS.md."""
from __future__ import annotations

import mmap
import os
import signal
from contextlib import contextmanager
from typing import Any, Iterator

from engine.errors import CkptError, ProcessGone, raise_for
from native import ffi, lib

SYSCALL_INSN = b"\x0f\x05"
NO_SYSCALL = (1 << 64) - 1  # orig_rax = -1: the kernel's restart logic leaves rip/rax alone
# Restart codes a task stopped inside a syscall may hold in rax (include/linux/errno.h).
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
SYSCALL_STOP = signal.SIGTRAP | 0x80  # PTRACE_O_TRACESYSGOOD
WALL = getattr(lib, "__WALL")
SYS_MMAP, SYS_MUNMAP = 9, 11
STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)  # spelled out: inside a class, lib.__WALL would be name-mangled


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


class Tracee:
    """A task seized and stopped with PTRACE_SEIZE + PTRACE_INTERRUPT until detach()."""

    def __init__(self, pid: int, adopted: bool = False) -> None:
        self.pid = pid
        self.spawned: list[int] = []  # tasks our remote clone3 calls created (auto-attached)
        self._syscall_at: int | None = None
        self.stop_signal = 0  # the signal of the group stop it was in when seized
        self._mem: int | None = None
        if not adopted:
            # SUSPEND_SECCOMP: the task's filters must not judge our remote syscalls.
            self._ptrace(lib.PTRACE_SEIZE, "SEIZE", data=lib.PTRACE_O_TRACESYSGOOD | lib.PTRACE_O_SUSPEND_SECCOMP)
        try:
            if not adopted:
                self._ptrace(lib.PTRACE_INTERRUPT, "INTERRUPT")
            # An adopted task (created by a traced clone) starts with the same event stop.
            self._wait_event_stop()
            self.saved = self.get_regs()
            # Block every signal while we work: one arriving during a remote syscall would
            # stop the task for delivery instead. The task's own mask comes back at detach.
            self.mask = self.sigmask()
            self.set_sigmask((1 << 64) - 1)
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

    def request(self, request: int, name: str, addr: Any = ffi.NULL, data: Any = ffi.NULL) -> int:
        """A ptrace request on the stopped task; its result (errors raised)."""
        return self._ptrace(request, name, addr, data)

    def sigmask(self) -> int:
        """The blocked mask (PTRACE_GETSIGMASK)."""
        mask = ffi.new("uint64_t *")
        self._ptrace(lib.PTRACE_GETSIGMASK, "GETSIGMASK", ffi.cast("void *", 8), mask)
        return int(mask[0])

    def set_sigmask(self, mask: int) -> None:
        """Set the blocked mask without running the task (PTRACE_SETSIGMASK)."""
        self._ptrace(lib.PTRACE_SETSIGMASK, "SETSIGMASK", ffi.cast("void *", 8), ffi.new("uint64_t *", mask))

    def _wait(self) -> int:
        status = ffi.new("int *")
        while lib.waitpid(self.pid, status, WALL) < 0:
            if ffi.errno != 4:  # EINTR
                raise_for(self.pid, "waitpid", ffi.errno)
        st = int(status[0])
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            # Gone (a thread may exit between the listing and the seizure): callers that can
            # do without it catch ProcessGone.
            raise ProcessGone(self.pid)
        return st

    def _wait_event_stop(self) -> None:
        """Wait for the PTRACE_INTERRUPT stop; signals met on the way are delivered, not lost."""
        for _ in range(64):
            st = self._wait()
            if (st >> 16) == lib.PTRACE_EVENT_STOP:
                # A task in group stop reports it here with its stop signal (else SIGTRAP).
                sig = os.WSTOPSIG(st)
                self.stop_signal = sig if sig in STOP_SIGNALS else 0
                return
            # A signal-delivery-stop came first: let the task have its signal. Our INTERRUPT
            # is still pending (the kernel keeps JOBCTL_TRAP_STOP until the trap fires) and
            # stops it next; a second INTERRUPT would leave a stray trap for later.
            self._ptrace(lib.PTRACE_CONT, "CONT", data=os.WSTOPSIG(st))
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

    def set_xstate(self, data: bytes) -> None:
        """Write the extended FPU state back (the same layout GETREGSET gave)."""
        buf = ffi.new("char[]", data)
        iov = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": len(data)})
        self._ptrace(lib.PTRACE_SETREGSET, "SETREGSET(NT_X86_XSTATE)", ffi.cast("void *", lib.NT_X86_XSTATE), iov)

    def rseq(self) -> tuple[int, int, int]:
        """The rseq registration: (area pointer, size, signature); pointer 0 when none."""
        conf = ffi.new("struct ckpt_rseq_configuration *")
        self._ptrace(lib.PTRACE_GET_RSEQ_CONFIGURATION, "GET_RSEQ_CONFIGURATION",
                     ffi.cast("void *", ffi.sizeof(conf[0])), conf)
        return int(conf.rseq_abi_pointer), int(conf.rseq_abi_size), int(conf.signature)

    def read(self, addr: int, size: int) -> bytes:
        """process_vm_readv of one range."""
        buf = ffi.new("char[]", size)
        local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": size})
        remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", addr), "iov_len": size})
        n = lib.process_vm_readv(self.pid, local, 1, remote, 1, 0)
        if n != size:
            raise_for(self.pid, f"process_vm_readv({addr:#x}, {size})", ffi.errno if n < 0 else 5)
        return bytes(ffi.buffer(buf, size))

    def write(self, addr: int, data: bytes) -> None:
        """process_vm_writev of one range (the pages must be writable)."""
        buf = ffi.from_buffer(data)
        local = ffi.new("struct iovec *", {"iov_base": buf, "iov_len": len(data)})
        remote = ffi.new("struct iovec *", {"iov_base": ffi.cast("void *", addr), "iov_len": len(data)})
        n = lib.process_vm_writev(self.pid, local, 1, remote, 1, 0)
        if n != len(data):
            raise_for(self.pid, f"process_vm_writev({addr:#x}, {len(data)})", ffi.errno if n < 0 else 5)

    def poke(self, addr: int, data: bytes) -> None:
        """Write through /proc/PID/mem, which may write pages the task cannot (FOLL_FORCE)."""
        if self._mem is None:
            self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        done = 0
        while done < len(data):
            n = os.pwrite(self._mem, data[done:], addr + done)
            if n <= 0:
                raise CkptError(f"pid {self.pid}: short write at {addr + done:#x} through /proc/PID/mem")
            done += n

    def moved_syscall(self, address: int) -> None:
        """The vDSO moved: remote syscalls now run from this address."""
        self._syscall_at = address

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
            for _ in range(4):
                if stop == "exit" or (st >> 16) != lib.PTRACE_EVENT_STOP:
                    break
                # A second trap of the seizure (a task seized in group stop is trapped once
                # by the seizure and once by our INTERRUPT): it fires here, before the call.
                self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
                st = self._wait()
            while (st >> 16) in (lib.PTRACE_EVENT_CLONE, lib.PTRACE_EVENT_FORK):
                # Our clone3 made a task (traced from birth): note it and go on to the exit.
                msg = ffi.new("unsigned long *")
                self._ptrace(lib.PTRACE_GETEVENTMSG, "GETEVENTMSG", data=msg)
                self.spawned.append(int(msg[0]))
                self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
                st = self._wait()
            if not os.WIFSTOPPED(st) or os.WSTOPSIG(st) != SYSCALL_STOP:
                raise CkptError(f"pid {self.pid}: expected a syscall-{stop} stop, got status {st:#x}")
        return _signed(self.get_regs().rax)

    def trace_clones(self) -> None:
        """Tasks this one forks or clones are traced from birth (PTRACE_O_TRACECLONE/FORK)."""
        self._ptrace(lib.PTRACE_SETOPTIONS, "SETOPTIONS", data=lib.PTRACE_O_TRACESYSGOOD | lib.PTRACE_O_SUSPEND_SECCOMP
                     | lib.PTRACE_O_TRACECLONE | lib.PTRACE_O_TRACEFORK)

    def call(self, what: str, nr: int, *args: int) -> int:
        """A remote syscall that must succeed: its result, or CkptError naming `what`."""
        rc = self.syscall(nr, *args)
        if rc < 0:
            raise CkptError(f"pid {self.pid}: remote {what}: {os.strerror(-rc)}")
        return rc

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
        self.release()

    def kill(self) -> None:
        """SIGKILL the stopped task's process and collect this thread's exit as its tracer (the
        parent, if another process, then sees the zombie). A thread-group leader is only
        collected once its other traced threads are: kill those first."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        status = ffi.new("int *")
        while lib.waitpid(self.pid, status, WALL) < 0 and ffi.errno == 4:
            pass
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None

    def release(self) -> None:
        """PTRACE_DETACH as the task stands (its registers already set), its mask back."""
        self.set_sigmask(self.mask)
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        self._ptrace(lib.PTRACE_DETACH, "DETACH")
