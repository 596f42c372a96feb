"""Benchmark figures drawn from small result files: which PNGs are written, and that they hold a picture."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from benchmarks import plots
from benchmarks.efficiency import FIELDS as EFFICIENCY_FIELDS
from benchmarks.efficiency import ConfigBench

image = pytest.importorskip("matplotlib.image")


def _write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _picture(path):
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert np.std(pixels[..., :3]) > 0.05  # not a blank canvas
    return pixels


def test_every_figure_from_its_csv(tmp_path, capsys):
    _write(tmp_path / "accuracy.csv", [
        {"dataset": d, "method": m, "recipe": "end_to_end" if m == "full" else "staged", "seed": s,
         "sampling_ratio": 1.0 if m == "full" else q, "test_auc": 0.6 + 0.05 * s + q / 4}
        for d in ("adrenal", "vessel") for m in ("full", "uniform", "das") for q in (0.125, 0.5) for s in range(2)])
    _write(tmp_path / "adaptivity.csv", [
        {"method": m, "ratio": q, "seed": s, "accuracy": 0.5 + q / 3}
        for m in ("das", "dps", "uniform") for q in (0.125, 0.25, 0.5) for s in range(2)]
        + [{"method": "full", "ratio": 1.0, "seed": 0, "accuracy": 0.8}])
    efficiency = []
    for method, k in (("full", 8), ("das", 2), ("das", 4), ("uniform", 2), ("uniform", 4)):
        row = dict.fromkeys(EFFICIENCY_FIELDS, "")
        row.update(device="cpu", device_name="Test CPU", mode="eager", frames=8, batch=1, method=method, k=k,
                   latency_ms_median=k * 1.5)
        efficiency.append(row)
    _write(tmp_path / "efficiency.csv", efficiency)

    assert plots.main(["--results_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("accuracy_auc.png", "accuracy_vs_gflops.png", "adaptivity_ratio.png", "latency_vs_k.png"):
        assert f"wrote {tmp_path / name}" in out
        _picture(tmp_path / name)
    with open(tmp_path / "accuracy_vs_gflops.csv", newline="") as f:
        points = {(r["dataset"], r["method"], float(r["sampling_ratio"])): r for r in csv.DictReader(f)}
    assert len(points) == 2 * 5  # full once, uniform and das at two budgets, per dataset
    das, uniform = points[("vessel", "das", 0.5)], points[("vessel", "uniform", 0.5)]
    assert (das["frames"], das["frame_size"], das["k"]) == ("28", "28", "14")  # MedMNIST3D: T from the bundle
    assert float(das["test_auc_mean"]) == pytest.approx(0.6 + 0.025 + 0.125)  # seeds 0 and 1
    assert float(das["sampler_mflops"]) > 0 and float(uniform["sampler_mflops"]) == 0
    assert float(points[("vessel", "full", 1.0)]["gflops"]) > float(das["gflops"]) > float(uniform["gflops"])


def test_flops_per_volume_are_the_efficiency_benchmarks():
    row = ConfigBench("das", 8, 1, frame_size=12).finish()
    assert plots.volume_flops("das", 8, 12, 0.5) == pytest.approx((row["gflops"], row["sampler_mflops"]))
    assert plots.volume_flops("das_prior", 8, 12, 0.5) == plots.volume_flops("das", 8, 12, 0.5)  # same network


def test_missing_or_single_k_results_are_skipped(tmp_path, capsys):
    row = dict.fromkeys(EFFICIENCY_FIELDS, "")
    row.update(device="cpu", device_name="Test CPU", mode="eager", frames=8, batch=1, method="das", k=4,
               latency_ms_median=3.0)
    _write(tmp_path / "efficiency.csv", [row, dict(row, method="full", k=8, latency_ms_median=6.0)])
    plots.main(["--results_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"skipped accuracy_auc.png: no rows in {tmp_path / 'accuracy.csv'}" in out
    assert f"skipped accuracy_vs_gflops.png: no rows in {tmp_path / 'accuracy.csv'}" in out
    assert f"skipped latency_vs_k.png: nothing to draw in {tmp_path / 'efficiency.csv'}" in out
    assert not list(tmp_path.glob("*.png"))
