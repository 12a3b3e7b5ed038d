"""The batch cycle: start many tests at once, wait until all are ready, snapshot them, dump
ALL roots in one engine call, restore, snapshot again and diff, SIGTERM every root, collect
verdicts. Everything started is killed and reaped, also on failure and Ctrl-C."""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from harness import flavors, needs, oracle, proc
from harness.engines import DumpRequest, Engine, RestoreRequest
from harness.spec import Spec
from harness.verdict import Result, Verdict, settle

TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How each batch is run."""

    outdir: Path
    iters: int = 1
    norst: bool = False
    keep_images: bool = False


@dataclass(eq=False)
class _Test:
    """One test's live state inside a batch."""

    spec: Spec
    workdir: Path
    root: int = 0
    vpid: int = 0
    result: Result | None = None

    @property
    def pidfile(self) -> Path:
        return self.workdir / "pid"

    @property
    def outfile(self) -> Path:
        return self.workdir / "out"


def _taint() -> str:
    try:
        with open("/proc/sys/kernel/tainted") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


class Batch:
    """Tests of one flavor run through one engine together (and the engine's BatchControl)."""

    def __init__(self, batch_id: str, specs: list[Spec], flavor: str, engine: Engine,
                 opts: RunOptions) -> None:
        self.id, self.flavor, self.engine, self.opts = batch_id, flavor, engine, opts
        self.specs = specs
        self.tests: list[_Test] = []
        self.session: flavors.Session | None = None
        self._t0 = 0.0

    # --- decisions -------------------------------------------------------------------------

    def _decide(self, t: _Test, verdict: Verdict, step: str, reason: str,
                diff: tuple[str, ...] = (), output: str = "") -> None:
        if t.result is None:
            t.result = Result(test=t.spec.name, flavor=self.flavor, engine=self.engine.name,
                              verdict=verdict, step=step, reason=reason, features=t.spec.features,
                              batch=self.id, diff=diff, output=output)

    @property
    def live(self) -> list[_Test]:
        """Tests not decided yet."""
        return [t for t in self.tests if t.result is None]

    # --- BatchControl for engines ------------------------------------------------------------

    def kill(self) -> None:
        """Kill every task of every live test."""
        assert self.session
        self.session.kill([t.root for t in self.live if t.root])

    def relaunch(self, check_only: bool) -> None:
        """Start every live test's program again in a fresh environment."""
        assert self.session
        self.session.reset()
        self._start(self.live, check_only)

    # --- steps -------------------------------------------------------------------------------

    def _start(self, tests: list[_Test], check_only: bool = False) -> None:
        """Launch the starters together; each must publish its root's pid before its timeout."""
        assert self.session
        started = time.monotonic()
        starters: list[tuple[_Test, subprocess.Popen[bytes]]] = []
        for t in tests:
            t.pidfile.unlink(missing_ok=True)
            argv = t.spec.argv() + [f"--pidfile={t.pidfile}", f"--outfile={t.outfile}"]
            if check_only:
                argv.append("--check-only")
            starters.append((t, self.session.launch(argv, t.workdir, t.workdir / "starter.log")))
        published: list[tuple[_Test, int]] = []
        for t, p in starters:
            deadline = started + t.spec.timeout
            try:
                rc = p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The starter may publish the root at this very moment: kill that tree too.
                # (its pid as seen where it started: resolve it, never kill a number blindly).
                late = [r for r in self.session.resolve([int(t.pidfile.read_text())]) if r] \
                    if t.pidfile.exists() else []
                proc.kill_trees([p.pid, *late])
                p.wait()
                self._decide(t, Verdict.BROKEN, "start", f"not ready within {t.spec.timeout:g}s",
                             output=_tail(t.outfile))
                continue
            if rc != 0 or not t.pidfile.exists():
                log = _tail(t.workdir / "starter.log")
                self._decide(t, Verdict.BROKEN, "start", f"the program's setup failed (starter exit {rc})",
                             output="\n".join(x for x in (log, _tail(t.outfile)) if x))
                continue
            try:
                published.append((t, int(t.pidfile.read_text())))
            except ValueError:
                self._decide(t, Verdict.BROKEN, "start", f"garbage in pidfile {t.pidfile}")
        roots = self.session.resolve([pid for _, pid in published])
        for (t, pid), root in zip(published, roots):
            if root is None:
                self._decide(t, Verdict.BROKEN, "start", f"pid {pid} of {t.pidfile} is not a task of the batch")
            else:
                t.root, t.vpid = root, proc.nspid(root)

    def _snapshot(self) -> oracle.Snapshot:
        # A test comparing no aspect (transition tests: their trees change by design) is not
        # snapshotted at all, not even its set of tasks.
        return oracle.capture([(t.spec.name, t.root, t.spec.compare) for t in self.live if t.spec.compare])

    def _cycle(self, iteration: int, before: oracle.Snapshot | None) -> None:
        """One dump (and restore, unless --norst), then the oracle's comparison."""
        assert self.session
        live = self.live
        images = self._images() / f"iter-{iteration}"
        shutil.rmtree(images, ignore_errors=True)  # a report directory may be reused
        images.mkdir(parents=True)
        roots = self.session.dump_roots([t.root for t in live])
        try:
            self.engine.dump(DumpRequest(roots, images, self.opts.norst, images / "dump.log", self))
        except Exception as e:  # noqa: BLE001 - any engine failure is this step's verdict
            for t in live:
                if "crfail" in t.spec.flags:
                    self._decide(t, Verdict.PASS, "dump", f"dump failed as expected: {e}")
                else:
                    self._decide(t, Verdict.FAIL, "dump", str(e))
            return
        if not self.opts.norst:
            try:
                restored = self.engine.restore(RestoreRequest(roots, images, images / "restore.log", self))
            except Exception as e:  # noqa: BLE001
                for t in live:
                    self._decide(t, Verdict.FAIL, "restore", str(e))
                return
            if self.engine.restores_state:
                found = self.session.locate(restored, [t.vpid for t in live])
                for t, root in zip(live, found):
                    if root is None:
                        self._decide(t, Verdict.FAIL, "restore", f"root (pid {t.vpid} in its namespace) not restored")
                    else:
                        t.root = root
        if before is not None and self.engine.restores_state:
            after = self._snapshot()
            for t in self.live:
                if t.spec.name not in before:
                    continue
                d = oracle.diff(before[t.spec.name], after.get(t.spec.name, {}))
                if d:
                    self._decide(t, Verdict.FAIL, "restore", f"visible state differs after restore ({len(d)} lines)",
                                 diff=tuple(d))

    def _verify(self) -> None:
        """SIGTERM every root, wait for each to exit, read its verdict line."""
        live = self.live
        waiting: dict[int, _Test] = {}
        for t in live:
            try:
                fd = os.pidfd_open(t.root)
                os.kill(t.root, signal.SIGTERM)
            except (ProcessLookupError, OSError):
                self._decide(t, Verdict.FAIL, "verify", f"the root (pid {t.root}) was gone before SIGTERM",
                             output=_tail(t.outfile))
                continue
            waiting[fd] = t
        deadline = time.monotonic() + max((t.spec.timeout for t in live), default=0)
        poller = select.poll()
        for fd in waiting:
            poller.register(fd, select.POLLIN)
        try:
            while waiting and time.monotonic() < deadline:
                for fd, _ev in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                    poller.unregister(fd)
                    t = waiting.pop(fd)
                    os.close(fd)
                    self._read_verdict(t)
        finally:
            for fd, t in waiting.items():
                os.close(fd)
                self._decide(t, Verdict.BROKEN, "verify", f"no verdict within {t.spec.timeout:g}s of SIGTERM",
                             output=_tail(t.outfile))
        proc.reap_children()

    def _read_verdict(self, t: _Test) -> None:
        try:
            _, status = os.waitpid(t.root, os.WNOHANG)
            how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exit {os.WEXITSTATUS(status)}")
        except ChildProcessError:
            how = "exited"
        out = _tail(t.outfile)
        last = out.splitlines()[-1].strip() if out else ""
        if last == "PASS":
            self._decide(t, Verdict.PASS, "", "")
        elif last.startswith("FAIL:"):
            self._decide(t, Verdict.FAIL, "verify", last[5:].strip(), output=out)
        else:
            self._decide(t, Verdict.FAIL, "verify", f"no verdict line ({how}); last line: {last[:200]!r}",
                         output=out)

    # --- the whole batch ---------------------------------------------------------------------

    def run(self) -> list[Result]:
        """Run the batch to the end; one Result per spec, in order."""
        self._t0 = time.monotonic()
        taint = _taint()
        proc.become_subreaper()
        why_not = self.engine.unavailable() or flavors.unavailable(self.flavor)
        workroot = Path(tempfile.mkdtemp(prefix="zdtm.", dir=os.environ.get("ZDTM_WORKDIR", "/tmp")))
        for i, spec in enumerate(self.specs):
            t = _Test(spec, workroot / str(i))
            t.workdir.mkdir()
            self.tests.append(t)
            missing = [f"{n}: {r}" for n in spec.needs if (r := needs.missing(n))]
            if why_not or missing:
                self._decide(t, Verdict.SKIP, "", why_not or "; ".join(missing))
        failed = False
        try:
            if self.live:
                self.session = flavors.open_session(self.flavor, workroot)
                self._start(self.live)
            if self.live:
                before = self._snapshot() if self.engine.restores_state else None
                for i in range(self.opts.iters):
                    self._cycle(i, before)
                    if not self.live:
                        break
                if self.live:
                    self._verify()
        except Exception as e:  # noqa: BLE001 - the harness broke: say so for every test left
            for t in self.tests:
                self._decide(t, Verdict.BROKEN, "start" if not t.root else "verify", f"harness error: {e!r}")
        finally:
            if self.session:
                # Recorded roots, and whatever else still runs in the tests' directories
                # (a root published after its deadline, orphans of a root killed early).
                self.session.kill([t.root for t in self.tests if t.root] + proc.inside(str(workroot)))
                self.session.close()
            failed = any(t.result and t.result.verdict.unexpected for t in self.tests)
            self._save_logs()
            shutil.rmtree(workroot, ignore_errors=True)
            images = self._images()
            if not (self.opts.keep_images or failed):
                shutil.rmtree(images, ignore_errors=True)
        after = _taint()
        if after != taint:
            # The kernel complained while this batch ran: no verdict of it can be trusted.
            for t in self.tests:
                if t.result and t.result.verdict is not Verdict.SKIP:
                    t.result = replace(t.result, verdict=Verdict.BROKEN, step=t.result.step or "verify",
                                       reason=f"kernel taint changed {taint} -> {after} during the batch (see dmesg)")
        share = (time.monotonic() - self._t0) / max(1, len(self.tests))
        return [settle(replace(t.result, seconds=round(share, 4)), t.spec, not self.opts.norst)
                for t in self.tests if t.result is not None]

    def _images(self) -> Path:
        """This batch's image directory."""
        return self.opts.outdir / "images" / self.id

    def _save_logs(self) -> None:
        """Keep each test's outfile in the report directory."""
        for t in self.tests:
            if t.outfile.exists():
                dest = self.opts.outdir / "logs" / self.engine.name / self.flavor / f"{t.spec.name}.out"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(t.outfile, dest)
