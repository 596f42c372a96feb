"""Figures of the benchmark results, drawn from their CSV files.

    python -m benchmarks.plots [--results_dir benchmarks/results]

Writes, next to the CSV files it finds (a missing file skips its figure):

- ``accuracy_auc.png`` from ``accuracy.csv``: test AUC against the fraction of frames kept (k/T), one panel per
  dataset, one line per method, mean with the standard deviation over seeds as error bars;
- ``adaptivity_ratio.png`` from ``adaptivity.csv``: test accuracy against the fraction of frames kept (k/T) for DAS,
  DPS and uniform on the synthetic task, the full sequence at k/T = 1;
- ``latency_vs_k.png`` from ``efficiency.csv``: eager forward latency against k for every (device, T, frame size,
  batch) that was measured at more than one k, the full sequence at k = T;
- ``accuracy_vs_gflops.png`` and ``accuracy_vs_gflops.csv`` from ``accuracy.csv``: test AUC against the GFLOPs of one
  forward per volume or video (batch 1, the sampler's own FLOPs included), one panel per dataset, one line per method
  through its budgets. The FLOPs are counted as ``efficiency.csv``'s ``gflops`` column is (:py:func:`volume_flops`).

Matplotlib draws through its Agg canvas (no display needed).
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from monai.utils import optional_import

from benchmarks.accuracy import DATASETS, METHODS, REPO, read_rows

Figure, _ = optional_import("matplotlib.figure", name="Figure")
FigureCanvasAgg, _ = optional_import("matplotlib.backends.backend_agg", name="FigureCanvasAgg")
NullFormatter, _ = optional_import("matplotlib.ticker", name="NullFormatter")

__all__ = ["plot_accuracy", "plot_accuracy_vs_gflops", "plot_adaptivity", "plot_latency", "volume_flops", "main"]

RATIO_METHODS = ("das", "dps", "uniform")
COLOURS = {"full": "#4d4d4d", "random": "#9e9e9e", "uniform": "#1f77b4", "dps": "#2ca02c", "adps": "#9467bd",
           "das": "#e4572e", "das_prior": "#8c564b", "das_from_prior": "#6a4c93",
           "das_segments": "#f2a541"}


def _save(fig, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std())


def plot_accuracy(rows: list[dict], path: Path) -> Path:
    """Test AUC against k/T, one panel per dataset, one line per (method, recipe); the full sequence at k/T = 1 and
    as a dashed level. Mean over seeds with the standard deviation as error bars."""
    datasets = sorted({r["dataset"] for r in rows})
    fig = Figure(figsize=(4.2 * len(datasets), 3.6))
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        subset = [r for r in rows if r["dataset"] == dataset]
        recipes = sorted({r.get("recipe", "") for r in subset if r["method"] != "full"})
        lines = sorted({(r["method"], r.get("recipe", "")) for r in subset},
                       key=lambda mr: (METHODS.index(mr[0]), mr[1]))
        for method, recipe in lines:
            by_ratio: dict[float, list[float]] = defaultdict(list)
            for r in subset:
                if r["method"] == method and r.get("recipe", "") == recipe:
                    by_ratio[float(r.get("sampling_ratio") or 1.0)].append(float(r["test_auc"]))
            ratios = sorted(by_ratio)
            stats = [_mean_std(by_ratio[q]) for q in ratios]
            label = method if method == "full" or len(recipes) < 2 else f"{method} ({recipe})"
            ax.errorbar(ratios, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", markersize=3,
                        capsize=2, color=COLOURS.get(method), label=label,
                        linestyle="-" if recipe != "end_to_end" or method == "full" else ":")
            if method == "full":
                ax.axhline(stats[0][0], color=COLOURS["full"], linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted({float(r.get("sampling_ratio") or 1.0) for r in subset})
        ax.set_xticks(ticks, [f"{q:g}" for q in ticks])
        ax.set_xlabel("k/T, fraction of the slices the backbone sees")
        ax.set_ylabel("test AUC (mean +- std over seeds)")
        ax.set_title(dataset, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_adaptivity(rows: list[dict], path: Path) -> Path:
    """Accuracy against k/T (log2 axis) for DAS, DPS and uniform; the full sequence as a point at k/T = 1."""
    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    full = [float(r["accuracy"]) for r in rows if r["method"] == "full"]
    drawn: set[float] = set()
    for method in RATIO_METHODS:
        by_ratio: dict[float, list[float]] = defaultdict(list)
        for r in rows:
            if r["method"] == method:
                by_ratio[float(r["ratio"])].append(float(r["accuracy"]))
        if full:
            by_ratio[1.0] = full
        ratios = sorted(by_ratio)
        if not ratios:
            continue
        drawn.update(ratios)
        stats = np.array([_mean_std(by_ratio[q]) for q in ratios])
        ax.errorbar(ratios, stats[:, 0], yerr=stats[:, 1], marker="o", capsize=3, label=method,
                    color=COLOURS[method])
    ax.set_xscale("log", base=2)
    ticks = sorted(drawn)
    ax.set_xticks(ticks, [f"1/{round(1 / q)}" if q < 1 else "1" for q in ticks])
    ax.set_xlabel("fraction of frames kept, k/T (1 = full sequence)")
    ax.set_ylabel("test accuracy (mean +- std)")
    ax.set_ylim(0.4, 1.0)
    ax.axhline(0.5, color="black", linestyle=":", linewidth=1)
    ax.set_title("Synthetic task: evidence in 2 of 32 frames", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_latency(rows: list[dict], path: Path) -> Path | None:
    """Latency against k, one panel per (device, T, batch) measured eagerly at more than one k; None if none was."""
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["mode"] == "eager" and r["latency_ms_median"]:
            size = int(r.get("frame_size") or r["frames"])
            panels[(r["device"], r["device_name"], int(r["frames"]), size, int(r["batch"]))].append(r)
    panels = {key: group for key, group in panels.items()
              if len({int(r["k"]) for r in group if r["method"] != "full"}) > 1}
    if not panels:
        return None
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(4.4 * columns, 3.4 * rows))
    for n, ((device, name, frames, size, batch), group) in enumerate(sorted(panels.items())):
        ax = fig.add_subplot(rows, columns, n + 1)
        full = [r for r in group if r["method"] == "full"]
        for method in [m for m in METHODS if m != "full"]:
            points = sorted((int(r["k"]), float(r["latency_ms_median"])) for r in group if r["method"] == method)
            points += [(frames, float(full[0]["latency_ms_median"]))] if full and points else []
            if points:
                ks, ms = zip(*points)
                ax.plot(ks, ms, marker="o", label=method, color=COLOURS[method])
        ax.set_xlabel(f"k of T = {frames} frames (k = T: full sequence)")
        ax.set_ylabel("forward latency, ms (median)")
        ax.set_title(f"{device} ({name}), T = {frames}, {size} px, batch {batch}", fontsize=9)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    return _save(fig, path)


#: accuracy methods that are another method's network at inference (a training recipe of it)
SAME_NETWORK = {"das_prior": "das", "das_from_prior": "das"}


@functools.lru_cache(maxsize=None)
def volume_flops(method: str, frames: int, frame_size: int, ratio: float) -> tuple[float, float]:
    """``(GFLOPs of one forward, MFLOPs of its sampler)`` for one volume ``(1, 1, T, S, S)``, counted as the efficiency
    benchmark counts them: ``FlopCounterMode`` on its model (MobileNetV3-Small, k = round(ratio T); matmul- and
    convolution-type ops only)."""
    import torch

    from benchmarks.efficiency.measure import build_model, count_flops

    model = build_model(SAME_NETWORK.get(method, method), frames, ratio)
    x = torch.rand(1, 1, frames, frame_size, frame_size)
    with torch.inference_mode():
        return count_flops(lambda: model(x)) / 1e9, count_flops(lambda: model.sampler(x)) / 1e6


def _frames_per_volume(dataset: str, image_size: int, bundles_dir: Path) -> int:
    """T of ``dataset``: its bundle's ``num_frames`` (following ``@`` references), else the image size (MedMNIST3D
    volumes are image_size^3)."""
    config_path = bundles_dir / DATASETS[dataset][0] / "configs" / "train.json" if dataset in DATASETS else None
    config = json.loads(config_path.read_text()) if config_path and config_path.exists() else {}
    value = config.get("num_frames")
    while isinstance(value, str) and value.startswith("@"):
        value = config.get(value[1:])
    return value if isinstance(value, int) else image_size


def accuracy_gflops_rows(rows: list[dict], bundles_dir: Path) -> list[dict]:
    """One row per (dataset, method, k/T): T, frame size, k, GFLOPs per volume, sampler MFLOPs, test AUC mean and
    standard deviation over its seeds."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["method"], float(r.get("sampling_ratio") or 1.0), int(r.get("image_size") or 28))
               ].append(float(r["test_auc"]))
    out = []
    for (dataset, method, ratio, size), aucs in sorted(groups.items()):
        frames = _frames_per_volume(dataset, size, bundles_dir)
        gflops, sampler_mflops = volume_flops(method, frames, size, ratio)
        mean, std = _mean_std(aucs)
        out.append({"dataset": dataset, "method": method, "sampling_ratio": ratio, "frames": frames,
                    "frame_size": size, "k": frames if method == "full" else max(1, round(ratio * frames)),
                    "gflops": round(gflops, 5), "sampler_mflops": round(sampler_mflops, 4),
                    "test_auc_mean": round(mean, 4), "test_auc_std": round(std, 4), "seeds": len(aucs)})
    return out


