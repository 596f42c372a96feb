"""Efficiency benchmark: latency, throughput, FLOPs and peak memory of every sampler against the full sequence.

    python -m monai_das.benchmarks.efficiency --device cpu --frames 28 64 --batch 1 64 \\
        --methods full uniform random dps adps das [--compile]

For every sequence length T in ``--frames`` (frames of T x T pixels, one channel: the MedMNIST3D 28^3 and 64^3
volumes) and every batch size, the classifier
``SubsampledClassifier(get_sampler(method, T // 2, num_frames=T), MobileNetV3Small(1, 0), 2)`` is run in eval mode
under ``torch.inference_mode`` (``full`` runs the backbone on all T frames, every other method on k = T/2), and the
benchmark records:

* forward latency: median and interquartile range of ``--repeats`` timed forward passes after ``--warmup`` untimed
  ones (on CUDA with a synchronisation before and after every pass). The methods of one (T, batch) are timed in
  interleaved rounds, one pass of each per round (see ``measure_group``), so that load from other processes falls on
  all of them alike. The number of rounds is lowered, to no fewer than ``MIN_REPEATS``, when ``--repeats`` of them
  would take longer than ``--time-budget`` seconds per method;
* throughput: volumes per second, ``batch / median latency``;
* the sampler's own latency, timed alone in the same rounds, and its share of the forward: ``sampler median /
  forward median``;
* FLOPs of one forward and of the sampler alone, from ``torch.utils.flop_counter.FlopCounterMode``;
* peak memory of the forward passes (see ``ConfigBench`` and ``PeakMemory``);
* derived: the speed-up of every method over ``full`` at the same (device, mode, T, batch) and each sampler's time
  relative to the A-DPS sampler's.

Each configuration lives in a fresh Python process of its own (``--in-process`` turns that off), driven through a pipe,
so its memory reading starts from a clean process and no allocator cache or thread pool is shared between
configurations; only one of them computes at a time. Rows go to ``benchmarks/results/efficiency.csv``, replacing rows
with the same (device, device name, mode, threads, T, batch, method) and keeping the others, so a GPU run adds its rows
beside the CPU ones; ``efficiency.md`` is rewritten from the whole CSV.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gc
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["FIELDS", "METHODS", "TARGETS", "ConfigBench", "SubprocessBench", "main", "measure_config", "measure_group",
           "merge_rows", "run_benchmark", "write_markdown"]

REPO = Path(__file__).resolve().parents[2]
METHODS = ("full", "uniform", "random", "dps", "adps", "das")
MIN_REPEATS = 5
NUM_CLASSES = 2
RESULT_TAG = "EFFICIENCY_RESULT "
#: targets of the DAS sampler at k = T/2, checked in the Markdown summary
TARGETS = {"speedup": 1.8, "sampler_share": 0.05, "das_vs_adps": 1.0}
KEY = ("device", "device_name", "mode", "threads", "frames", "batch", "method", "k")
FIELDS = [
    "device", "device_name", "mode", "frames", "batch", "k", "method", "repeats", "warmup",
    "latency_ms_median", "latency_ms_iqr", "throughput_vol_s", "speedup_vs_full",
    "sampler_ms_median", "sampler_ms_iqr", "sampler_share", "sampler_time_vs_adps",
    "gflops", "sampler_mflops", "peak_mem_mib", "peak_mem_abs_mib", "mem_method", "compile_s",
    "threads", "other_runnable", "loadavg_start", "loadavg_end", "note",
    "date", "command", "platform", "cpu_count", "torch",
]
METRIC_FIELDS = ("latency_ms_median", "latency_ms_iqr", "throughput_vol_s", "sampler_ms_median", "sampler_ms_iqr",
                 "sampler_share", "gflops", "sampler_mflops", "peak_mem_mib", "peak_mem_abs_mib")


# ---------------------------------------------------------------------------------------------------------- helpers
def device_name(device: str) -> str:
    """The GPU's name for CUDA, else the CPU model (from ``/proc/cpuinfo`` where there is one)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _proc_status_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in KiB, from ``/proc/self/status``; ``None`` off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_kib() -> int:
    scale = 1 / 1024 if sys.platform == "darwin" else 1  # bytes on macOS, KiB on Linux
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


