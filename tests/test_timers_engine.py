"""The timers part end to end: a real program arms itimers and POSIX timers (gaps in the ids,
four clocks, SIGEV_SIGNAL / SIGEV_NONE / SIGEV_THREAD_ID, a 1 ms timer with its signal blocked,
pending and overrun); after dump and restore /proc shows the same timers and the program, asked
with SIGUSR2, reports the settings it finds, which must be the ones it made."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

import engine
from cbuild import compile_c
from engine import images
from engine.timers import SIGEV_NONE, SIGEV_SIGNAL, SIGEV_THREAD_ID

PROGRAM = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
static timer_t ids[4];
static volatile sig_atomic_t asked;

static void on_usr2(int sig) { (void)sig; asked = 1; }
static void on_rt(int sig) { (void)sig; }

static long long ns(const struct timespec *ts) { return ts->tv_sec * 1000000000LL + ts->tv_nsec; }
static long long us(const struct timeval *tv) { return tv->tv_sec * 1000000LL + tv->tv_usec; }

static int make(clockid_t c, int notify, int sig, int value, long long first, long long every, timer_t *id)
{
	struct sigevent sev = { .sigev_notify = notify, .sigev_signo = sig };
	struct itimerspec its = { { every / 1000000000, every % 1000000000 },
				  { first / 1000000000, first % 1000000000 } };

	sev.sigev_value.sival_int = value;
	if (notify & SIGEV_THREAD_ID)
		sev._sigev_un._tid = gettid();
	return timer_create(c, &sev, id) || timer_settime(*id, 0, &its, NULL);
}

/* Alarm mode: a 5 ms ITIMER_REAL expired with SIGALRM blocked, so it reads 0 until SIGALRM is
 * taken, and is re-armed then. */
static void report_alarm(FILE *f)
{
	struct timespec zero = { 0 }, second = { 1, 0 };
	struct itimerval itv;
	sigset_t pend, alrm;
	siginfo_t si;

	getitimer(ITIMER_REAL, &itv);
	sigpending(&pend);
	fprintf(f, "alarm %lld %lld %d\n", us(&itv.it_value), us(&itv.it_interval), sigismember(&pend, SIGALRM));
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	if (sigtimedwait(&alrm, &si, &zero) != SIGALRM)
		return;
	getitimer(ITIMER_REAL, &itv);
	fprintf(f, "rearmed %lld %d\n", us(&itv.it_value), sigtimedwait(&alrm, &si, &second) == SIGALRM);
}

static void report(const char *path, int alarm_mode)
{
	char tmp[4096];
	FILE *f;
	struct itimerspec its;
	struct itimerval itv;
	struct timespec zero = { 0 };
	sigset_t pend, fast;
	siginfo_t si;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (alarm_mode) {
		report_alarm(f);
		goto out;
	}
	for (int i = 0; i < 4; i++) {
		timer_gettime(ids[i], &its);
		fprintf(f, "timer %d %lld %lld %d\n", (int)(long)ids[i], ns(&its.it_value),
			ns(&its.it_interval), timer_getoverrun(ids[i]));
	}
	for (int w = ITIMER_REAL; w <= ITIMER_PROF; w++) {
		getitimer(w, &itv);
		fprintf(f, "itimer %d %lld %lld\n", w, us(&itv.it_value), us(&itv.it_interval));
	}
	sigpending(&pend);
	sigemptyset(&fast);
	sigaddset(&fast, SIGRTMIN + 3);
	fprintf(f, "pending %d\n", sigismember(&pend, SIGRTMIN + 3));
	if (sigtimedwait(&fast, &si, &zero) == SIGRTMIN + 3)
		fprintf(f, "taken %d %d %d %d %d\n", si.si_code, si.si_timerid, si.si_value.sival_int,
			si.si_overrun, timer_getoverrun(ids[3]));
out:
	fclose(f);
	rename(tmp, path);	/* whole, or not there */
}

static int setup_alarm(void)
{
	struct itimerval every5ms = { { 0, 5000 }, { 0, 5000 } };
	sigset_t alrm;

	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	sigprocmask(SIG_BLOCK, &alrm, NULL);
	if (setitimer(ITIMER_REAL, &every5ms, NULL))
		return 3;
	usleep(20000);
	printf("ready 0\n");
	return 0;
}

static int setup(void)
{
	struct itimerval real = { { 7, 13 }, { 40, 0 } }, virt = { { 2, 0 }, { 30, 0 } };
	struct sigaction sa = { .sa_handler = on_rt };
	struct timespec second = { 1, 0 };
	sigset_t fast;
	siginfo_t si;
	timer_t gap;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGRTMIN + 1, &sa, NULL);
	sigaction(SIGRTMIN + 2, &sa, NULL);
	sigemptyset(&fast);
	sigaddset(&fast, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &fast, NULL);
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
	    make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 0x1234, 50000 * MS, 3000 * MS + 7, &ids[0]) ||
	    make(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0, 0, &gap) ||
	    make(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 100000 * MS, 0, &ids[1]) ||
	    make(CLOCK_BOOTTIME, SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGRTMIN + 2, 0x77, 60000 * MS, 0, &ids[2]) ||
	    make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, 0xd, MS, MS, &ids[3]) || timer_delete(gap))
		return 3;
	/* The 1 ms timer: take one signal after overruns piled up, so timer_getoverrun() has a
	 * value, and let another signal wait with more overruns behind it. */
	usleep(30000);
	if (sigtimedwait(&fast, &si, &second) != SIGRTMIN + 3)
		return 4;
	usleep(10000);
	printf("ready %d\n", timer_getoverrun(ids[3]));
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_usr2 };
	int alarm_mode = argc == 3 && !strcmp(argv[2], "alarm"), fd, rc;
	struct timespec tick = { 0, 5000000 };

	if (argc < 2)
		return 2;
	closefrom(3);	/* nothing of the parent's (a pytest pipe) comes along */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR2, &sa, NULL);
	rc = alarm_mode ? setup_alarm() : setup();
	if (rc)
		return rc;
	fflush(stdout);
	fd = open("/dev/null", O_RDWR);
	dup2(fd, 0);
	dup2(fd, 2);
	dup2(fd, 1);	/* last: the parent's EOF on the pipe means all three are replaced */
	close(fd);
	/* Polled: a wait for the signal itself (pause, sigsuspend) is restarted after restore, and
	 * misses a SIGUSR2 handled just before it. */
	for (;;) {
		nanosleep(&tick, NULL);
		if (asked) {
			asked = 0;
			report(argv[1], alarm_mode);
		}
	}
}
"""
SIGRTMIN = signal.SIGRTMIN
SI_TIMER = -2
MS = 1_000_000


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("timers")
    (d / "timers.c").write_text(PROGRAM)
    return compile_c(d / "timers.c", d / "timers")


