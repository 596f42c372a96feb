"""Orchestration of the efficiency benchmark's worker processes: every configuration is measured in a fresh Python
process of its own (:py:class:`SubprocessBench`), which serves timing requests over a pipe (:py:func:`serve_worker`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.efficiency.measure import ConfigBench, device_name, mode_name, short_error
from benchmarks.efficiency.rows import FIELDS, METRIC_FIELDS

__all__ = ["REPO", "SubprocessBench", "failed_row", "serve_worker"]

REPO = Path(__file__).resolve().parents[2]

RESULT_TAG = "EFFICIENCY_RESULT "



class SubprocessBench:
    """:py:class:`ConfigBench` in a fresh Python process of its own, driven through a pipe (same interface)."""

    def __init__(self, **spec) -> None:
        import tempfile

        self.spec = spec
        self.failed = ""
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "benchmarks.efficiency", "--worker", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     text=True, cwd=REPO, bufsize=1)
        self._ready = False

    def ready(self) -> None:
        """Wait until the worker has built its configuration (processes started together set up in parallel)."""
        if self._ready:
            return
        self._ready = True
        reply = self._reply()
        if "error" in reply:
            self.failed = reply["error"]
        elif reply.get("failed"):
            self.failed = reply["failed"]

    def _reply(self) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                self._stderr.seek(0)
                lines = self._stderr.read().strip().splitlines() or [f"exit code {self.proc.returncode}"]
                return {"error": f"failed: {lines[-1][:200]}"}
            if line.startswith(RESULT_TAG):
                return json.loads(line[len(RESULT_TAG):])

    def _ask(self, request: dict) -> dict:
        if self.proc.poll() is not None:
            return {"error": self.failed or f"failed: exit code {self.proc.returncode}"}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if "error" in reply and not self.failed:
            self.failed = reply["error"]
        return reply

    def run(self, what: str, n: int) -> list[float]:
        self.ready()
        if self.failed:
            return []
        return self._ask({"op": "run", "what": what, "n": n}).get("times", [])

    def finish(self) -> dict:
        self.ready()
        reply = {} if self.proc.poll() is not None else self._ask({"op": "finish"})
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._stderr.close()
        if "row" in reply:
            return reply["row"]
        return failed_row(self.spec, self.failed or reply.get("error", "failed"))


def serve_worker(spec: dict) -> int:
    """The ``--worker`` side of :py:class:`SubprocessBench`: one JSON request per stdin line, tagged JSON replies."""

    def reply(obj: dict) -> None:
        print(RESULT_TAG + json.dumps(obj), flush=True)

    try:
        bench = ConfigBench(**spec)
    except Exception as e:  # noqa: BLE001
        reply({"error": f"failed: {short_error(e)}"})
        return 1
    reply({"ok": True, "failed": bench.failed})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "run":
                reply({"times": bench.run(request["what"], int(request["n"]))})
            else:
                reply({"row": bench.finish()})
                return 0
        except Exception as e:  # noqa: BLE001
            reply({"error": f"failed: {short_error(e)}"})
            return 1
    return 0


def failed_row(spec: dict, note: str) -> dict:
    row: dict = {k: "" for k in FIELDS}
    device = spec.get("device", "cpu")
    import torch

    row.update(device=device.split(":")[0], device_name=device_name(device), frames=spec["frames"],
               frame_size=spec.get("frame_size") or spec["frames"],
               batch=spec["batch"], method=spec["method"], note=note.replace("|", "/").replace(",", ";"),
               mode=mode_name(device, bool(spec.get("compile")), bool(spec.get("trace"))),
               threads=spec.get("threads") or torch.get_num_threads())
    for name in METRIC_FIELDS:
        row[name] = float("nan")
    return row

