"""Memory transfer of the ckpt engine against this machine's own limits: dump rate against a
write into the page cache, restore rate against the first touch of fresh memory, and the fixed
cost of a trivial dump + restore. Every restored victim must find its memory intact.

Run on demand, never in CI: python benchmarks/ckpt_memory.py [--sizes 64M,1G] [--repeat N]
"""
from __future__ import annotations

import argparse
import mmap
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import engine

GIB = 1 << 30
LIMIT_SIZE = GIB  # the machine's limits are measured with 1 GiB, whatever --sizes says
TRIVIAL_SIZE = 4096
DUMP_TARGET = 0.65  # dump rate / page-cache write rate, at least
RESTORE_TARGET = 0.9  # restore rate / first-touch rate, at least
TRIVIAL_TARGET = 0.07  # seconds for dump + restore of a trivial process, at most
READY_TIMEOUT = VERIFY_TIMEOUT = 120.0
HELPER_SRC = Path(__file__).with_name("ckpt_memory_helper.c")
UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MADV_POPULATE_WRITE = 23  # <linux/mman.h>, 5.14


class VerifyFailed(Exception):
    """A restored victim did not find its memory as it was dumped."""


@dataclass(slots=True)
class Timings:
    """Seconds of every repeat of each measurement, by name."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        """Record one run."""
        self.runs.setdefault(name, []).append(seconds)

    def best(self, name: str) -> float:
        """The fastest run (the one least disturbed by other work on the machine)."""
        return min(self.runs[name])

    def median(self, name: str) -> float:
        """The middle run (the lower of the two middle ones for an even count)."""
        runs = sorted(self.runs[name])
        return runs[(len(runs) - 1) // 2]


def _inherited_fds() -> list[int]:
    """Our fds above 2 that a child would inherit (not close-on-exec)."""
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if int(name) > 2 and os.get_inheritable(int(name)):
                fds.append(int(name))
        except OSError:  # the fd listdir itself used, closed by now
            pass
    return fds


class Processes:
    """Every process this benchmark starts or gets back from a restore: killed and reaped at the end."""

    def __init__(self) -> None:
        self.live: set[int] = set()

    def spawn(self, argv: list[str], out: Path) -> int:
        """Start argv as a session leader (setsid), stdin /dev/null, stdout and stderr into out,
        no other fd. A pipe would do for stdout, but the engine dumps regular files and devices
        only, and refuses whatever fds we inherited ourselves (a pipe of our own parent, say)."""
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
            (os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds()]
        actions += [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                    (os.POSIX_SPAWN_DUP2, 1, 2)]
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsid=True)
        self.live.add(pid)
        return pid

    def adopt(self, pid: int) -> None:
        """A restored process (a child of ours, engine.restore says so)."""
        self.live.add(pid)

    def gone(self, pid: int) -> None:
        """Collect a process someone else killed; the engine's tracer may have reaped it already."""
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self.live.discard(pid)

    def wait(self, pid: int, timeout: float) -> int | None:
        """Its wait status once it exits, None after timeout seconds (it is then still ours)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got == pid:
                self.live.discard(pid)
                return status
            time.sleep(0.002)
        return None

    def kill_all(self) -> None:
        """SIGKILL and reap everything still ours."""
        for pid in sorted(self.live):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.gone(pid)


def prime(size: int) -> None:
    """Touch and free 1.5 times the memory a timed step is about to allocate, right before it.

    On this VM (virtio-balloon free page reporting) a page freed long ago costs several times a
    page freed just now when it is allocated again, all of it in system time: a 1 GiB
    page-cache write took 0.3-0.4 s right after memory was freed and 1.3-3.2 s otherwise. Which
    one a step got depended on what the step before it freed (a dump's page cache came cold
    because its victim had just taken the warm pages), so every timed step, the references
    included, now starts from the same state: memory freed a moment ago, as on bare metal. Not
    more than that: freeing memory wakes the reporting, which then competes for the CPUs."""
    m = mmap.mmap(-1, size + size // 2)
    try:
        m.madvise(MADV_POPULATE_WRITE)
    finally:
        m.close()


def build(tmp: Path) -> Path:
    """Compile the C helper (touch and victim) into tmp."""
    exe = tmp / "ckpt_memory_helper"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HELPER_SRC)], check=True)
    return exe


def page_cache_write(directory: Path) -> float:
    """Seconds to write a 1 GiB buffer into a new file of directory, without fsync."""
    buf = mmap.mmap(-1, LIMIT_SIZE)
    pattern = os.urandom(1 << 20)
    for off in range(0, LIMIT_SIZE, len(pattern)):
        buf[off:off + len(pattern)] = pattern  # every page touched and non-zero before timing
    path = directory / "page-cache-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with memoryview(buf) as view:
            prime(LIMIT_SIZE)
            t0 = time.perf_counter()
            done = 0
            while done < LIMIT_SIZE:
                done += os.write(fd, view[done:])
            seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink()
        buf.close()
    return seconds


def first_touch(helper: Path) -> float:
    """Seconds to write one byte per page of 1 GiB of fresh anonymous memory (timed in C)."""
    prime(LIMIT_SIZE)
    out = subprocess.run([str(helper), "touch", str(LIMIT_SIZE)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def start_victim(procs: Processes, helper: Path, work: Path, size: int, seed: int) -> int:
    """A victim of size bytes of random memory, waiting for SIGUSR1; returns once it is ready."""
    out = work / f"victim-{seed}.out"
    pid = procs.spawn([str(helper), "victim", str(size), str(seed)], out)
    deadline = time.monotonic() + READY_TIMEOUT
    while b" ready " not in out.read_bytes():
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            procs.live.discard(pid)
            raise RuntimeError(f"victim {pid} exited before ready (status {status:#x}): {out.read_text()!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"victim {pid} not ready after {READY_TIMEOUT:.0f}s")
        time.sleep(0.005)
    return pid


def cycle(procs: Processes, helper: Path, work: Path, size: int, seed: int) -> tuple[float, float]:
    """Dump a fresh victim of size bytes, restore it and have it verify its memory: (dump s, restore s)."""
    pid = start_victim(procs, helper, work, size, seed)
    images = work / f"images-{seed}"
    try:
        prime(size)
        t0 = time.perf_counter()
        engine.dump([pid], images)
        dumped = time.perf_counter() - t0
        procs.gone(pid)  # engine.dump killed it; its pid must be free again for the restore
        prime(size)
        t0 = time.perf_counter()
        roots = engine.restore(images)
        restored = time.perf_counter() - t0
    finally:
        shutil.rmtree(images, ignore_errors=True)
    for r in roots:
        procs.adopt(r)
    if roots != [pid]:
        raise VerifyFailed(f"restore gave pids {roots}, expected [{pid}]")
    os.kill(pid, signal.SIGUSR1)
    status = procs.wait(pid, VERIFY_TIMEOUT)
    said = (work / f"victim-{seed}.out").read_text().strip().replace("\n", " | ")
    if status is None:
        raise VerifyFailed(f"restored pid {pid} ({size} bytes) did not exit {VERIFY_TIMEOUT:.0f}s after SIGUSR1: {said}")
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        raise VerifyFailed(f"restored pid {pid} ({size} bytes) failed its memory check, wait status "
                           f"{status:#x}: {said}")
    return dumped, restored


def human(size: int) -> str:
    """64M-style size label."""
    for unit, n in sorted(UNITS.items(), key=lambda u: -u[1]):
        if size % n == 0:
            return f"{size // n} {unit}iB"
    return f"{size} B"


def parse_sizes(text: str) -> list[int]:
    """'64M,1G' -> bytes; each a positive multiple of the page size."""
    sizes = []
    for item in text.split(","):
        item = item.strip().upper().removesuffix("B").removesuffix("I")
        n = int(item[:-1]) * UNITS[item[-1]] if item and item[-1] in UNITS else int(item)
        if n <= 0 or n % 4096:
            raise ValueError(f"{item}: not a positive multiple of 4096 bytes")
        sizes.append(n)
    return sizes


def verdict(ok: bool) -> str:
    """The table's PASS/MISS column."""
    return "PASS" if ok else "**MISS**"