def plot_accuracy_vs_gflops(rows: list[dict], path: Path, bundles_dir: Path = REPO / "bundles") -> Path:
    """Test AUC against GFLOPs per volume, one panel per dataset, one line per method through its budgets (the full
    sequence a single point and a dashed level); writes the numbers drawn to ``path`` with ``.csv``."""
    points = accuracy_gflops_rows(rows, bundles_dir)
    with open(path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(points[0]))
        writer.writeheader()
        writer.writerows(points)
    datasets = sorted({p["dataset"] for p in points})
    fig = Figure(figsize=(4.2 * len(datasets), 3.6))
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(1, len(datasets), i + 1)
        subset = [p for p in points if p["dataset"] == dataset]
        for method in [m for m in METHODS if any(p["method"] == m for p in subset)]:
            line = sorted((p for p in subset if p["method"] == method), key=lambda p: p["gflops"])
            ax.errorbar([p["gflops"] for p in line], [p["test_auc_mean"] for p in line],
                        yerr=[p["test_auc_std"] for p in line], marker="o", markersize=3, capsize=2,
                        color=COLOURS.get(method), label=method)
            if method == "full":
                ax.axhline(line[0]["test_auc_mean"], color=COLOURS["full"], linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ticks = sorted({p["gflops"] for p in subset if p["method"] in ("full", "uniform")}) or [subset[0]["gflops"]]
        ax.set_xticks(ticks, [f"{g:.3g}" for g in ticks])  # the fixed samplers' budgets: the backbone's own cost
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("GFLOPs per volume, batch 1 (sampler included)")
        ax.set_ylabel("test AUC (mean +- std over seeds)")
        ax.set_title(f"{dataset}: T = {subset[0]['frames']}, {subset[0]['frame_size']} px frames", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the benchmark figures from their CSV results.")
    parser.add_argument("--results_dir", default=str(REPO / "benchmarks" / "results"))
    parser.add_argument("--bundles_dir", default=str(REPO / "bundles"),
                        help="the bundles, read for each dataset's frames per volume (num_frames)")
    args = parser.parse_args(argv)
    results = Path(args.results_dir)
    jobs = (("accuracy.csv", plot_accuracy, "accuracy_auc.png"),
            ("accuracy.csv", functools.partial(plot_accuracy_vs_gflops, bundles_dir=Path(args.bundles_dir)),
             "accuracy_vs_gflops.png"),
            ("adaptivity.csv", plot_adaptivity, "adaptivity_ratio.png"),
            ("efficiency.csv", plot_latency, "latency_vs_k.png"))
    for csv_name, plot, png_name in jobs:
        rows = read_rows(results / csv_name)
        if not rows:
            print(f"skipped {png_name}: no rows in {results / csv_name}")
            continue
        written = plot(rows, results / png_name)
        print(f"wrote {written}" if written else f"skipped {png_name}: nothing to draw in {results / csv_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
