"""atac.locks between processes: a held run folder is refused naming its holder, a killed holder's
lock is free at once, and locked() waits for its holder."""

import os
import signal
import subprocess
import sys
import time

import pytest

from atac.locks import RunInUseError, RunLock, locked

HOLD = """
import sys, time
from pathlib import Path
from atac.locks import {what}
with {what}(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(what: str, path, seconds: float) -> subprocess.Popen:
    """A process that holds ``what`` on ``path`` for ``seconds``; returns once it holds it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(what=what), str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_folder_held_by_another_process_is_refused_until_it_dies(tmp_path):
    proc = _holder("RunLock", tmp_path, 60)
    try:
        with pytest.raises(RunInUseError, match=f"in use by another run \\(process {proc.pid}\\)"):
            with RunLock(tmp_path):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)  # no release: the kernel drops the flock
        proc.wait()
    assert (tmp_path / ".lock").read_text() == str(proc.pid)  # left behind, and stale
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_locked_waits_for_its_holder(tmp_path):
    path = tmp_path / "sub" / ".results.jsonl.lock"
    proc = _holder("locked", path, 0.5)
    t0 = time.perf_counter()
    with locked(path):
        waited = time.perf_counter() - t0
    proc.wait()
    assert waited > 0.3 and path.exists()  # held for 0.5 s after it said so; the file stays
