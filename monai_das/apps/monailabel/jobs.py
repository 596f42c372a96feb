"""Work that must not run on the server's event loop: inference in a worker thread with a bounded queue, training in
a child process, one at a time, that the server stops when it stops.

MONAI Label 0.8.5 runs ``POST /infer`` and ``POST /train?run_sync=true`` synchronously inside ``async`` endpoints: while
one runs, the event loop serves nothing else (``/info/`` times out) and cannot act on SIGTERM. A background training
runs in a child process whose stdout a non-daemon thread reads to its end, so the server cannot exit before it does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["Busy", "InferenceQueue", "TrainingRunner"]

logger = logging.getLogger(__name__)

#: seconds a stopped training child gets to exit after SIGTERM before it is killed
KILL_AFTER_S = 3.0


class Busy(RuntimeError):
    """The work cannot be taken now (the queue is full, a training runs, or the server is stopping)."""


class InferenceQueue:
    """One daemon worker thread running submitted calls in order; at most ``max_pending`` calls wait.

    A daemon thread: a server that stops does not wait for the call in progress (inference takes seconds), and
    calls still waiting are answered :class:`Busy`.
    """

    def __init__(self, max_pending: int = 8) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._stopping = False
        threading.Thread(target=self._work, name="monai_das-infer", daemon=True).start()

    def _work(self) -> None:
        while True:
            loop, future, fn = self._queue.get()
            if self._stopping:
                loop.call_soon_threadsafe(_settle, future, None, Busy("the server is stopping."))
                continue
            try:
                result, error = fn(), None
            except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                result, error = None, e
            loop.call_soon_threadsafe(_settle, future, result, error)

    async def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run by the worker thread; the caller's event loop stays free meanwhile.

        Raises:
            Busy: when ``max_pending`` calls wait already, or the server is stopping.
        """
        if self._stopping:
            raise Busy("the server is stopping.")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait((loop, future, fn))
        except queue.Full:
            raise Busy(f"{self._queue.maxsize} inference requests wait already; try again later.") from None
        return await future

    def stop(self) -> None:
        self._stopping = True


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class TrainingRunner:
    """One training at a time, in a child process: ``python -m monailabel.interfaces.utils.app -m train`` (MONAI
    Label's own entry point for a background training: it loads the app from the server's settings in its
    environment and runs its ``train``), its output in ``log_dir/train_<id>.log``, its result in a JSON file.

    Args:
        log_dir: where the run's log and result go.
        env: extra environment of the child.
    """

    def __init__(self, log_dir: str | os.PathLike, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.env = dict(env or {})
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stopping = False
        self.task: dict[str, Any] | None = None

    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def start(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Start a training with ``request`` (already checked) and return its task record.

        Raises:
            Busy: when a training runs already, or the server is stopping.
        """
        with self._lock:
            if self._stopping:
                raise Busy("the server is stopping.")
            if self._proc is not None and self._proc.poll() is None:
                raise Busy(f"a training runs already (task {self.task['id']}, started {self.task['start_ts']}); "
                           "wait for it (GET /train/) or stop it (DELETE /train/).")
            self.log_dir.mkdir(parents=True, exist_ok=True)
            task_id = uuid.uuid4().hex[:12]
            log, result = self.log_dir / f"train_{task_id}.log", self.log_dir / f"train_{task_id}.json"
            cmd = [sys.executable, "-m", "monailabel.interfaces.utils.app", "-m", "train",
                   "-r", json.dumps(dict(request)), "-o", str(result)]
            env = {**os.environ, "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", **self.env}
            with open(log, "wb") as out:
                self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True)  # its own group: stopped by the server only
            self.task = {"id": task_id, "status": "RUNNING", "request": dict(request), "pid": self._proc.pid,
                         "start_ts": time.strftime("%Y-%m-%d %H:%M:%S"), "log": str(log), "result": None}
            threading.Thread(target=self._wait, args=(self._proc, self.task, result), daemon=True).start()
            return dict(self.task)

    def _wait(self, proc: subprocess.Popen, task: dict[str, Any], result: Path) -> None:
        code = proc.wait()
        with self._lock:
            task["end_ts"] = time.strftime("%Y-%m-%d %H:%M:%S")
            task["returncode"] = code
            if task["status"] == "RUNNING":
                task["status"] = "DONE" if code == 0 and result.is_file() else "ERROR"
            if result.is_file():
                try:
                    task["result"] = json.loads(result.read_text())
                except ValueError:
                    task["result"] = None
            if task["status"] == "ERROR":
                task["details"] = _tail(Path(task["log"]))

    def status(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self.task is None else json.loads(json.dumps(self.task, default=str))

    def stop(self, reason: str = "STOPPED") -> bool:
        """Stop the running training: SIGTERM to its process group, SIGKILL ``KILL_AFTER_S`` later if it is still
        there. Never blocks. Returns whether one was running."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return False
            self.task["status"] = reason
        _signal_group(proc, signal.SIGTERM)
        timer = threading.Timer(KILL_AFTER_S, _signal_group, args=(proc, signal.SIGKILL))
        timer.daemon = True
        timer.start()
        return True

    def shutdown(self) -> None:
        """Refuse new trainings and stop the running one (the server is stopping)."""
        with self._lock:
            self._stopping = True
        self.stop("ABANDONED")


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path, lines: int = 20) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
