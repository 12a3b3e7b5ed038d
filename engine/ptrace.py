"""A seized task: registers, memory, and remote syscalls run on a `syscall` instruction the
task already has mapped (in its vDSO), never patching its code. See KERNEL-FACTS.md."""
from __future__ import annotations

import errno
import mmap
import os
import signal
import struct
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from engine.errors import CkptError, ProcessGone, raise_for
from native import ffi, lib

SYSCALL_INSN = b"\x0f\x05"
NO_SYSCALL = (1 << 64) - 1  # orig_rax = -1: the kernel's restart logic leaves rip/rax alone
# Restart codes a task stopped inside a syscall may hold in rax (include/linux/errno.h).
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516
WALL = getattr(lib, "__WALL")
SYS_MMAP, SYS_MUNMAP, SYS_EXIT = 9, 11, 60
AT_SYSINFO_EHDR = 33  # auxv: where the kernel mapped the task's vDSO
MAP_FIXED_NOREPLACE = 0x100000
# Where a dump first tries its scratch area (MAP_FIXED_NOREPLACE: a taken place is refused,
# and any place then serves). 2 TiB under the top of user space: below any top-down mmap base
# (at most 1 TiB of randomness under the stack gap), far above a bottom-up one.
SCRATCH_AT = 0x7E0000000000
ROBUST_LIST_HEAD = 24  # sizeof(struct robust_list_head): set_robust_list takes no other length
STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)  # spelled out: inside a class, lib.__WALL would be name-mangled


_STEPS = {lib.CKPT_STEP_SETREGS: "SETREGSET", lib.CKPT_STEP_SYSCALL: "SYSCALL", lib.CKPT_STEP_WAIT: "waitpid",
          lib.CKPT_STEP_EVENTMSG: "GETEVENTMSG", lib.CKPT_STEP_GETREGS: "GETREGSET"}


_ZEROS = [0] * 6
_AUXV = struct.Struct("<QQ")
# The vDSO last found through maps and the offset of a `syscall` in it: the kernel maps one
# image into every 64-bit task, so a task whose auxv names a block holding that image has the
# instruction at the same offset (no maps to read).
_vdso: tuple[bytes, int] | None = None


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def abandon(pid: int, mask: int | None = None, regs: Any = None) -> None:
    """Make sure a task we seized is ours no more, whatever state a failure left it in:
    detached where it is stopped (with its own `mask` and `regs` back, when given), else
    detached at its next stop (asked for here), else collected once it dies. A tracee of ours
    left behind would keep its zombie waiting for us, and with it whoever waits for its thread
    group leader or for its pid namespace's init, whose exit waits for every task of the
    namespace (zap_pid_ns_processes, kernel/pid_namespace.c): our own waitpid on that init
    among them."""
    if mask is not None:
        lib.ptrace_call(lib.PTRACE_SETSIGMASK, pid, ffi.cast("void *", 8), ffi.new("uint64_t *", mask))
    if regs is not None:
        iov = ffi.new("struct iovec *", {"iov_base": regs, "iov_len": ffi.sizeof("struct user_regs_struct")})
        lib.ptrace_call(lib.PTRACE_SETREGSET, pid, ffi.cast("void *", lib.NT_PRSTATUS), iov)
    if lib.ptrace_call(lib.PTRACE_DETACH, pid, ffi.NULL, ffi.NULL) == 0:
        return
    # Not in a ptrace stop: running (stopping at the trap asked for here) or dying.
    lib.ptrace_call(lib.PTRACE_INTERRUPT, pid, ffi.NULL, ffi.NULL)
    status = ffi.new("int *")
    while True:
        if lib.waitpid(pid, status, WALL) < 0:
            if ffi.errno == errno.EINTR:
                continue
            return  # not ours (any more)
        st = int(status[0])
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            return
        # A signal-delivery-stop holds its signal: the detach delivers it.
        sig = os.WSTOPSIG(st) if st >> 16 == 0 and os.WSTOPSIG(st) != signal.SIGTRAP | 0x80 else 0
        if lib.ptrace_call(lib.PTRACE_DETACH, pid, ffi.NULL, ffi.cast("void *", sig)) == 0:
            return


_PIN = threading.local()  # .cpu: the CPU this tracer thread runs on; .home: its own affinity before