class PeakMemory:
    """Peak memory of what runs between ``start()`` and ``stop()``, as an increase over the level at ``start()``.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``, minus
    ``torch.cuda.memory_allocated`` at start (model and input are already allocated then). CPU: the process's peak RSS
    (``VmHWM``, reset to the current RSS at start through ``/proc/self/clear_refs``) minus its RSS at start
    (``VmRSS``). Where ``VmHWM`` cannot be reset, ``getrusage(RUSAGE_SELF).ru_maxrss`` (the peak since the process
    started) is used, and a higher peak reached before ``start()`` hides the forward's own (the reading is then an
    upper bound, and says so).
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.method = ""
        self.before_kib = 0
        self.peak_kib = 0

    def start(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before_kib = torch.cuda.memory_allocated(self.device) // 1024
            self.method = "cuda max_memory_allocated - memory_allocated before"
            return
        rss = _proc_status_kib("VmRSS")
        if rss is not None and _reset_peak_rss():
            self.before_kib = rss
            self.method = "VmHWM (reset via clear_refs) - VmRSS before"
        else:
            self.before_kib = rss if rss is not None else _ru_maxrss_kib()
            self.method = "ru_maxrss - RSS before" + ("" if _ru_maxrss_kib() <= self.before_kib else " (upper bound)")

    def stop(self) -> tuple[float, float]:
        """``(increase, absolute peak)`` in MiB."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)
            self.peak_kib = torch.cuda.max_memory_allocated(self.device) // 1024
        elif self.method.startswith("VmHWM"):
            self.peak_kib = _proc_status_kib("VmHWM") or 0
        else:
            self.peak_kib = _ru_maxrss_kib()
        return max(0, self.peak_kib - self.before_kib) / 1024, self.peak_kib / 1024


def time_callable(fn: Callable[[], object], repeats: int, warmup: int, device: str) -> list[float]:
    """Seconds of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones (CUDA: synchronised around each)."""
    import torch

    cuda = device.startswith("cuda")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as ``FlopCounterMode`` counts them (matmul/convolution-type ops only)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _median_iqr_ms(times: list[float]) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(np.asarray(times) * 1000.0, [25, 50, 75])
    return float(q50), float(q75 - q25)


def _short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}".replace("|", "/").replace(",", ";")


def other_runnable_threads(samples: int = 5, interval: float = 0.02) -> float:
    """Mean number of runnable (state R) threads of other processes, over a few samples of ``/proc``.

    The benchmark's own process (and its parent) are left out. ``nan`` where ``/proc`` cannot be read.
    """
    mine = {os.getpid(), os.getppid()}
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval)
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return float("nan")
        n = 0
        for pid in pids:
            if pid in mine:
                continue
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                except OSError:
                    continue
                if stat[stat.rfind(")") + 2: stat.rfind(")") + 3] == "R":
                    n += 1
        counts.append(n)
    return float(np.mean(counts))


# ------------------------------------------------------------------------------------------------------ measurement
def frames_kept(method: str, frames: int, ratio: float) -> int:
    """k for ``method`` at ``ratio`` of ``frames`` (``full`` keeps all)."""
    return frames if method == "full" else max(1, round(frames * ratio))


def build_model(method: str, frames: int, ratio: float = 0.5):
    """The benchmarked classifier for ``method`` at k = ratio * T (``full``: all T frames), in eval mode, with the
    channels-last weights the bundles train with."""
    import torch

    from monai_das.networks.nets import MobileNetV3Small, SubsampledClassifier, get_sampler

    sampler = get_sampler(method, frames_kept(method, frames, ratio), num_frames=frames)
    model = SubsampledClassifier(sampler, MobileNetV3Small(1, 0), NUM_CLASSES).eval()
    return model.to(memory_format=torch.channels_last)


def _mode(device: str, compile: bool) -> str:
    return ("compile:reduce-overhead" if device.startswith("cuda") else "compile:default") if compile else "eager"