def report(t: Timings, sizes: list[int], repeat: int) -> list[str]:
    """Print the Markdown table; return the summary lines of the ratios."""
    mb = 1e6

    def runs(name: str) -> str:
        return ", ".join(f"{s:.3f}" for s in t.runs[name])

    pc, touch = LIMIT_SIZE / t.best("pagecache") / mb, LIMIT_SIZE / t.best("touch") / mb
    print(f"| measure | size | best s (of {repeat}) | runs s | MB/s | ratio | target | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| page-cache write, no fsync | {human(LIMIT_SIZE)} | {t.best('pagecache'):.3f} | {runs('pagecache')} "
          f"| {pc:.0f} | | | |")
    print(f"| first touch, 1 byte per page | {human(LIMIT_SIZE)} | {t.best('touch'):.3f} | {runs('touch')} "
          f"| {touch:.0f} | | | |")
    lines = []
    for size in sizes:
        d, r = f"dump {size}", f"restore {size}"
        drate, rrate = size / t.best(d) / mb, size / t.best(r) / mb
        dratio, rratio = drate / pc, rrate / touch
        # The verdict compares best with best. On a VM whose fresh pages are now cheap, now
        # several times dearer, the medians are printed too: one lucky reference run sets the
        # best, and the ratio of medians says how the two compare run for run.
        dmed = LIMIT_SIZE * t.median(d) / (size * t.median("pagecache"))
        rmed = LIMIT_SIZE * t.median(r) / (size * t.median("touch"))
        dmed, rmed = 1 / dmed, 1 / rmed
        print(f"| engine.dump | {human(size)} | {t.best(d):.3f} | {runs(d)} | {drate:.0f} "
              f"| {dratio:.2f} of page-cache write (medians {dmed:.2f}) | >= {DUMP_TARGET} "
              f"| {verdict(dratio >= DUMP_TARGET)} |")
        print(f"| engine.restore | {human(size)} | {t.best(r):.3f} | {runs(r)} | {rrate:.0f} "
              f"| {rratio:.2f} of first touch (medians {rmed:.2f}) | >= {RESTORE_TARGET} "
              f"| {verdict(rratio >= RESTORE_TARGET)} |")
        lines.append(f"{human(size)}: dump/page-cache-write = {dratio:.2f} (target >= {DUMP_TARGET}; medians "
                     f"{dmed:.2f}), restore/first-touch = {rratio:.2f} (target >= {RESTORE_TARGET}; medians {rmed:.2f})")
    for name, label in (("trivial dump", "engine.dump"), ("trivial restore", "engine.restore")):
        print(f"| {label}, trivial | {human(TRIVIAL_SIZE)} | {t.best(name):.3f} | {runs(name)} | | | | |")
    total = t.best("trivial")
    print(f"| dump + restore, trivial | {human(TRIVIAL_SIZE)} | {total:.3f} | {runs('trivial')} | | "
          f"| <= {TRIVIAL_TARGET} s | {verdict(total <= TRIVIAL_TARGET)} |")
    lines.append(f"trivial process: dump + restore = {total:.3f} s (target <= {TRIVIAL_TARGET} s)")
    return lines


