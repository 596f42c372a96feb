"""Bundle runs as separate processes, the way a user or a job scheduler starts them: ``python -m monai.bundle run``
and ``torchrun ... -m monai.bundle run`` from the bundle folder, with their output in a log file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from test_bundles import bundle_dir

# the synthetic bundle needs no data folder; 16 frames of 32 x 32, 4 iterations of 4 inputs per epoch
TINY_SYNTHETIC = ["--num_train", "16", "--num_val", "8", "--num_frames", "16", "--batch_size", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}


def free_port() -> int:
    """A TCP port nobody listens on now (``--master_port 0`` makes torchrun's workers wait forever)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_args(configs: list[str], *args: str) -> list[str]:
    files = [f"configs/{c}" for c in configs]
    config_file = files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]"
    return ["run", "--config_file", config_file, *args]


def start_bundle(name: str, args: list[str], log: Path, launcher: list[str] | None = None) -> subprocess.Popen:
    """Start ``[launcher] python -m monai.bundle <args>`` in the bundle's folder, output to ``log``; its own process
    group, so that a torchrun and its workers can be stopped together."""
    launcher = launcher or [sys.executable]
    with open(log, "w") as f:
        return subprocess.Popen([*launcher, "-m", "monai.bundle", *args], cwd=bundle_dir(name), env=ENV, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` seconds; the exit code."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def finish(proc: subprocess.Popen, log: Path, timeout: float) -> tuple[int, str]:
    """Wait for ``proc`` (stopped after ``timeout`` seconds: exit code 124); ``(exit code, log text)``."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        rc = 124
    return rc, log.read_text()


def poll_until(check: Callable[[], object], proc: subprocess.Popen, log: Path, timeout: float, what: str,
               interval: float = 0.05):
    """Call ``check()`` every ``interval`` s until it returns a true value (returned); fail when ``proc`` exits first
    or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(interval)
    stop(proc)
    raise AssertionError(f"no {what} after {timeout} s:\n{log.read_text()[-4000:]}")