class ConfigBench:
    """One configuration set up once (model, input, optional ``torch.compile``), then timed on request.

    ``run("forward" | "sampler", n)`` times ``n`` calls of the whole model or of its sampler alone;
    ``finish()`` closes the memory window and counts FLOPs, returning the configuration's static part of a row.
    Peak memory (:py:class:`PeakMemory`) covers every call from the first ``run`` to ``finish`` (for compiled models
    the compiling call comes before). FLOPs are counted on the eager model.

    With ``compile=True`` the model and the sampler are ``torch.compile``'d (``mode="reduce-overhead"``, i.e. CUDA
    graphs, on CUDA; the default mode elsewhere); a failure is kept in ``self.failed`` as ``compile failed: <reason>``.
    ``threads > 0`` sets ``torch.set_num_threads`` first.
    """

    def __init__(self, method: str, frames: int, batch: int, device: str = "cpu", compile: bool = False,
                 seed: int = 0, threads: int = 0, ratio: float = 0.5) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.device = device
        self.failed = ""
        self.notes: list[str] = []
        self.row: dict = {k: "" for k in FIELDS}
        self.row.update(device=torch.device(device).type, device_name=device_name(device), mode=_mode(device, compile),
                        frames=frames, batch=batch, k=frames_kept(method, frames, ratio),
                        method=method, threads=torch.get_num_threads())
        torch.manual_seed(seed)
        self.model = build_model(method, frames, ratio).to(device)
        x = torch.rand(batch, 1, frames, frames, frames, generator=torch.Generator().manual_seed(seed)).to(device)
        self.x = x
        model = self.model
        self.calls: dict[str, Callable[[], object] | None] = {
            "forward": lambda: model(x), "sampler": lambda: model.sampler(x)}
        if compile:
            self._compile(torch)
        self.memory = PeakMemory(device)
        self.started = False

    def _compile(self, torch) -> None:
        cuda = self.device.startswith("cuda")
        mode = "reduce-overhead" if cuda else "default"
        x = self.x
        with torch.inference_mode():
            for what, module in (("forward", self.model), ("sampler", self.model.sampler)):
                try:
                    compiled = torch.compile(module, mode=mode)
                    t0 = time.perf_counter()
                    compiled(x)
                    if cuda:
                        torch.cuda.synchronize(self.device)
                    if what == "forward":
                        self.row["compile_s"] = round(time.perf_counter() - t0, 2)
                    self.calls[what] = _cudagraph_step(compiled, x) if cuda else (lambda c=compiled: c(x))
                except Exception as e:  # noqa: BLE001 - any compiler failure is a result to report
                    if what == "forward":
                        self.failed = f"compile failed: {_short_error(e)}"
                        return
                    self.notes.append(f"sampler compile failed: {_short_error(e)}")
                    self.calls[what] = None

    def run(self, what: str, n: int) -> list[float]:
        """Seconds of ``n`` calls of ``"forward"`` or ``"sampler"`` (empty when that call is unavailable)."""
        import torch

        fn = self.calls[what]
        if self.failed or fn is None or n < 1:
            return []
        if not self.started:
            self.memory.start()
            self.started = True
        with torch.inference_mode():
            return time_callable(fn, n, 0, self.device)

    def finish(self) -> dict:
        """The row's static part, peak memory and FLOPs (no timings); ``note`` holds any failure."""
        import torch

        row = dict(self.row)
        for name in METRIC_FIELDS:
            row[name] = float("nan")
        if self.failed:
            row["note"] = self.failed
            return row
        if self.started:
            row["peak_mem_mib"], row["peak_mem_abs_mib"] = self.memory.stop()
            row["mem_method"] = self.memory.method
        model, x = self.model, self.x
        with torch.inference_mode():
            row["gflops"] = count_flops(lambda: model(x)) / 1e9
            row["sampler_mflops"] = count_flops(lambda: model.sampler(x)) / 1e6
        row["note"] = "; ".join(self.notes)
        return row


def _cudagraph_step(fn: Callable, x) -> Callable[[], object]:
    """Call a ``reduce-overhead`` compiled ``fn``, marking a new CUDA-graph step first (outputs are not kept)."""
    import torch

    def call() -> object:
        torch.compiler.cudagraph_mark_step_begin()
        return fn(x)

    return call


