"""The efficiency benchmark's report: ``efficiency.md`` (runs, load, one table per device, the targets, the method)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.efficiency.measure import frames_kept
from benchmarks.efficiency.rows import num, setting

__all__ = ["LARGE_FRAME", "TARGETS", "fmt", "targets_lines", "write_markdown"]

#: targets of DAS at k = T/2 (issue 26), judged on eager rows at 1 thread: latency vs uniform's at every setting (<=),
#: the sampler's own time at batch 1, T = 28 in ms (<=), its share of the forward at frames >= LARGE_FRAME px (<=) and
#: the speed-up vs the full sequence at frames >= LARGE_FRAME px, batch 1 (>=)
TARGETS = {"das_vs_uniform": 1.05, "sampler_ms_t28": 1.0, "sampler_share": 0.03, "speedup": 1.9}
LARGE_FRAME = 112
#: other processes' mean runnable threads from which a row counts as measured on a loaded machine
LOADED = 0.5


def fmt(value, digits: int = 3) -> str:
    v = num(value)
    if math.isnan(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def _status(ok: bool) -> str:
    return "met" if ok else "missed"


def _check(name: str, value: float, target: float, at_most: bool, unit: str = "") -> str:
    if math.isnan(value):
        return f"{name} n/a"
    ok = value <= target if at_most else value >= target
    return f"{name} {fmt(value)}{unit} ({_status(ok)}, target {'<=' if at_most else '>='} {target}{unit})"


def targets_lines(rows: list[dict]) -> list[str]:
    """One line per DAS row at k = T/2 with the targets (:py:data:`TARGETS`) that apply to its setting, met or
    missed with their values; the targets are judged on eager rows at 1 thread only, and a row measured on a loaded
    machine says so (a target is not met on a loaded run)."""
    lines = []
    for row in rows:
        if row["method"] != "das" or int(row["k"]) != frames_kept("das", int(row["frames"]), 0.5):
            continue
        if row["mode"] != "eager" or str(row["threads"]) != "1":
            continue
        where = (f"{row['device']} ({row['device_name']}), T={row['frames']}, {row['frame_size']} px, "
                 f"batch {row['batch']}")
        if row.get("note", "").startswith(("compile failed", "trace failed", "failed")):
            lines.append(f"- {where}: not measured ({row['note']}).")
            continue
        members = [r for r in rows if setting(r) == setting(row)]
        uniform = next((r for r in members if r["method"] == "uniform" and r["k"] == row["k"]), None)
        ratio = num(row["latency_ms_median"]) / num(uniform["latency_ms_median"]) if uniform else float("nan")
        parts = [_check("latency / uniform's", ratio, TARGETS["das_vs_uniform"], True, "x")]
        if int(row["batch"]) == 1 and int(row["frames"]) == 28:
            parts.append(_check("sampler", num(row["sampler_ms_median"]), TARGETS["sampler_ms_t28"], True, " ms"))
        if int(row["frame_size"]) >= LARGE_FRAME:
            parts.append(_check("sampler share", 100 * num(row["sampler_share"]), 100 * TARGETS["sampler_share"],
                                True, "%"))
            if int(row["batch"]) == 1:
                parts.append(_check("speed-up vs full", num(row["speedup_vs_full"]), TARGETS["speedup"], False, "x"))
        if num(row.get("other_runnable")) >= LOADED:
            parts.append(f"**measured on a loaded machine** ({fmt(row['other_runnable'])} other runnable threads): "
                         "not a verdict")
        lines.append(f"- {where}: " + "; ".join(parts) + ".")
    return lines


def _row_note(row: dict) -> str:
    """The row's note, with ``loaded machine (N runnable)`` first when other processes kept the CPUs busy."""
    loaded = num(row.get("other_runnable")) >= LOADED
    return "; ".join(([f"loaded machine ({fmt(row['other_runnable'])} runnable)"] if loaded else []) +
                     ([row["note"]] if row.get("note") else []))


def _load_note(rows: list[dict]) -> str:
    runnable = [num(r["other_runnable"]) for r in rows if not math.isnan(num(r.get("other_runnable")))]
    if not runnable:
        return "load not recorded"
    mean, peak = float(np.mean(runnable)), float(np.max(runnable))
    verdict = "**the machine was loaded** during the measurement" if mean >= LOADED else "the machine was not loaded"
    return (f"{verdict}: other processes' runnable threads, sampled every timing round, mean {mean:.2f}, "
            f"max {peak:.1f} (on {rows[0]['cpu_count']} CPUs)")


