"""The pages file at dump: chunks land in the order they were put, whether written in line or
by the writer thread, and a write that fails (a full file system) fails the dump with one clear
error while the task runs on with its memory as it was."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import engine
from engine import pagedump
from engine.errors import CkptError
from tests.reaping import kill_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace, mount)")

# 24 MiB of random bytes (past THREADED, so the writer thread takes over); on SIGUSR1 it
# writes "ok" to ARGV[1].checked if they are unchanged.
PROGRAM = r"""
import hashlib, os, signal, sys
data = bytearray(os.urandom(24 << 20))
want = hashlib.sha256(data).hexdigest()
def check(*_):
    with open(sys.argv[1] + ".checked", "w") as f:
        f.write("ok" if hashlib.sha256(data).hexdigest() == want else "changed")
signal.signal(signal.SIGUSR1, check)
open(sys.argv[1], "w").write("ready")
while True:
    signal.pause()
"""


def _wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} never written"
        time.sleep(0.01)
    return path.read_text()


def test_chunks_land_in_order_in_line_and_threaded(tmp_path: Path) -> None:
    chunks = [os.urandom(n) for n in (4096, pagedump.CHUNK, 3 * 4096, pagedump.CHUNK, pagedump.CHUNK, 8192)]
    chunks += [os.urandom(pagedump.CHUNK) for _ in range(pagedump.THREADED // pagedump.CHUNK + 2)]
    sink = pagedump._Sink(tmp_path / "pages")
    try:
        for i, data in enumerate(chunks):
            if i % 2:  # half through the read buffers, half as bytes (the /proc/PID/mem way)
                buf = sink.buffer()
                pagedump.ffi.memmove(buf, data, len(data))
                sink.put(buf, len(data))
            else:
                sink.put(data, len(data))
    finally:
        sink.close()
    assert sink.done > pagedump.THREADED  # the writer thread had its share
    assert (tmp_path / "pages").read_bytes() == b"".join(chunks)
    assert (tmp_path / "pages").stat().st_mode & 0o777 == 0o600


def test_full_file_system_fails_the_dump_and_leaves_the_task_running(tmp_path: Path) -> None:
    images = tmp_path / "img"
    images.mkdir()
    # Room for the in-line part and a little more: the writer thread meets the full disk.
    size = pagedump.THREADED + 4 * pagedump.CHUNK
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(images)], check=True)
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", PROGRAM, str(ready)], stdin=subprocess.DEVNULL)
    try:
        _wait_for(ready)
        with pytest.raises(CkptError, match="No space left on device"):
            engine.dump([p.pid], images)
        assert p.poll() is None
        state = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state in "SR", f"task left in state {state}"
        assert "TracerPid:\t0" in Path(f"/proc/{p.pid}/status").read_text()
        os.kill(p.pid, signal.SIGUSR1)
        assert _wait_for(Path(f"{ready}.checked")) == "ok"
    finally:
        kill_all([p.pid])
        subprocess.run(["umount", str(images)], check=True)