class SubprocessBench:
    """:py:class:`ConfigBench` in a fresh Python process of its own, driven through a pipe (same interface)."""

    def __init__(self, **spec) -> None:
        import tempfile

        self.spec = spec
        self.failed = ""
        self._stderr = tempfile.TemporaryFile(mode="w+")
        cmd = [sys.executable, "-m", "monai_das.benchmarks.efficiency", "--worker", json.dumps(spec)]
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
        return _failed_row(self.spec, self.failed or reply.get("error", "failed"))


def serve_worker(spec: dict) -> int:
    """The ``--worker`` side of :py:class:`SubprocessBench`: one JSON request per stdin line, tagged JSON replies."""

    def reply(obj: dict) -> None:
        print(RESULT_TAG + json.dumps(obj), flush=True)

    try:
        bench = ConfigBench(**spec)
    except Exception as e:  # noqa: BLE001
        reply({"error": f"failed: {_short_error(e)}"})
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
            reply({"error": f"failed: {_short_error(e)}"})
            return 1
    return 0


def measure_group(benches: list, repeats: int = 30, warmup: int = 3, time_budget: float | None = 10.0,
                  on_round: Callable[[], object] | None = None) -> list[dict]:
    """Time the configurations of ``benches`` in interleaved rounds and return one row each.

    Every configuration first gets ``warmup`` untimed forwards and sampler calls. Then each round times one forward of
    every configuration, then one sampler call of every configuration, starting each round one configuration further
    along; a burst of load from elsewhere thus hits every method alike instead of the one measured at that moment.
    ``repeats`` rounds are run, lowered (to no fewer than ``min(repeats, MIN_REPEATS)``) where the rounds would take
    longer than ``time_budget`` seconds per configuration, judged from the last warm-up forward of each.
    """
    for bench in benches:
        if hasattr(bench, "ready"):
            bench.ready()
    live = [b for b in benches if not b.failed]
    estimate = 0.0
    for bench in live:
        times = bench.run("forward", max(warmup, 1 if time_budget else 0))
        bench.run("sampler", warmup)
        estimate += times[-1] if times else 0.0
    rounds = repeats
    if time_budget and estimate > 0:
        rounds = max(min(repeats, MIN_REPEATS), min(repeats, int(time_budget * len(live) / estimate)))
    forward: dict[int, list[float]] = defaultdict(list)
    sampler: dict[int, list[float]] = defaultdict(list)
    for r in range(rounds):
        if on_round is not None:
            on_round()
        order = live[r % len(live):] + live[: r % len(live)] if live else []
        for bench in order:
            forward[id(bench)] += bench.run("forward", 1)
        for bench in order:
            sampler[id(bench)] += bench.run("sampler", 1)
    rows = []
    for bench in benches:
        row = bench.finish()
        row["warmup"] = warmup
        times, stimes = forward.get(id(bench), []), sampler.get(id(bench), [])
        row["repeats"] = len(times)
        if times:
            row["latency_ms_median"], row["latency_ms_iqr"] = _median_iqr_ms(times)
            row["throughput_vol_s"] = int(row["batch"]) / (row["latency_ms_median"] / 1000.0)
        if times and stimes:
            row["sampler_ms_median"], row["sampler_ms_iqr"] = _median_iqr_ms(stimes)
            row["sampler_share"] = row["sampler_ms_median"] / row["latency_ms_median"]
        rows.append(row)
    return rows


def measure_config(method: str, frames: int, batch: int, device: str = "cpu", repeats: int = 30, warmup: int = 3,
                   compile: bool = False, time_budget: float | None = 10.0, seed: int = 0, threads: int = 0,
                   ratio: float = 0.5) -> dict:
    """Measure one (method, T, batch) configuration in this process; returns one row (metrics as floats).

    See :py:class:`ConfigBench` (memory, FLOPs, compilation) and :py:func:`measure_group` (timing).
    """
    bench = ConfigBench(method, frames, batch, device, compile, seed, threads, ratio)
    return measure_group([bench], repeats, warmup, time_budget)[0]


