"""Measuring one configuration of the efficiency benchmark in this process: latency, sampler time, FLOPs, peak memory
and the load of the machine."""

from __future__ import annotations

import gc
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.efficiency.rows import FIELDS, METRIC_FIELDS

__all__ = ["ConfigBench", "MIN_REPEATS", "PeakMemory", "build_model", "count_flops", "device_name", "frames_kept",
           "measure_config", "measure_group", "mode_name", "other_runnable_threads", "short_error", "time_callable"]

MIN_REPEATS = 5

NUM_CLASSES = 2



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


def short_error(e: BaseException) -> str:
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


def mode_name(device: str, compile: bool, trace: bool = False) -> str:
    if trace:
        return "trace"
    return ("compile:reduce-overhead" if device.startswith("cuda") else "compile:default") if compile else "eager"


class ConfigBench:
    """One configuration set up once (model, input, optional ``torch.compile``), then timed on request.

    ``run("forward" | "sampler", n)`` times ``n`` calls of the whole model or of its sampler alone;
    ``finish()`` closes the memory window and counts FLOPs, returning the configuration's static part of a row.
    Peak memory (:py:class:`PeakMemory`) covers every call from the first ``run`` to ``finish`` (for compiled models
    the compiling call comes before). FLOPs are counted on the eager model.

    With ``compile=True`` the model and the sampler are ``torch.compile``'d (``mode="reduce-overhead"``, i.e. CUDA
    graphs, on CUDA; the default mode elsewhere); a failure is kept in ``self.failed`` as ``compile failed: <reason>``.
    With ``trace=True`` they are ``torch.jit.trace``'d under ``torch.no_grad`` (as MONAI's ``ckpt_export`` exports
    them); a failure is kept as ``trace failed: <reason>``. ``threads > 0`` sets ``torch.set_num_threads`` first.
    The input is ``(batch, 1, frames, frame_size, frame_size)`` uniform noise (``frame_size`` defaults to ``frames``).
    """

    def __init__(self, method: str, frames: int, batch: int, device: str = "cpu", compile: bool = False,
                 seed: int = 0, threads: int = 0, ratio: float = 0.5, trace: bool = False,
                 frame_size: int | None = None) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)
        self.device = device
        self.failed = ""
        self.notes: list[str] = []
        self.row: dict = {k: "" for k in FIELDS}
        self.row.update(device=torch.device(device).type, device_name=device_name(device),
                        mode=mode_name(device, compile, trace),
                        frames=frames, frame_size=frame_size or frames, batch=batch,
                        k=frames_kept(method, frames, ratio),
                        method=method, threads=torch.get_num_threads())
        torch.manual_seed(seed)
        self.model = build_model(method, frames, ratio).to(device)
        size = frame_size or frames
        x = torch.rand(batch, 1, frames, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
        self.x = x
        model = self.model
        self.calls: dict[str, Callable[[], object] | None] = {
            "forward": lambda: model(x), "sampler": lambda: model.sampler(x)}
        if compile:
            self._compile(torch)
        elif trace:
            self._trace(torch)
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
                        self.failed = f"compile failed: {short_error(e)}"
                        return
                    self.notes.append(f"sampler compile failed: {short_error(e)}")
                    self.calls[what] = None

    def _trace(self, torch) -> None:
        x = self.x
        try:
            with torch.no_grad():
                model = torch.jit.trace(self.model, x, check_trace=False)
                # the sampler's tensors only: a traced function cannot return the None logits of a fixed sampler
                sampler = torch.jit.trace(_sampler_tensors(self.model.sampler), x, check_trace=False)
        except Exception as e:  # noqa: BLE001 - a tracing failure is a result to report
            self.failed = f"trace failed: {short_error(e)}"
            return
        self.calls.update(forward=lambda: model(x), sampler=lambda: sampler(x))

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


def _sampler_tensors(sampler):
    """A module whose ``forward(x)`` returns ``(frames, weights, indices)`` of ``sampler``, which
    ``torch.jit.trace`` can trace for every sampler (a traced module cannot return the None logits of a fixed
    sampler, and a traced function would freeze the parameters it reads)."""
    import torch

    class SamplerTensors(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sampler = sampler

        def forward(self, x):
            out = self.sampler(x)
            return out.frames, out.weights, out.indices

    return SamplerTensors()


def _cudagraph_step(fn: Callable, x) -> Callable[[], object]:
    """Call a ``reduce-overhead`` compiled ``fn``, marking a new CUDA-graph step first (outputs are not kept)."""
    import torch

    def call() -> object:
        torch.compiler.cudagraph_mark_step_begin()
        return fn(x)

    return call


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
                   ratio: float = 0.5, trace: bool = False, frame_size: int | None = None) -> dict:
    """Measure one (method, T, batch) configuration in this process; returns one row (metrics as floats).

    See :py:class:`ConfigBench` (memory, FLOPs, compilation) and :py:func:`measure_group` (timing).
    """
    bench = ConfigBench(method, frames, batch, device, compile, seed, threads, ratio, trace, frame_size)
    return measure_group([bench], repeats, warmup, time_budget)[0]

