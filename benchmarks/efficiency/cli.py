"""The efficiency benchmark's command line: ``python -m benchmarks.efficiency``."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.efficiency.measure import (MIN_REPEATS, ConfigBench, device_name, measure_group, mode_name,
                                          other_runnable_threads)
from benchmarks.efficiency.report import fmt, write_markdown
from benchmarks.efficiency.rows import METHODS, merge_rows, read_rows, setting, write_csv
from benchmarks.efficiency.workers import REPO, SubprocessBench, serve_worker

__all__ = ["main", "run_benchmark"]

def run_benchmark(frames: list[int], batches: list[int], methods: list[str], device: str = "cpu", repeats: int = 30,
                  warmup: int = 3, compile: bool = False, results_dir: Path | str = REPO / "benchmarks" / "results",
                  command: str = "", isolate: bool = True, time_budget: float | None = 10.0,
                  threads: int | list[int] = 0, verbose: bool = True, ratios: tuple[float, ...] = (0.5,),
                  trace: bool = False, frame_sizes: list[int] | None = None, resume: bool = False) -> list[dict]:
    """Measure every (T, frame size, batch, threads, mode, method) configuration; write ``efficiency.csv`` and
    ``.md``. ``frame_sizes`` ``None`` gives frames of T x T pixels; ``threads`` 0 is torch's default. With
    ``resume``, settings (device, mode, threads, T, frame size, batch) that the CSV already holds without a failure
    note are skipped, whichever command measured them.

    Returns the rows measured now (the files hold these plus the kept rows of other configurations).
    """
    import torch

    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = results_dir / "efficiency.csv", results_dir / "efficiency.md"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta = {"date": date, "command": command or "python -m benchmarks.efficiency",
            "platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__}
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    old = read_rows(csv_path)
    measured: list[dict] = []
    modes = ["eager"] + (["compile"] if compile else []) + (["trace"] if trace else [])
    settings = [(t, size or t, b, n, mode) for t in frames for size in (frame_sizes or [0]) for b in batches
                for n in (threads if isinstance(threads, list) else [threads]) for mode in modes]
    done = {setting(r) for r in old if not r["note"]} if resume else set()
    for t, size, b, n, mode in settings:
        start = time.time()
        # full keeps every frame whatever the ratio: measured once
        specs = [{"method": m, "frames": t, "frame_size": size, "batch": b, "device": device,
                  "compile": mode == "compile", "trace": mode == "trace",
                  "threads": n, "ratio": r} for r in ratios for m in methods
                 if m != "full" or r == ratios[0]]
        if resume and _setting_of(specs[0], device) in done:
            continue
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
                print(f"{device} T={t} frames {size} px batch={b} threads={row['threads']} {row['mode']} "
                      f"{row['method']} k={row['k']}: {fmt(row['latency_ms_median'])} ms ({row['repeats']} runs), sampler "
                      f"{fmt(row['sampler_ms_median'])} ms, {fmt(row['gflops'])} GFLOPs, "
                      f"+{fmt(row['peak_mem_mib'])} MiB {row['note']}", flush=True)
        if verbose:
            print(f"  ({time.time() - start:.0f} s, other runnable threads {runnable:.2f})", flush=True)
        _write(csv_path, md_path, old, measured, load_before)
    return measured


def _setting_of(spec: dict, device: str) -> tuple:
    """The :py:func:`setting` a run of ``spec`` would write (threads 0 reads torch's default)."""
    import torch

    threads = spec["threads"] or torch.get_num_threads()
    return (device.split(":")[0], device_name(device), mode_name(device, spec["compile"], spec["trace"]),
            str(threads), str(spec["frames"]), str(spec["frame_size"]), str(spec["batch"]))


def _write(csv_path: Path, md_path: Path, old: list[dict], measured: list[dict], load_before: tuple) -> None:
    """Rewrite both files with the rows measured so far (a run cut off keeps what it measured)."""
    load_now = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    for row in measured:
        row.update(loadavg_start=round(load_before[0], 2), loadavg_end=round(load_now[0], 2))
    rows = merge_rows(old, measured)
    write_csv(rows, csv_path)
    write_markdown(rows, md_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.efficiency",
                                     description="Latency, throughput, FLOPs and memory of every sampler vs full.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--frames", nargs="+", type=int, default=[28, 64], help="T, the frames per volume or video")
    parser.add_argument("--frame_size", nargs="+", type=int, default=None,
                        help="side of the square frames in pixels (default: T, i.e. T x T x T volumes)")
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=30, help="timed forward passes per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes first")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.5],
                        help="fractions k/T of the frames kept (the targets are checked at 0.5)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile'd models")
    parser.add_argument("--trace", action="store_true", help="also measure torch.jit.trace'd models")
    parser.add_argument("--time-budget", type=float, default=10.0,
                        help=f"seconds for the timed passes of one configuration; fewer repeats (>= {MIN_REPEATS}) "
                             "when --repeats would take longer; 0 disables")
    parser.add_argument("--results-dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--threads", nargs="+", type=int, default=[0],
                        help="torch intra-op threads, each measured in turn (0: torch's default, all CPUs)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure every configuration in this process (no fresh process per configuration)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the settings (device, mode, threads, T, frame size, batch) efficiency.csv already holds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return serve_worker(json.loads(args.worker))
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error("--device cuda but torch.cuda.is_available() is False")
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--resume"]  # the same run, resumed
    command = "python -m benchmarks.efficiency " + shlex.join(given)
    run_benchmark(args.frames, args.batch, args.methods, args.device, args.repeats, args.warmup, args.compile,
                  args.results_dir, command.strip(), isolate=not args.in_process,
                  time_budget=args.time_budget or None, threads=args.threads, ratios=tuple(args.ratios),
                  trace=args.trace, frame_sizes=args.frame_size, resume=args.resume)
    print(f"wrote {Path(args.results_dir) / 'efficiency.csv'} and {Path(args.results_dir) / 'efficiency.md'}")
    return 0

