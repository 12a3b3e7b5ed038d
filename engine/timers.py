"""Timers, dump and restore side by side: the three itimers and every POSIX timer. The timer
list, ids, clocks and notifications come from /proc/PID/timers (proc(5)); settings and
overruns from remote timer_gettime/timer_getoverrun/getitimer. Restore creates each timer with
its own id (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15) and arms it with the time it had left at
dump: the time between dump and restore does not count, and TIMER_ABSTIME (invisible in /proc)
is lost. A timer whose own signal was queued, or whose last signal carried overruns, is put
back in that state by letting it expire in the stub, where every signal is blocked."""
from __future__ import annotations

import functools
import os
import signal
import struct
import time
from dataclasses import dataclass, field

from engine import signals, threads
from engine.errors import CkptError, ProcessGone, Unsupported
from engine.images.core_pb2 import PendingSignal
from engine.images.timers_pb2 import ITimer, PosixTimer, Timers
from engine.mm import Layout
from engine.ptrace import Tracee
from native import lib

KIND = "timers"

# asm/unistd_64.h: not in native.lib
SYS_RT_SIGTIMEDWAIT, SYS_TIMER_GETOVERRUN, SYS_CLOCK_GETTIME = 128, 225, 228
# uapi/linux/prctl.h (Linux 6.15): while on, timer_create() takes the id from *created_timer_id
PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, RESTORE_IDS_ON = 77, 0, 1
# uapi/asm-generic/siginfo.h, uapi/linux/time.h
SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD, SIGEV_THREAD_ID = 0, 1, 2, 4
NOTIFY = {"signal": SIGEV_SIGNAL, "none": SIGEV_NONE, "thread": SIGEV_THREAD}
SI_TIMER = -2
TIMER_ABSTIME = 1
ITIMERS = ("real", "virt", "prof")  # ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF = 0, 1, 2

TIMESPEC = struct.Struct("<qq")
PAIR = struct.Struct("<qqqq")  # itimerspec / itimerval: interval then value, each (s, ns|us)
SIGEVENT = struct.Struct("<Qiii44x")  # sigev_value, sigev_signo, sigev_notify, _tid: 64 bytes
TIMER_ID = struct.Struct("<i")  # the kernel's timer_t
SIGINFO = struct.Struct("<iii4xii")  # si_signo, si_errno, si_code, si_tid (timer id), si_overrun
SIGSET = struct.Struct("<Q")
NS, US = 10**9, 10**6

# lay.scratch offsets of the arguments below
SIGEV_AT, ID_AT, SPEC_AT, NOW_AT, WAIT_AT, SET_AT, INFO_AT = 0, 64, 128, 160, 192, 256, 384

# Clocks the tracer can read for the task: a timer clock -> the clock to read. The alarm
# clocks read as REALTIME and BOOTTIME; MONOTONIC and BOOTTIME only when tracer and task share
# their time namespace (time_namespaces(7)). CPU clocks are the task's own: read remotely.
GLOBAL_CLOCKS = {0: 0, 8: 0, 11: 11}
NS_CLOCKS = {1: 1, 7: 7, 9: 7}

# Clocks that keep running while the task is frozen or gone: REALTIME, MONOTONIC, BOOTTIME,
# REALTIME_ALARM, BOOTTIME_ALARM, TAI.
RUNNING_CLOCKS = {0, 1, 7, 8, 9, 11}

SAFETY_NS = 3_000_000  # margin past the expected remote-call latency when replaying overruns
WAIT_NS = 100_000_000  # longest wait for a replayed timer to expire again
TRIES = 20  # replays of an overrun: the remote-call latency of a busy machine varies by ms
POLL_S = 0.0002


@dataclass(frozen=True, slots=True)
class ProcTimer:
    """One timer as /proc/PID/timers shows it."""

    id: int
    signo: int
    value: int
    notify: int
    target: int
    clock: int


def _parse(block: dict[str, str]) -> ProcTimer:
    signo, _, value = block["signal"].partition("/")
    kind, _, who = block["notify"].partition("/")
    scope, _, target = who.partition(".")
    notify = NOTIFY[kind] | (SIGEV_THREAD_ID if scope == "tid" else 0)
    return ProcTimer(int(block["ID"]), int(signo), int(value, 16), notify, int(target), int(block["ClockID"]))