def cpu_ticks() -> tuple[int, int]:
    """(steal, all) CPU ticks of the machine so far (/proc/stat, proc(5))."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return ticks[7], sum(ticks[:8])  # user .. steal; guest time is already in user


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    """Measure, print the table and ratios; 1 if a restored victim failed its memory check."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="64M,1G", help="victim sizes, K/M/G suffixes (default 64M,1G)")
    p.add_argument("--repeat", type=int, default=3, help="runs of every measurement, the best counts (default 3)")
    args = p.parse_args()
    try:
        sizes = parse_sizes(args.sizes)
    except (ValueError, KeyError) as e:
        p.error(f"--sizes: {e}")
    if args.repeat < 1:
        p.error("--repeat: at least 1")
    signal.signal(signal.SIGTERM, _terminate)  # Ctrl-C and SIGTERM alike run the cleanup below
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        thp = f.read().strip()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="ckpt-memory-", dir="/tmp"))
    t = Timings()
    steal0, all0 = cpu_ticks()
    try:
        helper = build(work)
        print(f"kernel {os.uname().release}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, THP {thp}, "
              f"images in {work}", flush=True)
        # Untimed warm-up: the first run of each step also pays for imports and the helper's
        # first exec.
        page_cache_write(work)
        first_touch(helper)
        seed = 1
        for _ in range(args.repeat):
            t.add("pagecache", page_cache_write(work))
            t.add("touch", first_touch(helper))
            for size in sizes:
                d, r = cycle(procs, helper, work, size, seed)
                t.add(f"dump {size}", d)
                t.add(f"restore {size}", r)
                seed += 1
            d, r = cycle(procs, helper, work, TRIVIAL_SIZE, seed)
            seed += 1
            t.add("trivial dump", d)
            t.add("trivial restore", r)
            t.add("trivial", d + r)
    except VerifyFailed as e:
        print(f"\n!!! MEMORY CHECK FAILED AFTER RESTORE: {e}\n!!! The engine restored wrong memory; "
              "no numbers are reported.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every process started is killed, the images removed", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
        shutil.rmtree(work, ignore_errors=True)
    steal1, all1 = cpu_ticks()
    print(f"CPU time stolen by the hypervisor during the run: {100 * (steal1 - steal0) / max(all1 - all0, 1):.0f}%, "
          f"load {os.getloadavg()[0]:.2f}")
    print()
    lines = report(t, sizes, args.repeat)
    print()
    for line in lines:
        print(line)
    print(f"memory verified after every restore ({len(t.runs['trivial']) * (len(sizes) + 1)} restores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