def _failed_row(spec: dict, note: str) -> dict:
    row: dict = {k: "" for k in FIELDS}
    device = spec.get("device", "cpu")
    import torch

    row.update(device=device.split(":")[0], device_name=device_name(device), frames=spec["frames"],
               batch=spec["batch"], method=spec["method"], note=note.replace("|", "/").replace(",", ";"),
               mode=_mode(device, bool(spec.get("compile"))), threads=spec.get("threads") or torch.get_num_threads())
    for name in METRIC_FIELDS:
        row[name] = float("nan")
    return row


# -------------------------------------------------------------------------------------------------------- csv / md
def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _key(row: dict) -> tuple:
    return tuple(str(row[k]) for k in KEY)


def _setting(row: dict) -> tuple:
    """(device, device name, mode, threads, T, batch): the rows compared with each other."""
    return _key(row)[:-2]


def _same_k_adps(row: dict, members: list[dict]) -> dict | None:
    return next((r for r in members if r["method"] == "adps" and str(r["k"]) == str(row["k"])), None)


def derive(rows: list[dict]) -> None:
    """Fill ``speedup_vs_full`` (vs the full row of the same setting) and ``sampler_time_vs_adps`` (vs the A-DPS row
    of the same setting and k)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[_setting(row)].append(row)
    for members in groups.values():
        full = next((r for r in members if r["method"] == "full"), None)
        for row in members:
            adps = _same_k_adps(row, members)
            latency = _num(row["latency_ms_median"])
            speedup = _num(full["latency_ms_median"]) / latency if full else float("nan")
            ratio = _num(row["sampler_ms_median"]) / _num(adps["sampler_ms_median"]) if adps else float("nan")
            row["speedup_vs_full"] = speedup
            row["sampler_time_vs_adps"] = ratio


def _fmt(value, digits: int = 3) -> str:
    v = _num(value)
    if math.isnan(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def _csv_value(name: str, value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(k, row.get(k, "")) for k in FIELDS})


def _sort_key(row: dict) -> tuple:
    method = row["method"]
    return (row["device"], row["device_name"], row["mode"] != "eager", row["mode"], str(row["threads"]),
            int(row["frames"]), int(row["batch"]), int(row["k"]) if method != "full" else 0,
            METHODS.index(method) if method in METHODS else len(METHODS))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with every row that ``new`` measures again replaced, plus the rest of ``new``; sorted, derived."""
    fresh = {_key(r) for r in new}
    rows = [r for r in old if _key(r) not in fresh] + list(new)
    rows.sort(key=_sort_key)
    derive(rows)
    return rows


def _status(ok: bool) -> str:
    return "met" if ok else "missed"


def targets_lines(rows: list[dict]) -> list[str]:
    """One line per (device, mode, T, batch) with the DAS targets stated as met or missed, with their values."""
    lines = []
    for row in rows:
        if row["method"] != "das" or int(row["k"]) != frames_kept("das", int(row["frames"]), 0.5):
            continue
        where = (f"{row['device']} ({row['device_name']}), {row['mode']}, {row['threads']} thread(s), "
                 f"T={row['frames']}, batch {row['batch']}")
        if row.get("note", "").startswith(("compile failed", "failed")):
            lines.append(f"- {where}: not measured ({row['note']}).")
            continue
        speedup, share, ratio = (_num(row[k]) for k in ("speedup_vs_full", "sampler_share", "sampler_time_vs_adps"))
        parts = [
            "speed-up vs full " + ("n/a (no full row)" if math.isnan(speedup) else
                                   f"{speedup:.2f}x ({_status(speedup >= TARGETS['speedup'])}, "
                                   f"target >= {TARGETS['speedup']}x)"),
            "sampler share " + ("n/a" if math.isnan(share) else
                                f"{100 * share:.1f}% ({_status(share <= TARGETS['sampler_share'])}, "
                                f"target <= {100 * TARGETS['sampler_share']:.0f}%)"),
            "DAS/ADPS sampler time " + ("n/a (no adps row)" if math.isnan(ratio) else
                                        f"{ratio:.2f} ({_status(ratio < TARGETS['das_vs_adps'])}, "
                                        f"target < {TARGETS['das_vs_adps']:.0f})"),
        ]
        adps = _same_k_adps(row, [r for r in rows if _setting(r) == _setting(row)])
        if adps and _num(adps["sampler_mflops"]) > 0:
            flops_ratio = _num(row["sampler_mflops"]) / _num(adps["sampler_mflops"])
            parts.append(f"DAS/ADPS sampler counted FLOPs {flops_ratio:.2f}")
        lines.append(f"- {where}: " + "; ".join(parts) + ".")
    return lines