@pytest.fixture
def procs() -> Iterator[list[int]]:
    """Pids of every process a test started or restored: killed and reaped afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _start(program: Path, report: Path, procs: list[int], *mode: str) -> tuple[int, int]:
    """Run the program until its timers are set: (pid, the overrun it took in setup)."""
    r, w = os.pipe()
    try:
        pid = os.posix_spawn(program, [str(program), str(report), *mode], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
    finally:
        os.close(w)
    procs.append(pid)
    with os.fdopen(r) as f:
        out = f.read()  # EOF once it puts /dev/null on its fds
    word, overrun = out.split()
    assert word == "ready", out
    return pid, int(overrun)


def _proc_timers(pid: int) -> list[str]:
    """/proc/PID/timers, one string per timer, the pid left out (it is the same anyway)."""
    with open(f"/proc/{pid}/timers") as f:
        blocks = f.read().replace(f".{pid}\n", ".PID\n").split("ID: ")[1:]
    return sorted(blocks)


def _ask(pid: int, report: Path) -> dict[str, list[list[int]]]:
    """Have the program report its timers (SIGUSR2); rows by their first word."""
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    while not report.exists():
        assert time.monotonic() < deadline, "the program did not report"
        time.sleep(0.01)
    rows: dict[str, list[list[int]]] = {}
    for line in report.read_text().splitlines():
        word, *nums = line.split()
        rows.setdefault(word, []).append([int(n) for n in nums])
    return rows


def test_timers_come_back(program: Path, procs: list[int], tmp_path: Path) -> None:
    report = tmp_path / "report"
    started = time.monotonic_ns()
    pid, overrun = _start(program, report, procs)
    assert overrun > 0  # 30 ms of a 1 ms timer with its signal blocked
    before = _proc_timers(pid)
    images_dir = tmp_path / "images"
    engine.dump([pid], images_dir)

    # What the image holds: ids with the gap, clocks, notifications, the pending 1 ms timer.
    _, [msg] = images.read(images.path_of(images_dir, "timers"), "timers")
    got = [(p.id, p.clock, p.notify, p.signo, p.value, p.interval_ns) for p in msg.posix]
    assert got == [(0, 1, SIGEV_SIGNAL, SIGRTMIN + 1, 0x1234, 3000 * MS + 7), (2, 0, SIGEV_NONE, 0, 0, 0),
                   (3, 7, SIGEV_SIGNAL | SIGEV_THREAD_ID, SIGRTMIN + 2, 0x77, 0), (4, 1, SIGEV_SIGNAL, SIGRTMIN + 3, 0xd, MS)]
    fast = msg.posix[3]
    assert fast.pending and fast.overrun == overrun and 0 < fast.value_ns <= MS
    assert (msg.real.interval_us, msg.virt.interval_us) == (7_000_013, 2_000_000)

    [new] = engine.restore(images_dir)
    procs.append(new)
    assert new == pid
    assert _proc_timers(new) == before
    rows = _ask(new, report)
    elapsed = time.monotonic_ns() - started  # the most the timers can have run down
    timers = {t[0]: t[1:] for t in rows["timer"]}
    assert sorted(timers) == [0, 2, 3, 4]
    # (value left, interval, overrun): intervals exact, values not run down by more than the time
    # the test took.
    for tid, first, every in ((0, 50_000, 3000 * MS + 7), (2, 100_000, 0), (3, 60_000, 0)):
        left, interval, _ = timers[tid]
        assert interval == every and first * MS - elapsed < left <= first * MS, (tid, timers[tid], elapsed)
    left, interval, last = timers[4]
    assert interval == MS and 0 < left <= MS
    assert last == overrun  # timer_getoverrun: the overrun of the signal taken before dump
    itimers = {w: (v, i) for w, v, i in rows["itimer"]}
    assert itimers[0][1] == 7_000_013 and 40_000_000 - elapsed // 1000 < itimers[0][0] <= 40_000_000
    assert itimers[1][1] == 2_000_000 and 0 < itimers[1][0] <= 30_010_000
    assert itimers[2] == (0, 0)
    # The 1 ms timer's own signal is queued again, with its id and value and fresh overruns.
    assert rows["pending"] == [[1]]
    [[code, timerid, value, si_overrun, after]] = rows["taken"]
    assert (code, timerid, value) == (SI_TIMER, 4, 0xd)
    assert si_overrun > 0 and after == si_overrun


def test_expired_itimer_real_waiting_for_its_sigalrm(program: Path, procs: list[int], tmp_path: Path) -> None:
    """A periodic ITIMER_REAL reads 0 from its expiry until SIGALRM is taken, when the kernel
    re-arms it: after restore it must still have its interval and be re-armed that way."""
    report = tmp_path / "report"
    pid, _ = _start(program, report, procs, "alarm")
    images_dir = tmp_path / "images"
    engine.dump([pid], images_dir)
    _, [msg] = images.read(images.path_of(images_dir, "timers"), "timers")
    assert (msg.real.value_us, msg.real.interval_us, msg.real.pending) == (0, 5000, True)

    [new] = engine.restore(images_dir)
    procs.append(new)
    rows = _ask(new, report)
    assert rows["alarm"] == [[0, 5000, 1]]  # value 0, its interval, SIGALRM pending
    [[left, again]] = rows["rearmed"]
    # Taking SIGALRM re-armed it: it fires again (left reads 0 if it did so before getitimer).
    assert 0 <= left <= 5000 and again == 1


def test_restore_takes_the_checkpoint_time_off_running_clocks() -> None:
    from engine.images.timers_pb2 import ITimer, PosixTimer, Timers
    from engine.timers import compensate

    ms = 1_000_000
    msg = Timers(taken_ns=1000 * ms, boot_id="b", real=ITimer(value_us=50_000, interval_us=0), posix=[
        PosixTimer(id=0, clock=1, value_ns=300 * ms, interval_ns=0),            # monotonic one-shot
        PosixTimer(id=1, clock=0, value_ns=30 * ms, interval_ns=100 * ms),      # realtime periodic, missed
        PosixTimer(id=2, clock=7, value_ns=30 * ms, interval_ns=0),             # boottime one-shot, due
        PosixTimer(id=3, clock=-6, value_ns=300 * ms, interval_ns=0),           # a CPU clock: frozen
        PosixTimer(id=4, clock=0, value_ns=300 * ms, interval_ns=900 * ms, pending=True)])
    got = compensate(msg, 1250 * ms, "b")
    assert [p.value_ns for p in got.posix] == [50 * ms, 80 * ms, 1, 300 * ms, 50 * ms]
    assert got.real.value_us == 1 and msg.posix[0].value_ns == 300 * ms  # the image is untouched
    assert [p.value_ns for p in compensate(msg, 1250 * ms, "other boot").posix] == [p.value_ns for p in msg.posix]