def proc_timers(pid: int) -> list[ProcTimer]:
    """The task's POSIX timers by ascending id; a block starts at its "ID:" line."""
    try:
        with open(f"/proc/{pid}/timers") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        if not os.path.exists(f"/proc/{pid}"):
            raise ProcessGone(pid) from None
        raise Unsupported("POSIX timers: no /proc/PID/timers (CONFIG_CHECKPOINT_RESTORE off)") from None
    blocks: list[dict[str, str]] = []
    for line in lines:
        key, _, val = line.partition(":")
        if key == "ID":
            blocks.append({})
        if blocks:
            blocks[-1][key] = val.strip()
    return sorted((_parse(b) for b in blocks), key=lambda p: p.id)


def _lands_here(p: PosixTimer) -> bool:
    """Its signal goes to the queues of the task itself (shared, or its own thread's)."""
    return p.notify != SIGEV_NONE and not (p.notify & SIGEV_THREAD_ID and p.target)


def _is_own(q: PendingSignal, p: PosixTimer | ProcTimer) -> bool:
    """A queued signal that is this timer's: its number, SI_TIMER, its id, its queue."""
    signo, _, code, timerid, _ = SIGINFO.unpack_from(q.siginfo)
    return (signo, code, timerid) == (p.signo, SI_TIMER, p.id) and q.shared != bool(p.notify & SIGEV_THREAD_ID)


def _inner(tid: int) -> int:
    """A thread's id as its own process sees it (the restore creates timers from inside)."""
    return threads.nstids(tid)[-1]


