"""The `criu` engine: the CRIU binary, driven through its command line.

CRIU dumps one process tree per call (`-t PID`), so root i of a batch goes into
`images/<i>/`, and is restored from there (detached, so the tree is reparented to the
harness, which is a child subreaper). The binary is `$ZDTM_CRIU`, else `criu` on PATH
(or in the sbin directories, where distributions install it); it must pass `criu check`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from harness.engines import DumpRequest, RestoreRequest
from harness.errors import EngineError

#: Where distributions install criu; a non-root PATH often lacks them.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
#: Seconds for `criu check` / `criu --version`, and for one dump or restore call.
PROBE_TIMEOUT = 60
CALL_TIMEOUT = 300
#: Options for both sides: established TCP connections, file locks, and unix sockets
#: whose peer is outside the tree (criu(8), "dump" options).
COMMON = ("--tcp-established", "--file-locks", "--ext-unix-sk")
#: How much of a failed call's log goes into the verdict.
TAIL_LINES = 8

# "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
_ERROR = re.compile(r"^\s*(?:\(\s*[\d.]+\)\s*)?Error \([^)]*\):\s*(.*)$")
# CRIU's cr_system() logs a helper's failure ("exited, status=1") as an error even when
# kerndat only probes for an optional tool (iptables, nft): the cause lies further down.
_HELPER_EXIT = re.compile(r"^(exited, status=\d+|killed by signal \d+)$")


class CriuError(EngineError, RuntimeError):
    """A criu call failed; `why` carries the tail of its log."""


def _binary() -> tuple[str | None, str]:
    """The criu executable to run, or None and why there is none."""
    env = os.environ.get("ZDTM_CRIU")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env, ""
        return None, f"criu not found: ZDTM_CRIU={env} is not an executable file"
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    found = shutil.which("criu", path=path)
    return (found, "") if found else (None, "criu not installed (not on PATH, ZDTM_CRIU unset)")


def first_error(output: str) -> str:
    """The most telling line of criu's output: its first real error, without the source location."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [m.group(1).strip() for ln in lines if (m := _ERROR.match(ln))]
    for e in errors:
        if not _HELPER_EXIT.match(e):
            return e
    if errors:
        return errors[0]
    return lines[0] if lines else ""


@lru_cache(maxsize=8)
def _probe(binary: str) -> str | None:
    """What `criu check` says is wrong here (probed once per binary and process)."""
    try:
        r = subprocess.run([binary, "check"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           errors="replace", timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"criu check timed out after {PROBE_TIMEOUT}s"
    except OSError as e:
        return f"criu check could not run: {binary}: {e.strerror}"
    if r.returncode == 0:
        return None
    why = first_error(r.stderr + "\n" + r.stdout) or f"exit {r.returncode}"
    return f"criu check failed: {why}"


@lru_cache(maxsize=8)
def _version(binary: str) -> str:
    """First line of `criu --version` ("Version: 3.17.1"), or "-"."""
    try:
        r = subprocess.run([binary, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           errors="replace", timeout=PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    lines = r.stdout.strip().splitlines()
    return lines[0].strip() if r.returncode == 0 and lines else "-"


def cache_clear() -> None:
    """Forget the probes (tests change ZDTM_CRIU between cases)."""
    _probe.cache_clear()
    _version.cache_clear()


def _tail(log: Path) -> str:
    """The error lines of a criu log, or its last lines when it has none."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    errors = [ln.strip() for ln in lines if _ERROR.match(ln)]
    return "\n".join((errors or lines)[-TAIL_LINES:])


def _run(binary: str, step: str, argv: list[str], log: Path, combined: Path) -> None:
    """Run one criu call; append its log to the batch's log; raise CriuError on failure."""
    cmd = [binary, *argv]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                           timeout=CALL_TIMEOUT)
        status = f"exit {r.returncode}" if r.returncode else ""
        early = (r.stderr + r.stdout).strip()
    except subprocess.TimeoutExpired:
        status, early = f"timed out after {CALL_TIMEOUT}s", ""
    except OSError as e:
        raise CriuError("criu", step, f"{binary}: {e.strerror}") from None
    with open(combined, "a") as out:
        out.write(f"### {' '.join(cmd)}\n")
        try:
            out.write(log.read_text(errors="replace"))
        except OSError:
            pass
        if early:
            out.write(early + "\n")
    if status:
        # Errors before the log is opened (bad option, no permission) reach only stderr.
        raise CriuError("criu", step, f"`criu {' '.join(argv[:3])}` {status}:\n{_tail(log) if log.exists() else early}")


class Criu:
    """Checkpoint each root with `criu dump -t`, bring it back with `criu restore -d`."""

    name = "criu"
    restores_state = True

    def unavailable(self) -> str | None:
        """None when a criu binary is found and `criu check` passes; else one line why not."""
        binary, why = _binary()
        return _probe(binary) if binary else why

    def version(self) -> str:
        """`criu --version`'s first line, or "-" when there is no criu."""
        binary, _ = _binary()
        return _version(binary) if binary else "-"

    def _need(self, step: str) -> str:
        binary, why = _binary()
        if binary is None:
            raise CriuError("criu", step, why)
        return binary

    def dump(self, req: DumpRequest) -> None:
        """One `criu dump` per root, into images/<index>; the trees die unless leave_running."""
        binary = self._need("dump")
        for i, pid in enumerate(req.roots):
            d = req.images / str(i)
            d.mkdir(parents=True, exist_ok=True)
            argv = ["dump", "-t", str(pid), "-D", str(d), "-o", str(d / "dump.log"), "-v4", *COMMON]
            if req.leave_running:
                argv.append("--leave-running")
            _run(binary, "dump", argv, d / "dump.log", req.log)

    def restore(self, req: RestoreRequest) -> list[int]:
        """One detached `criu restore` per images/<index>, in dump order; their roots' pids."""
        binary = self._need("restore")
        pids = []
        for i in range(len(req.roots)):
            d = req.images / str(i)
            pidfile = d / "restore.pid"
            pidfile.unlink(missing_ok=True)
            argv = ["restore", "-D", str(d), "-d", "--pidfile", str(pidfile), "-o", str(d / "restore.log"),
                    "-v4", *COMMON]
            _run(binary, "restore", argv, d / "restore.log", req.log)
            try:
                pids.append(int(pidfile.read_text().strip()))
            except (OSError, ValueError) as e:
                raise CriuError("criu", "restore", f"no root pid in {pidfile}: {e}") from None
        return pids