def _load_note(rows: list[dict]) -> str:
    runnable = [_num(r["other_runnable"]) for r in rows if not math.isnan(_num(r.get("other_runnable")))]
    if not runnable:
        return "load not recorded"
    mean, peak = float(np.mean(runnable)), float(np.max(runnable))
    verdict = "**the machine was loaded** during the measurement" if mean >= 0.5 else "the machine was not loaded"
    return (f"{verdict}: other processes' runnable threads, sampled every timing round, mean {mean:.2f}, "
            f"max {peak:.1f} (on {rows[0]['cpu_count']} CPUs)")


def write_markdown(rows: list[dict], path: Path) -> None:
    """Rewrite ``path`` from all rows: the runs (command, machine, date, load), one table per device, the targets."""
    by_device: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        by_device[(row["device"], row["device_name"])].append(row)
    lines = ["# Efficiency: latency, throughput, FLOPs and memory of every sampler", ""]
    for (device, name), group in by_device.items():
        runs: dict[tuple, list[dict]] = defaultdict(list)
        for row in group:
            runs[(row["command"], row["date"])].append(row)
        for (command, date), run_rows in sorted(runs.items(), key=lambda kv: kv[0][1]):
            first = run_rows[0]
            lines += [f"- Command: `{command}`",
                      f"  - Machine: {first['platform']}, {first['cpu_count']} CPUs, torch {first['torch']}, "
                      f"device {device} ({name}), {first['threads']} torch threads",
                      f"  - Date: {date}",
                      f"  - Load: {_load_note(run_rows)}; 1-min load average at start / end "
                      f"{first.get('loadavg_start', '')} / {first.get('loadavg_end', '')} (includes this benchmark)",
                      f"  - Rows: {len(run_rows)}"]
    lines.append("")
    header = ("| mode | threads | T | batch | method | k | latency ms median (IQR) | vol/s | speed-up vs full "
              "| sampler ms (IQR) | sampler share | sampler time vs ADPS | GFLOPs | sampler MFLOPs | peak mem MiB "
              "| runs | note |")
    for (device, name), group in by_device.items():
        lines += [f"## {device}: {name}", "", header, "|" + "---|" * 17]
        for r in group:
            share = _num(r["sampler_share"])
            lines.append(
                f"| {r['mode']} | {r['threads']} | {r['frames']} | {r['batch']} | {r['method']} | {r['k']} "
                f"| {_fmt(r['latency_ms_median'])} ({_fmt(r['latency_ms_iqr'], 2)}) | {_fmt(r['throughput_vol_s'])} "
                f"| {_fmt(r['speedup_vs_full'])} | {_fmt(r['sampler_ms_median'])} ({_fmt(r['sampler_ms_iqr'], 2)}) "
                f"| {'' if math.isnan(share) else f'{100 * share:.1f}%'} | {_fmt(r['sampler_time_vs_adps'])} "
                f"| {_fmt(r['gflops'])} | {_fmt(r['sampler_mflops'])} | {_fmt(r['peak_mem_mib'])} | {r['repeats']} "
                f"| {r['note']} |")
        lines.append("")
    lines += ["## Targets (DAS at k = T/2)", "",
              f"End-to-end speed-up vs the full sequence >= {TARGETS['speedup']}x; sampler share of the forward time "
              f"<= {100 * TARGETS['sampler_share']:.0f}%; DAS sampler time / A-DPS sampler time < 1 (the brief gives "
              "no threshold for this ratio; DAS being the cheaper sampler is the claim checked here).", ""]
    lines += targets_lines(rows) or ["- no DAS rows."]
    lines += ["", "## Method", "",
              "- Model: `SubsampledClassifier(get_sampler(method, k, num_frames=T), MobileNetV3Small(1, 0), 2)`, "
              "eval mode, channels-last weights (as the bundles train), `torch.inference_mode()`, input "
              "`(batch, 1, T, T, T)` uniform noise (T x T frames: the MedMNIST3D 28^3 and 64^3 volumes); `full` "
              "runs the backbone on all T frames, every other method on k = round(ratio * T) frames (`--ratios`, "
              "default 0.5 only). Weights are random (seed 0): latency does not depend on them, except that the picks do not "
              "change the amount of work.",
              "- Latency: median and interquartile range of the timed forward passes (column `runs`) after the "
              "warm-up passes, `time.perf_counter` around each pass (CUDA: synchronised before and after). All "
              "methods of one (T, batch) are set up at once, each in its own process, and timed in interleaved "
              "rounds: one forward of every method per round, the starting method rotating, so a burst of load from "
              "elsewhere falls on every method alike. The number of rounds is lowered, to no fewer than 5, where "
              "`--repeats` of them would exceed `--time-budget` seconds per method (judged from the last warm-up "
              "pass). Throughput = batch / median latency. Speed-up vs full = full's median / the method's median at "
              "the same (device, mode, threads, T, batch). Rows measured before the channels-last change (dated "
              "before 2026-11-28 06:00 UTC) ran channels-first weights; on this CPU channels-last made a MobileNet "
              "training step 3-7x faster.",
              "- Sampler time: `model.sampler(x)` alone, timed in the same rounds (one call per method per round, "
              "after the forwards); share = sampler median / whole-forward median. Sampler time vs ADPS = sampler "
              "median / the A-DPS sampler's median at the same k. Every sampler's time includes its input check "
              "(`FrameSampler.check_input`, which scans the whole input with `torch.isfinite`).",
              "- FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one eager forward (GFLOPs) and on the sampler "
              "alone (MFLOPs). It counts matmul/convolution-type ops only (mm, addmm, bmm, convolution, attention, "
              "...): elementwise work, pooling, normalisation, sorting and top-k are not counted, so the samplers' "
              "own work is under-counted (DAS's Sobel/Laplacian/variance features are shifted sums and products, "
              "counted as 0; what remains is its embedding CNN and attention MLPs; A-DPS's counted FLOPs are its "
              "encoder, LSTM cell and logit layers).",
              "- Peak memory (MiB): increase over the level just before the first forward of the whole model, over "
              "all its calls (warm-up and timed forwards and sampler calls). CPU: each configuration runs in a fresh "
              "Python process; "
              "the process's peak RSS (`VmHWM` of /proc/self/status, reset to the current RSS through "
              "`/proc/self/clear_refs`) minus its RSS (`VmRSS`) just before the forwards; model, input and imported "
              "libraries are in the baseline. `getrusage` `ru_maxrss` is the fallback where `VmHWM` cannot be reset "
              "(then an upper bound where the process had peaked higher before). CUDA: "
              "`torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus `memory_allocated` before "
              "(allocator-level, excludes the CUDA context). Compiled rows start after the compiling call.",
              "- Threads: torch intra-op threads of the measuring processes (`--threads`, default torch's). On a CPU "
              "shared with other busy processes, two or more threads per process wait on each other at every "
              "parallel op whenever one of them is descheduled, which made 2-thread latencies on the loaded 2-CPU "
              "machine 10-100x slower and erratic; one thread per process degrades in proportion to the load instead, "
              "so ratios between methods stay meaningful.",
              "- Load: runnable threads of other processes (state R in /proc/*/task/*/stat; the benchmark's own "
              "processes are idle or excluded at that moment), sampled at the start of every round; the load average "
              "is not used for the verdict because it includes this benchmark's own threads.",
              "- `--compile`: `torch.compile` of the model and of the sampler, `mode=\"reduce-overhead\"` (CUDA "
              "graphs) on CUDA, default mode on CPU; FLOPs are those of the eager model.", ""]
    path.write_text("\n".join(lines))