@contextmanager
def pinned() -> Iterator[None]:
    """Keep the calling thread on the CPU it is on, and every task it seizes meanwhile there too
    (until released): a ptrace stop costs ~9 µs when the tracer and the task share a CPU and
    ~50 µs when the task wakes on another (KERNEL-FACTS.md). Nested uses keep the outer pin."""
    if getattr(_PIN, "cpu", None) is not None:
        yield
        return
    home = os.sched_getaffinity(0)
    cpu = int(lib.sched_getcpu())
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        yield  # a cpuset that moved under us: run unpinned
        return
    _PIN.cpu, _PIN.home = cpu, home
    try:
        yield
    finally:
        _PIN.cpu = None
        os.sched_setaffinity(0, home)


SPIN_CPUS = 3  # other CPUs kept busy at most (see others_busy)
SPIN_LIMIT_MS = 60_000  # a spinning thread stops by itself after this long


@contextmanager
def others_busy() -> Iterator[None]:
    """Inside pinned(): keep the other CPUs we may use out of their idle state meanwhile, with
    a spinning native thread each (native/spin.c). Waking a task asleep on an idle vCPU costs
    the waker ~0.6 ms here, ~25 us when that vCPU runs something (KERNEL-FACTS.md): a freeze
    wakes every task once. Nothing happens when not pinned, or with no other CPU."""
    others = spare_cpus()[:SPIN_CPUS]
    if not others or lib.ckpt_spin_start(ffi.new("int[]", others), len(others), SPIN_LIMIT_MS) < 0:
        yield
        return
    try:
        yield
    finally:
        lib.ckpt_spin_stop()


def spare_cpus() -> list[int]:
    """Inside pinned(): the tracer's own CPUs but the one it is pinned to; else none."""
    cpu = getattr(_PIN, "cpu", None)
    return sorted(set(_PIN.home) - {cpu}) if cpu is not None else []


def repin(cpu: int) -> None:
    """In a fork of a pinned tracer: run on `cpu` instead, and move the tasks it seizes there
    (the home CPUs stay the tracer's)."""
    os.sched_setaffinity(0, {cpu})
    _PIN.cpu = cpu


def home_cpus() -> set[int]:
    """The CPUs the tracer may run on when not pinned (what fresh tasks should get)."""
    return set(_PIN.home) if getattr(_PIN, "cpu", None) is not None else os.sched_getaffinity(0)


