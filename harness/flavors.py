"""Flavors: where a batch runs. `host` as is; `ns` inside fresh pid, mount, net, ipc and uts
namespaces under a small init of ours (native/nsinit.c). A `userns` flavor would be one more
Session class: the runner only talks to the Session interface."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Protocol

from harness import build, proc
from harness.errors import FlavorError, UsageError

NAMES = ("host", "ns")


class Session(Protocol):
    """One batch's environment in one flavor."""

    def launch(self, argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        """Start a test's starter process (it daemonizes the test root and exits)."""

    def resolve(self, pids: list[int]) -> list[int | None]:
        """Host pids of roots whose pidfiles say `pids` (as seen where they started)."""

    def dump_roots(self, test_roots: list[int]) -> list[int]:
        """The roots the engine is given for these test roots."""

    def locate(self, restored: list[int], vpids: list[int]) -> list[int | None]:
        """After a restore: each test's root (host pid) from the restored roots and its vpid."""

    def kill(self, test_roots: list[int]) -> None:
        """Kill every task of the batch and reap what is ours."""

    def reset(self) -> None:
        """Kill everything and get a fresh, empty environment (for re-launching)."""

    def close(self) -> None:
        """Tear the environment down: no task, no namespace left."""


def _start(argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                close_fds=True)


class HostSession:
    """Tests run in the harness's own namespaces; roots are reparented to us (subreaper)."""

    def launch(self, argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        """Run the starter directly."""
        return _start(argv, cwd, log)

    def resolve(self, pids: list[int]) -> list[int | None]:
        """Host pids are pids."""
        return list(pids)

    def dump_roots(self, test_roots: list[int]) -> list[int]:
        """Each test root is a root of the dump."""
        return list(test_roots)

    def locate(self, restored: list[int], vpids: list[int]) -> list[int | None]:
        """Restored roots come back in dump order, one per test."""
        if len(restored) != len(vpids):
            return [None] * len(vpids)
        return list(restored)

    def kill(self, test_roots: list[int]) -> None:
        """SIGKILL the trees and reap the zombies handed to us."""
        proc.kill_trees(test_roots)
        proc.reap_children()

    def reset(self) -> None:
        """Nothing of the host to reset: tests were killed already."""

    def close(self) -> None:
        """Nothing to tear down."""
        proc.reap_children()


class NsSession:
    """Tests run inside one set of fresh namespaces whose init is the dump's single root."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.init = 0
        self._start_init()

    def _start_init(self) -> None:
        pidfile = self.workdir / "nsinit.pid"
        pidfile.unlink(missing_ok=True)
        p = subprocess.Popen([str(build.helper("zdtm-nsinit")), "init", str(pidfile)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill_trees([p.pid])
            p.communicate()
            raise FlavorError("ns flavor: the namespaces' init did not get ready within 30s") from None
        if p.returncode or not pidfile.exists():
            why = err.decode(errors="replace").strip() or f"exit {p.returncode}"
            raise FlavorError(f"ns flavor: cannot create namespaces: {why}")
        self.init = int(pidfile.read_text())

    def launch(self, argv: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        """Run the starter after joining the init's namespaces: the root is born inside."""
        return _start([str(build.helper("zdtm-nsinit")), "enter", str(self.init), *argv], cwd, log)

    def resolve(self, pids: list[int]) -> list[int | None]:
        """Pidfiles written inside hold namespace pids: roots are children of our init."""
        return self.locate([self.init], pids)

    def dump_roots(self, test_roots: list[int]) -> list[int]:
        """The namespace's init is the one root: the tests are its descendants."""
        return [self.init]

    def locate(self, restored: list[int], vpids: list[int]) -> list[int | None]:
        """Find each test root among the children of the (restored) init by its namespace pid."""
        if len(restored) != 1:
            return [None] * len(vpids)
        self.init = restored[0]
        inside = {proc.nspid(p): p for p in proc.children(self.init)}
        return [inside.get(v) for v in vpids]

    def kill(self, test_roots: list[int]) -> None:
        """Killing the init kills every task of its pid namespace."""
        if self.init and proc.read_stat(self.init):
            try:
                os.kill(self.init, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait_gone([self.init], 10)
            try:
                os.waitpid(self.init, os.WNOHANG)
            except ChildProcessError:
                pass
        proc.kill_trees(test_roots)
        proc.reap_children()

    def reset(self) -> None:
        """A fresh init in fresh namespaces."""
        self.kill([])
        self._start_init()

    def close(self) -> None:
        """No task left means no namespace left."""
        self.kill([])


def open_session(flavor: str, workdir: Path) -> Session:
    """Set up one batch's environment."""
    if flavor == "host":
        return HostSession()
    if flavor == "ns":
        return NsSession(workdir)
    raise UsageError(f"unknown flavor '{flavor}'; expected one of {', '.join(NAMES)}")


def unavailable(flavor: str) -> str | None:
    """Why a flavor cannot run here, or None."""
    if flavor == "ns" and os.geteuid() != 0:
        return "the ns flavor needs root (CAP_SYS_ADMIN) to create namespaces"
    return None