def run_benchmark(frames: list[int], batches: list[int], methods: list[str], device: str = "cpu", repeats: int = 30,
                  warmup: int = 3, compile: bool = False, results_dir: Path | str = REPO / "benchmarks" / "results",
                  command: str = "", isolate: bool = True, time_budget: float | None = 10.0,
                  threads: int = 0, verbose: bool = True, ratios: tuple[float, ...] = (0.5,)) -> list[dict]:
    """Measure every (T, batch, method[, compiled]) configuration and write ``efficiency.csv`` / ``efficiency.md``.

    Returns the rows measured now (the files hold these plus the kept rows of other configurations).
    """
    import torch

    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = results_dir / "efficiency.csv", results_dir / "efficiency.md"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta = {"date": date, "command": command or "python -m monai_das.benchmarks.efficiency",
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    old = read_rows(csv_path)
    measured: list[dict] = []
    modes = [False, True] if compile else [False]
    for t in frames:
        for b in batches:
            for compiled in modes:
                start = time.time()
                # full keeps every frame whatever the ratio: measured once
                specs = [{"method": m, "frames": t, "batch": b, "device": device, "compile": compiled,
                          "threads": threads, "ratio": r} for r in ratios for m in methods
                         if m != "full" or r == ratios[0]]
                benches = [SubprocessBench(**spec) if isolate else ConfigBench(**spec) for spec in specs]
                samples: list[float] = []
                rows = measure_group(benches, repeats, warmup, time_budget,
                                     on_round=lambda: samples.append(other_runnable_threads(samples=2)))
                runnable = float(np.mean(samples)) if samples else float("nan")
                for row in rows:
                    if not isolate and row["mem_method"]:
                        row["mem_method"] += " (in-process: shared by every configuration measured)"
                    row.update(meta, other_runnable=round(runnable, 2))
                    measured.append(row)
                    if verbose:
                        print(f"{device} T={t} batch={b} {row['mode']} {row['method']} k={row['k']}: "
                              f"{_fmt(row['latency_ms_median'])} ms ({row['repeats']} runs), sampler "
                              f"{_fmt(row['sampler_ms_median'])} ms, {_fmt(row['gflops'])} GFLOPs, "
                              f"+{_fmt(row['peak_mem_mib'])} MiB {row['note']}", flush=True)
                if verbose:
                    print(f"  ({time.time() - start:.0f} s, other runnable threads {runnable:.2f})", flush=True)
                _write(csv_path, md_path, old, measured, load_before)
    return measured


def _write(csv_path: Path, md_path: Path, old: list[dict], measured: list[dict], load_before: tuple) -> None:
    """Rewrite both files with the rows measured so far (a run cut off keeps what it measured)."""
    load_now = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    for row in measured:
        row.update(loadavg_start=round(load_before[0], 2), loadavg_end=round(load_now[0], 2))
    rows = merge_rows(old, measured)
    write_csv(rows, csv_path)
    write_markdown(rows, md_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Latency, throughput, FLOPs and memory of every sampler vs full.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--frames", nargs="+", type=int, default=[28, 64], help="T (frames are T x T pixels)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30, help="timed forward passes per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes first")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5],
                        help="fractions k/T of the frames kept (the targets are checked at 0.5)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    parser.add_argument("--time-budget", type=float, default=10.0,
                        help=f"seconds for the timed passes of one configuration; fewer repeats (>= {MIN_REPEATS}) "
                             "when --repeats would take longer; 0 disables")
    parser.add_argument("--results-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure every configuration in this process (no fresh process per configuration)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return serve_worker(json.loads(args.worker))
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda but torch.cuda.is_available() is False")
    command = "python -m monai_das.benchmarks.efficiency " + shlex.join(argv if argv is not None else sys.argv[1:])
    run_benchmark(args.frames, args.batch, args.methods, args.device, args.repeats, args.warmup, args.compile,
                  args.results_dir, command.strip(), isolate=not args.in_process,
                  time_budget=args.time_budget or None, threads=args.threads, ratios=tuple(args.ratios))
    print(f"wrote {Path(args.results_dir) / 'efficiency.csv'} and {Path(args.results_dir) / 'efficiency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