class Tracee:
    """A task seized and stopped with PTRACE_SEIZE + PTRACE_INTERRUPT until detach()."""

    def __init__(self, pid: int, adopted: bool = False, keep_scratch: bool = False, tgid: int | None = None) -> None:
        self.pid = pid
        # Its process: what the records read through this thread are filed under (another
        # thread than the main one reads process-wide state when the main one is a zombie).
        self.tgid = pid if tgid is None else tgid
        self.keep_scratch = keep_scratch
        self._kept: tuple[int, int] | None = None  # (address, size) of the kept scratch area
        self.spawned: list[int] = []  # tasks our remote clone3 calls created (auto-attached)
        self._syscall_at: int | None = None
        self._calls, self._results = ffi.new("struct ckpt_rcall[]", 8), ffi.new("long[]", 8)  # see batch()
        self._state = ffi.new("struct ckpt_rstate *")
        self._after_syscall = False  # stopped at a remote call's exit, not inside get_signal()
        self.stop_signal = 0  # the signal of the group stop it was in when seized
        self._mem: int | None = None
        self.areas_fixed = False  # another process reads its areas now: no scratch area may move
        self.cpus: set[int] = set()  # its affinity when seized
        self.answers: Any = None  # a dump's remote questions asked in one batch (engine.questions)
        self.restore_cpus: set[int] | None = None  # the affinity release() gives it
        if not adopted:
            # SUSPEND_SECCOMP: the task's filters must not judge our remote syscalls.
            self._ptrace(lib.PTRACE_SEIZE, "SEIZE", data=lib.PTRACE_O_TRACESYSGOOD | lib.PTRACE_O_SUSPEND_SECCOMP)
        try:
            if not adopted:
                self._ptrace(lib.PTRACE_INTERRUPT, "INTERRUPT")
            # An adopted task (created by a traced clone) starts with the same event stop.
            self.stop_signal = self._wait_event_stop()
            self.saved = self.get_regs()
            # Block every signal while we work: one arriving during a remote syscall would
            # stop the task for delivery instead. The task's own mask comes back at detach.
            self.mask = self.sigmask()
            self.set_sigmask((1 << 64) - 1)
            self._pin()
        except BaseException:
            # The first error is the one to report; the task must not stay ours (see abandon).
            abandon(pid, getattr(self, "mask", None))
            raise

    def _pin(self) -> None:
        """Note the affinity; move the task to the pinned tracer's CPU (see pinned())."""
        self.cpus = os.sched_getaffinity(self.pid)
        cpu = getattr(_PIN, "cpu", None)
        if cpu is None or self.cpus == {cpu}:
            return
        try:
            os.sched_setaffinity(self.pid, {cpu})
        except OSError:
            return  # not allowed there (its cpuset): it only runs slower
        self.restore_cpus = self.cpus

    def _unpin(self) -> None:
        """Give the task the affinity it is to keep: its own, or the one restore set; one whose
        CPUs are not here falls back to the tracer's own CPUs."""
        if self.restore_cpus is None:
            return
        try:
            os.sched_setaffinity(self.pid, self.restore_cpus)
        except OSError:
            os.sched_setaffinity(self.pid, home_cpus())

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

    def _wait_event_stop(self) -> int:
        """Wait for the PTRACE_INTERRUPT stop; signals met on the way are delivered, not lost.
        The signal of the group stop the task is in, else 0."""
        for _ in range(64):
            st = self._wait()
            if (st >> 16) == lib.PTRACE_EVENT_STOP:
                # A task in group stop reports it here with its stop signal (else SIGTRAP).
                self._after_syscall = False
                sig = os.WSTOPSIG(st)
                return sig if sig in STOP_SIGNALS else 0
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
            self._syscall_at = self._known_vdso() or self._scan_vdso()
        return self._syscall_at

    def _known_vdso(self) -> int | None:
        """The syscall address when the block auxv names holds the vDSO found before, else None."""
        if _vdso is None:
            return None
        image, off = _vdso
        try:
            with open(f"/proc/{self.pid}/auxv", "rb") as f:
                auxv = f.read()
        except OSError:
            return None
        base = next((v for k, v in _AUXV.iter_unpack(auxv[:len(auxv) // 16 * 16]) if k == AT_SYSINFO_EHDR), 0)
        if not base:
            return None
        try:
            same = self.read(base, len(image)) == image
        except ProcessGone:
            raise
        except CkptError:  # moved away (mremap): nothing readable there
            return None
        return base + off if same else None

    def _scan_vdso(self) -> int:
        """The syscall address found through maps (and remembered for _known_vdso)."""
        global _vdso
        with open(f"/proc/{self.pid}/maps") as f:
            vdso = next((line.split()[0] for line in f if line.rstrip().endswith("[vdso]")), None)
        if vdso is None:
            raise CkptError(f"pid {self.pid} has no [vdso] to run remote syscalls from")
        start, end = (int(x, 16) for x in vdso.split("-"))
        image = self.read(start, end - start)
        off = image.find(SYSCALL_INSN)
        if off < 0:
            raise CkptError(f"pid {self.pid}: no syscall instruction in its vDSO")
        _vdso = (image, off)
        return start + off

    # --- remote syscalls ---------------------------------------------------------------------

    def syscall(self, nr: int, *args: int) -> int:
        """Run one syscall in the task; returns its result (negative errno on failure)."""
        return self.batch([(nr, *args)], must=False)[0]

    def batch(self, calls: Sequence[Sequence[int]], what: Sequence[str] | None = None, must: bool = True) -> list[int]:
        """Run syscalls (nr, args...) in order from C; their results. With must, a call that
        fails stops the batch with CkptError naming it (what[i], else its number)."""
        return self._run(calls, what, [lib.CKPT_MUST_OK if must else 0] * len(calls))

    def _run(self, calls: Sequence[Sequence[int]], what: Sequence[str] | None, musts: Sequence[int]) -> list[int]:
        """batch() with each call's own CKPT_MUST_* (or 0); self._state tells where it stopped."""
        n = len(calls)
        if n == 0:
            return []
        if n > len(self._calls):  # buffers kept for the next batch: most are of one call
            self._calls, self._results = ffi.new("struct ckpt_rcall[]", n), ffi.new("long[]", n)
        arr, results, st = self._calls, self._results, self._state
        for i, (nr, *args) in enumerate(calls):
            if len(args) > 6:
                raise ValueError("a syscall takes at most 6 arguments")
            one = arr[i]
            one.nr, one.must = nr, musts[i]
            one.args = [value & NO_SYSCALL for value in args] + _ZEROS[len(args):]
        self._after_syscall = True
        rc = lib.ckpt_remote_batch(self.pid, self.syscall_address(), self.saved, arr, n, results, st)
        if st.nspawned:
            self.spawned += [int(st.spawned[i]) for i in range(st.nspawned)]
        if rc == lib.CKPT_RC_OK:
            return ffi.unpack(results, n)
        name = what[st.index] if what else f"syscall {calls[st.index][0]}"
        if rc == lib.CKPT_RC_FAILED:
            got = results[st.index]
            why = os.strerror(-got) if got < 0 else f"returned {got:#x}"
            raise CkptError(f"pid {self.pid}: remote {name}: {why}")
        if rc == lib.CKPT_RC_GONE:
            raise ProcessGone(self.pid)
        if rc == lib.CKPT_RC_UNEXPECTED:
            stop = ("entry", "exit")[st.step]
            raise CkptError(f"pid {self.pid}: expected a syscall-{stop} stop, got status {st.status:#x}")
        raise_for(self.pid, f"{_STEPS.get(st.step, 'ptrace')} for remote {name}", st.err)

    def trace_clones(self) -> None:
        """Tasks this one forks, vforks or clones are traced from birth (PTRACE_O_TRACECLONE,
        FORK, VFORK)."""
        self._ptrace(lib.PTRACE_SETOPTIONS, "SETOPTIONS", data=lib.PTRACE_O_TRACESYSGOOD | lib.PTRACE_O_SUSPEND_SECCOMP
                     | lib.PTRACE_O_TRACECLONE | lib.PTRACE_O_TRACEFORK | lib.PTRACE_O_TRACEVFORK)

    def stop_at_vfork(self, nr: int, *args: int) -> int:
        """Run one syscall that makes a vfork child (see trace_clones) up to its
        PTRACE_EVENT_VFORK stop, where the child exists and the kernel has yet to wait for it
        (kernel_clone): the child's pid as we see it. The task stays in that stop: from here
        only ptrace requests (a syscall would wait for the child), until release_in_syscall()."""
        regs = ffi.new("struct user_regs_struct *", self.saved[0])
        regs.rip, regs.rax, regs.orig_rax = self.syscall_address(), nr, NO_SYSCALL
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value & NO_SYSCALL)
        self.set_regs(regs)
        self._after_syscall = True
        self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
        st = self._wait()
        for _ in range(4):  # a stop we asked for earlier may come first (see native/remote.c)
            if (st >> 16) != lib.PTRACE_EVENT_STOP:
                break
            self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
            st = self._wait()
        if not os.WIFSTOPPED(st) or os.WSTOPSIG(st) != signal.SIGTRAP | 0x80:
            raise CkptError(f"pid {self.pid}: expected a syscall-entry stop, got status {st:#x}")
        self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
        st = self._wait()
        if (st >> 16) != lib.PTRACE_EVENT_VFORK:
            rc = _signed(self.get_regs().rax)
            why = os.strerror(-rc) if -4096 < rc < 0 else f"status {st:#x}"
            raise CkptError(f"pid {self.pid}: remote vfork (syscall {nr}): {why}")
        child = ffi.new("unsigned long *")
        self._ptrace(lib.PTRACE_GETEVENTMSG, "GETEVENTMSG", data=child)
        return int(child[0])

    def release_in_syscall(self) -> None:
        """Let go a task stopped at a ptrace event inside a syscall (stop_at_vfork) with its
        saved registers, orig_rax too: the syscall goes on (/proc/PID/syscall shows it) and the
        kernel writes its return value."""
        self.set_regs(self.saved)
        self.release()

    def call(self, what: str, nr: int, *args: int) -> int:
        """A remote syscall that must succeed: its result, or CkptError naming `what`."""
        return self.batch([(nr, *args)], [what])[0]

    @contextmanager
    def scratch(self, size: int = 4096) -> Iterator[int]:
        """A private anonymous area mapped in the task for syscall arguments, unmapped after
        (or, for a task seized with keep_scratch, kept until detach: one map per dump)."""
        if self._kept is not None and self._kept[1] >= size:
            yield self._kept[0]
            return
        if self.areas_fixed:
            raise CkptError(f"pid {self.pid}: a scratch area of {size} bytes would change the areas "
                            "the page worker is reading")
        addr = self._map_scratch(size)
        if self.keep_scratch:
            self.drop_scratch()
            self._kept = (addr, size)
            yield addr
            return
        try:
            yield addr
        finally:
            self._unmap_scratch(addr, size)

    def with_scratch(self, calls: Callable[[int], Sequence[Sequence[int]]], what: Sequence[str],
                     read: int, size: int = 4096) -> tuple[list[int], bytes]:
        """Run calls(buf) as one batch, buf a scratch area of `size` bytes (as scratch()): their
        results and the first `read` bytes of the area after them. A task that keeps its area
        and has none yet gets it mapped at SCRATCH_AT by that same batch, a stop and a wakeup
        less; elsewhere if that is taken."""
        if self.keep_scratch and self._kept is None and not self.areas_fixed:
            first = (SYS_MMAP, SCRATCH_AT, size, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_SHARED | mmap.MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            rest = calls(SCRATCH_AT)
            try:
                got = self._run([first, *rest], ["mmap of a scratch page", *what],
                                [lib.CKPT_MUST_AT] + [lib.CKPT_MUST_OK] * len(rest))
                self._kept = (SCRATCH_AT, size)
                return got[1:], self.read(SCRATCH_AT, read)
            except CkptError:
                if self._state.index > 0:  # mapped, then a later call failed: the area is ours
                    self._kept = (SCRATCH_AT, size)
                    raise
                if self._state.rc != lib.CKPT_RC_FAILED:
                    raise
                if (elsewhere := int(self._results[0])) > 0:  # a kernel that took it for a hint
                    self._unmap_scratch(elsewhere, size)
        with self.scratch(size) as buf:
            return self.batch(calls(buf), what), self.read(buf, read)

    def _map_scratch(self, size: int) -> int:
        # Shared anonymous: its own object, so it never merges with an area of the task's.
        addr = self.syscall(SYS_MMAP, 0, size, mmap.PROT_READ | mmap.PROT_WRITE,
                            mmap.MAP_SHARED | mmap.MAP_ANONYMOUS, -1, 0)
        if addr < 0:
            raise CkptError(f"pid {self.pid}: remote mmap of a scratch page: {os.strerror(-addr)}")
        return addr

    def _unmap_scratch(self, addr: int, size: int) -> None:
        rc = self.syscall(SYS_MUNMAP, addr, size)
        if rc < 0:
            raise CkptError(f"pid {self.pid}: remote munmap of the scratch page: {os.strerror(-rc)}")

    def kept_scratch(self) -> tuple[int, int] | None:
        """The kept scratch area (start, end), which is ours and not the task's."""
        return None if self._kept is None else (self._kept[0], self._kept[0] + self._kept[1])

    def drop_scratch(self) -> None:
        """Unmap the kept scratch area, if any."""
        if self._kept is not None:
            addr, size = self._kept
            self._kept = None
            self._unmap_scratch(addr, size)

    def detach(self, own_restart_block: bool = False) -> None:
        """Put the saved registers back and let go. A task stopped inside an interrupted
        syscall is let go from a stop within the kernel's signal code, so the kernel applies
        its own restart rules on the way out: a signal with a handler arriving first makes the
        call return EINTR (or restart, with SA_RESTART) exactly as it would have. Its restart
        block (clock_nanosleep's remaining time, say) is trusted only if own_restart_block:
        the task's own, never a restored one's."""
        self.drop_scratch()
        regs = ffi.new("struct user_regs_struct *", self.saved[0])
        code = -_signed(regs.rax) if _signed(regs.orig_rax) >= 0 else 0
        if code == ERESTART_RESTARTBLOCK and not own_restart_block:
            regs.rax = -4 & NO_SYSCALL  # EINTR: the restart block cannot be carried over
            code = 0
        if code in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK):
            if self._after_syscall:
                self._to_signal_stop()
        else:
            regs.orig_rax = NO_SYSCALL  # no syscall to restart: rip and rax stay as set
        self.set_regs(regs)
        self.release()

    def _to_signal_stop(self) -> None:
        """From the syscall-exit stop of our last remote call (where a detached task goes
        straight back to user space) to a PTRACE_EVENT_STOP inside get_signal(), after which
        the kernel runs its syscall restart rules (arch/x86/kernel/signal.c)."""
        self._ptrace(lib.PTRACE_INTERRUPT, "INTERRUPT")
        self._ptrace(lib.PTRACE_CONT, "CONT")
        self._wait_event_stop()

    def exit_alone(self, code: int) -> int:
        """Make this stopped thread exit by itself with `code` (a remote SYS_exit, not
        exit_group: its other threads live on), with its own mask and affinity back, and let
        it go at its PTRACE_EVENT_EXIT stop; the wait status it exits with. A traced main
        thread that dies while others live is a zombie its tracer can neither collect nor
        detach, and its parent could not reap the process until the tracer did: let go
        before it dies, it is its parent's zombie alone. Its clear_child_tid and robust list
        are dropped first: they were a stub's, and its exit would write through them."""
        self.batch([(lib.SYS_set_tid_address, 0), (lib.SYS_set_robust_list, 0, ROBUST_LIST_HEAD)],
                   ["set_tid_address(NULL)", "set_robust_list(NULL)"])
        self._ptrace(lib.PTRACE_SETOPTIONS, "SETOPTIONS", data=lib.PTRACE_O_TRACESYSGOOD
                     | lib.PTRACE_O_SUSPEND_SECCOMP | lib.PTRACE_O_TRACEEXIT)
        regs = ffi.new("struct user_regs_struct *", self.saved[0])
        regs.rip, regs.rax, regs.rdi, regs.orig_rax = self.syscall_address(), SYS_EXIT, code, NO_SYSCALL
        self.set_regs(regs)
        self._ptrace(lib.PTRACE_SYSCALL, "SYSCALL")
        self._expect(signal.SIGTRAP | 0x80, f"syscall-entry stop of a remote exit({code})")
        # Its own mask only now: signals are delivered on the way back to user space, which
        # an exit at its syscall entry never takes.
        self.set_sigmask(self.mask)
        self._unpin()
        self._ptrace(lib.PTRACE_CONT, "CONT")
        self._expect(signal.SIGTRAP | lib.PTRACE_EVENT_EXIT << 8, f"exit stop of a remote exit({code})")
        msg = ffi.new("unsigned long *")
        self._ptrace(lib.PTRACE_GETEVENTMSG, "GETEVENTMSG", data=msg)
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        self._ptrace(lib.PTRACE_DETACH, "DETACH")
        return int(msg[0])

    def _expect(self, stop: int, what: str) -> None:
        """Wait for the next stop, which must be this one (status >> 8)."""
        st = self._wait()
        if st >> 8 != stop:
            raise CkptError(f"pid {self.pid}: expected the {what}, got status {st:#x}")

    def kill(self) -> None:
        """SIGKILL the stopped task's process and collect this thread's exit as its tracer (the
        parent, if another process, then sees the zombie). A thread-group leader is only
        collected once its other traced threads are: kill those first."""
        self.signal_kill()
        self.collect()

    def signal_kill(self, cpu: int | None = None) -> None:
        """SIGKILL the task's process (collect() waits for this thread's end); with a cpu, the
        thread is moved there first, to run its exit there."""
        if cpu is not None:
            try:
                os.sched_setaffinity(self.pid, {cpu})
            except OSError:
                pass  # gone, or not allowed there: it dies where it is
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def collect(self) -> None:
        """Wait for this killed thread's end, as its tracer."""
        status = ffi.new("int *")
        while lib.waitpid(self.pid, status, WALL) < 0 and ffi.errno == 4:
            pass
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None

    def park(self) -> None:
        """Let go into pause(2) with every signal blocked, nothing of the task run (for another
        tracer to seize it: engine.restorehelper); SIGKILL still ends it."""
        unblockable = 1 << (signal.SIGKILL - 1) | 1 << (signal.SIGSTOP - 1)
        if self.sigmask() | unblockable != (1 << 64) - 1:
            raise CkptError(f"pid {self.pid}: not every signal is blocked; it cannot wait parked")
        regs = ffi.new("struct user_regs_struct *", self.get_regs()[0])
        regs.rip, regs.rax, regs.orig_rax = self.syscall_address(), lib.SYS_pause, NO_SYSCALL
        self.set_regs(regs)
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        self._ptrace(lib.PTRACE_DETACH, "DETACH")

    def release(self) -> None:
        """PTRACE_DETACH as the task stands (its registers already set), its mask back."""
        self.set_sigmask(self.mask)
        self._unpin()
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
        self._ptrace(lib.PTRACE_DETACH, "DETACH")