@functools.cache
def _boot_id() -> str:
    """This boot's id: read once per process, it does not change."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def idle(pid: int) -> Timers:
    """The timers of a task that has none armed or made (checked by the caller)."""
    return Timers(pid=pid, boot_id=_boot_id(), taken_ns=time.monotonic_ns())


ITIMER_CALLS = [f"getitimer({which})" for which in range(len(ITIMERS))]
ITIMERS_SIZE = len(ITIMERS) * PAIR.size


def itimer_calls(buf: int) -> list[tuple[int, ...]]:
    """The remote calls that write the three itimers (struct itimerval each) from buf on."""
    return [(lib.SYS_getitimer, which, buf + which * PAIR.size) for which in range(len(ITIMERS))]


def dump(t: Tracee, others: list[Tracee]) -> Timers:
    """The itimers and every POSIX timer of the (seized) task; its other threads (`others`)
    have none of their own: timers belong to the process."""
    msg = Timers(pid=t.tgid, boot_id=_boot_id())
    queued = signals.pending(t)
    answers = t.answers  # the dump's questions (engine.questions), if asked (or told) already
    listed = [] if answers is not None and answers.no_posix_timers else proc_timers(t.pid)
    if answers is not None:
        raw = answers.itimers
    else:
        with t.scratch() as buf:
            t.batch(itimer_calls(buf), ITIMER_CALLS)
            raw = t.read(buf, ITIMERS_SIZE)
    for name, (isec, iusec, vsec, vusec) in zip(ITIMERS, PAIR.iter_unpack(raw)):
        getattr(msg, name).CopyFrom(ITimer(value_us=vsec * US + vusec, interval_us=isec * US + iusec))
    msg.real.pending = any(q.shared and SIGINFO.unpack_from(q.siginfo)[0] == signal.SIGALRM for q in queued)
    if listed:  # (a scratch area only then: a task told by the kernel has none, nor timers)
        with t.scratch() as buf:
            for p in listed:
                t.call(f"timer_gettime({p.id})", lib.SYS_timer_gettime, p.id, buf)
                isec, insec, vsec, vnsec = PAIR.unpack(t.read(buf, PAIR.size))
                overrun = t.call(f"timer_getoverrun({p.id})", SYS_TIMER_GETOVERRUN, p.id)
                # The first queued match is the timer's own: the kernel queues that one only once.
                pending = p.notify != SIGEV_NONE and any(_is_own(q, p) for q in queued)
                value_ns = vsec * NS + vnsec
                msg.posix.add(id=p.id, clock=p.clock, notify=p.notify, signo=p.signo, value=p.value,
                              target=0 if p.target == t.tgid else _inner(p.target), armed=value_ns > 0 or pending,
                              value_ns=value_ns, interval_ns=isec * NS + insec, overrun=overrun, pending=pending)
    msg.taken_ns = time.monotonic_ns()
    return msg


# --- restore -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Stub:
    """The task being rebuilt, and how long its remote calls take (learnt as they run)."""

    t: Tracee
    lay: Layout
    local: dict[int, int] = field(default_factory=dict)  # GLOBAL_CLOCKS and NS_CLOCKS that apply
    latency: int = 0  # ns from reading the clock to taking a signal: a settime and half a take

    def now(self, clock: int) -> int:
        """The timer's clock as the task reads it."""
        if clock in self.local:
            return time.clock_gettime_ns(self.local[clock])
        self.t.call(f"clock_gettime({clock})", SYS_CLOCK_GETTIME, clock, self.lay.scratch + NOW_AT)
        sec, nsec = TIMESPEC.unpack(self.t.read(self.lay.scratch + NOW_AT, TIMESPEC.size))
        return sec * NS + nsec

    def settime(self, p: PosixTimer, flags: int, value_ns: int, interval_ns: int) -> None:
        self.t.write(self.lay.scratch + SPEC_AT,
                     PAIR.pack(interval_ns // NS, interval_ns % NS, value_ns // NS, value_ns % NS))
        self.t.call(f"timer_settime({p.id})", lib.SYS_timer_settime, p.id, flags, self.lay.scratch + SPEC_AT, 0)

    def overrun(self, p: PosixTimer) -> int:
        return self.t.call(f"timer_getoverrun({p.id})", SYS_TIMER_GETOVERRUN, p.id)

    def will_take(self, sigs: set[int], wait_ns: int) -> None:
        """Write the arguments of the next take()s: which signals, how long to wait."""
        self.t.write(self.lay.scratch + SET_AT, SIGSET.pack(sum(1 << (s - 1) for s in sigs)))
        self.t.write(self.lay.scratch + WAIT_AT, TIMESPEC.pack(wait_ns // NS, wait_ns % NS))

    def take(self) -> int:
        """Dequeue one queued signal (rt_sigtimedwait): its number, or -errno."""
        return self.t.syscall(SYS_RT_SIGTIMEDWAIT, self.lay.scratch + SET_AT, self.lay.scratch + INFO_AT,
                              self.lay.scratch + WAIT_AT, SIGSET.size)

    def measure(self) -> None:
        """A first latency: one remote call and a half."""
        marks = [time.monotonic_ns()]
        for _ in range(2):
            self.t.call("getpid", lib.SYS_getpid)
            marks.append(time.monotonic_ns())
        self.latency = marks[1] - marks[0] + (marks[2] - marks[1]) // 2


def _stub(t: Tracee, lay: Layout) -> _Stub:
    s = _Stub(t, lay, dict(GLOBAL_CLOCKS))
    try:
        if os.readlink(f"/proc/{t.pid}/ns/time") == os.readlink("/proc/self/ns/time"):
            s.local.update(NS_CLOCKS)
    except OSError:
        pass  # no time namespaces: read them remotely all the same
    return s


def _setitimer(s: _Stub, which: int, value_us: int, interval_us: int) -> int:
    """Arm an itimer; the time left it then reads (getitimer)."""
    at = s.lay.scratch + SPEC_AT
    s.t.write(at, PAIR.pack(interval_us // US, interval_us % US, value_us // US, value_us % US))
    s.t.call(f"setitimer({which})", lib.SYS_setitimer, which, at, 0)
    s.t.call(f"getitimer({which})", lib.SYS_getitimer, which, at)
    _, _, vsec, vusec = PAIR.unpack(s.t.read(at, PAIR.size))
    return vsec * US + vusec


def _restore_itimers(s: _Stub, msg: Timers) -> None:
    for which, name in enumerate(ITIMERS):
        it = getattr(msg, name)
        value = it.value_us
        if name == "real" and not value and it.interval_us and it.pending:
            # Expired with SIGALRM queued: the kernel re-arms it when SIGALRM is taken, if it
            # has an interval. Expiring at once adds nothing: SIGALRM is pending already.
            value = 1
        if not value:
            continue
        extra = _setitimer(s, which, value, it.interval_us) - value
        if name != "real" and extra > 0:
            # The kernel adds a tick to a CPU itimer (set_cpu_itimer, kernel/time/itimer.c),
            # and the time left at dump holds its tick already: take the new one off.
            _setitimer(s, which, max(1, value - extra), it.interval_us)


def _create(s: _Stub, timers: list[PosixTimer]) -> None:
    """Every timer with its id, in ascending order so that the next timer_create() of the task
    gets the id after the highest, as it would have."""
    t, at = s.t, s.lay.scratch
    me = t.call("getpid", lib.SYS_getpid)
    rc = t.syscall(lib.SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_ON, 0, 0, 0)
    if rc < 0:
        raise Unsupported(f"POSIX timers keep their ids only with PR_TIMER_CREATE_RESTORE_IDS "
                          f"(Linux 6.15): {os.strerror(-rc)}")
    try:
        for p in timers:
            tid = (p.target or me) if p.notify & SIGEV_THREAD_ID else 0
            t.write(at + SIGEV_AT, SIGEVENT.pack(p.value, p.signo, p.notify, tid) + TIMER_ID.pack(p.id))
            t.call(f"timer_create(id {p.id})", lib.SYS_timer_create, p.clock, at + SIGEV_AT, at + ID_AT)
            (got,) = TIMER_ID.unpack(t.read(at + ID_AT, TIMER_ID.size))
            if got != p.id:
                raise CkptError(f"pid {t.pid}: timer {p.id} came back as timer {got}")
    except BaseException:
        # Best effort: the restore fails anyway, and the first error is the one to report.
        t.syscall(lib.SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, RESTORE_IDS_OFF, 0, 0, 0)
        raise
    t.call("prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)", lib.SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS,
           RESTORE_IDS_OFF, 0, 0, 0)


def _replay_overrun(s: _Stub, p: PosixTimer) -> int | None:
    """Give timer_getoverrun() its value back. The kernel sets it only when the timer's signal
    is taken (timer_settime() clears it), to the intervals its re-arm forwards over: so arm the
    timer at an expiry (overrun + 1) intervals before its next one, which expires at once, and
    take its signal within the last of those intervals. The next expiry keeps the time left at
    dump if that leaves the expected latency plus a margin, else it is that far ahead. Returns
    the next expiry on the timer's clock, or None if the clock does not reach back so far."""
    iv = p.interval_ns
    s.will_take({p.signo}, WAIT_NS)  # before the clock is read: only two calls in between
    now = s.now(p.clock)
    start = time.monotonic_ns()
    margin = min(iv // 2, SAFETY_NS)
    delta = p.value_ns
    if not s.latency + margin <= delta <= iv or (p.pending and delta > WAIT_NS):
        delta = s.latency + margin  # the phase of the timer is lost, by less than one interval
    first = now + delta - (p.overrun + 1) * iv
    if first <= 0:
        return None
    s.settime(p, TIMER_ABSTIME, first, iv)
    armed = time.monotonic_ns()
    s.take()  # another timer's signal may come first: the overruns are checked after
    s.latency = armed - start + (time.monotonic_ns() - armed) // 2
    return now + delta


def _replay_overruns(s: _Stub, timers: list[PosixTimer]) -> dict[int, int]:
    """Timer id -> its next expiry, for the timers given their overrun back. A replay misses
    when the remote calls took longer than expected, and timers sharing a signal may take each
    other's: replay those again, up to TRIES rounds (then the last replay stands)."""
    nexts: dict[int, int] = {}
    todo = list(timers)
    if todo:
        s.measure()
    for _ in range(TRIES):
        for p in todo:
            at = _replay_overrun(s, p)
            if at is not None:
                nexts[p.id] = at
        todo = [p for p in timers if p.id in nexts and s.overrun(p) != p.overrun]
        if not todo:
            break
    return nexts


def _drain(s: _Stub, sigs: set[int]) -> list[PendingSignal]:
    """Take every queued signal of these numbers out (thread queue, then process queue), so
    that the timers' own signals can be put back in their places."""
    held = [q for q in signals.pending(s.t) if SIGINFO.unpack_from(q.siginfo)[0] in sigs]
    if held:
        s.will_take(sigs, 0)
    for _ in held:
        sig = s.take()
        if sig < 0:
            raise CkptError(f"pid {s.t.pid}: remote rt_sigtimedwait: {os.strerror(-sig)}")
    return held


def _queue_own(s: _Stub, p: PosixTimer, next_at: int | None) -> None:
    """Have the timer queue its own signal, as the kernel had before dump: expired, a
    periodic one waits for that signal to be taken to be re-armed (and count overruns)."""
    now = s.now(p.clock)
    if next_at is None:
        # Expire it at once: at its last expiry, one interval before its next (a periodic
        # one then forwards from there when its signal is taken); a one-shot just before now.
        iv = p.interval_ns
        last = now + min(p.value_ns, iv) - iv if iv else now - 1
        s.settime(p, TIMER_ABSTIME, max(1, last), iv)
        next_at = now
    # else its overrun was given back: it must not be re-armed, wait for its next expiry.
    deadline = time.monotonic() + max(0, next_at - now) / NS + 0.2
    while not any(_is_own(q, p) for q in signals.pending(s.t)) and time.monotonic() < deadline:
        time.sleep(POLL_S)


def _requeue(s: _Stub, held: list[PendingSignal], own: dict[int, PosixTimer], nexts: dict[int, int]) -> None:
    """Put the drained signals back in order, each timer's own one by the timer itself."""
    t, info = s.t, s.lay.scratch + INFO_AT
    me = t.call("getpid", lib.SYS_getpid) if held else 0
    tid = t.call("gettid", lib.SYS_gettid) if held else 0
    for q in held:
        sig, _, code, timerid, _ = SIGINFO.unpack_from(q.siginfo)
        p = own.get(timerid) if code == SI_TIMER else None
        if p is not None and _is_own(q, p):
            _queue_own(s, own.pop(timerid), nexts.get(timerid))
            continue
        t.write(info, q.siginfo)
        if q.shared:
            t.call(f"rt_sigqueueinfo({sig})", lib.SYS_rt_sigqueueinfo, me, sig, info)
        else:
            t.call(f"rt_tgsigqueueinfo({sig})", lib.SYS_rt_tgsigqueueinfo, me, tid, sig, info)
    for p in own.values():  # queued after the signals were dumped: no copy to replace
        _queue_own(s, p, nexts.get(p.id))


def _restore_posix(s: _Stub, timers: list[PosixTimer]) -> None:
    """Create them, replay overruns and queued signals, arm the others."""
    _create(s, timers)
    here = [p for p in timers if _lands_here(p)]
    replay = [p for p in here if p.overrun > 0 and p.interval_ns]
    own = {p.id: p for p in here if p.pending}
    held = _drain(s, {p.signo for p in replay} | {p.signo for p in own.values()})
    nexts = _replay_overruns(s, replay)
    done = set(nexts) | set(own)
    _requeue(s, held, own, nexts)
    for p in timers:
        if p.id not in done and p.value_ns:
            s.settime(p, 0, p.value_ns, p.interval_ns)


def _left(value: int, interval: int, elapsed: int) -> int:
    """Time left once `elapsed` more has passed: a periodic timer keeps its phase (the
    expiries it missed meanwhile are lost), a one-shot one that is due expires at once."""
    if value <= elapsed:
        return interval - (elapsed - value) % interval if interval else 1
    return value - elapsed


def compensate(msg: Timers, now_ns: int, boot_id: str) -> Timers:
    """The timers as they stand `now_ns` (CLOCK_MONOTONIC): the time since the dump taken off
    those whose clocks kept running; unchanged on another boot (the clocks restarted)."""
    out = Timers()
    out.CopyFrom(msg)
    if msg.boot_id != boot_id or now_ns <= msg.taken_ns:
        return out
    elapsed = now_ns - msg.taken_ns
    for p in out.posix:
        # A periodic one with its signal queued reads the time to its next expiry: the same.
        if p.clock in RUNNING_CLOCKS and p.value_ns:
            p.value_ns = _left(p.value_ns, p.interval_ns, elapsed)
    it = out.real
    if it.value_us and not it.pending:
        it.value_us = _left(it.value_us, it.interval_us, elapsed // 1000)
    out.taken_ns = now_ns
    return out


def restore(t: Tracee, lay: Layout, msg: Timers) -> None:
    """The POSIX timers, then the itimers. Runs after the signals part: the copies of timer
    signals it queued are replaced by the timers' own."""
    s = _stub(t, lay)
    msg = compensate(msg, time.monotonic_ns(), _boot_id())
    if msg.posix:
        _restore_posix(s, list(msg.posix))
    # Last: an ITIMER_REAL expiring at once must not put a SIGALRM among drained signals.
    _restore_itimers(s, msg)