def _method_lines() -> list[str]:
    """The ``## Method`` section of ``efficiency.md``."""
    return ["", "## Method", "",
              "- Model: `SubsampledClassifier(get_sampler(method, k, num_frames=T), MobileNetV3Small(1, 0), 2)`, "
              "eval mode, channels-last weights (as the bundles train), `torch.inference_mode()`, input "
              "`(batch, 1, T, S, S)` uniform noise with S the frame size (`--frame_size`; 28 and 64 px are the "
              "MedMNIST3D volumes, 112 and 224 px ultrasound frames as the video bundles read them); `full` "
              "runs the backbone on all T frames, every other method on k = round(ratio * T) frames (`--ratios`, "
              "default 0.5 only). Weights are random (seed 0): latency does not depend on them, except that the picks do not "
              "change the amount of work.",
              "- Latency: median and interquartile range of the timed forward passes (column `runs`) after the "
              "warm-up passes, `time.perf_counter` around each pass (CUDA: synchronised before and after). All "
              "methods of one (T, frame size, batch) are set up at once, each in its own process (all in one with "
              "`--in-process`), and timed in interleaved "
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
              "(`FrameSampler.check_input`: on CPU tensors one `torch.aminmax` over the whole input).",
              "- FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one eager forward (GFLOPs) and on the sampler "
              "alone (MFLOPs). It counts matmul/convolution-type ops only (mm, addmm, bmm, convolution, attention, "
              "...). Counted for DAS: the Sobel/Laplacian convolution of its pooled frames, its embedding CNN, its "
              "attention's linear layers and temporal convolution, and, where the frames do not divide evenly into "
              "its feature size (28 px), the two pooling matrix products. Not counted: the pooling of evenly dividing "
              "frames, the variance and every other elementwise op, normalisation, the input check, sorting and the "
              "top-k walk, and the gather of the picked frames (memory traffic, no arithmetic), so the samplers' "
              "own work is under-counted and its FLOPs say little about its latency at batch 1, where the number of "
              "ops dominates.",
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
              "graphs) on CUDA, default mode on CPU; FLOPs are those of the eager model.",
              "- `--trace`: `torch.jit.trace` of the model and of the sampler under `torch.no_grad` (how `ckpt_export` "
              "exports them; a traced DAS runs its k-step straight-through loop, unrolled, not the eager inference "
              "path).", ""]


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
    header = ("| mode | threads | T | frame px | batch | method | k | latency ms median (IQR) | vol/s | speed-up vs full "
              "| sampler ms (IQR) | sampler share | sampler time vs ADPS | GFLOPs | sampler MFLOPs | peak mem MiB "
              "| runs | note |")
    for (device, name), group in by_device.items():
        lines += [f"## {device}: {name}", "", header, "|" + "---|" * 18]
        for r in group:
            share = num(r["sampler_share"])
            lines.append(
                f"| {r['mode']} | {r['threads']} | {r['frames']} | {r['frame_size']} | {r['batch']} | {r['method']} | {r['k']} "
                f"| {fmt(r['latency_ms_median'])} ({fmt(r['latency_ms_iqr'], 2)}) | {fmt(r['throughput_vol_s'])} "
                f"| {fmt(r['speedup_vs_full'])} | {fmt(r['sampler_ms_median'])} ({fmt(r['sampler_ms_iqr'], 2)}) "
                f"| {'' if math.isnan(share) else f'{100 * share:.1f}%'} | {fmt(r['sampler_time_vs_adps'])} "
                f"| {fmt(r['gflops'])} | {fmt(r['sampler_mflops'])} | {fmt(r['peak_mem_mib'])} | {r['repeats']} "
                f"| {_row_note(r)} |")
        lines.append("")
    lines += ["## Targets (DAS at k = T/2, issue 26)", "",
              f"Judged on eager rows at 1 thread: DAS latency <= {TARGETS['das_vs_uniform']}x uniform's at every "
              f"setting; the DAS sampler <= {TARGETS['sampler_ms_t28']} ms at batch 1, T = 28, and <= "
              f"{100 * TARGETS['sampler_share']:.0f}% of the forward at frames >= {LARGE_FRAME} px; the speed-up of DAS "
              f"over the full sequence >= {TARGETS['speedup']}x at frames >= {LARGE_FRAME} px, batch 1. Rows taken "
              f"while other processes kept >= {LOADED} threads runnable are marked as measured on a loaded machine "
              "(column note and the lines below): their verdicts are not verdicts.", ""]
    lines += targets_lines(rows) or ["- no DAS rows."]
    lines += _method_lines()
    path.write_text("\n".join(lines))

