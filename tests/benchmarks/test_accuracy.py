"""The accuracy benchmark end to end on the synthetic bundle: rows, predictions, paired table, resume, partial."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from benchmarks import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_test_data import write_covid_blues  # noqa: E402

TINY = ["--set", "num_train=32", "--set", "num_val=16", "--set", "num_test=32", "--epochs", "1"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_staged_sweep_writes_rows_predictions_and_paired_comparisons_and_resumes(tmp_path):
    """One teacher per (dataset, seed) serves every method; rows, per-case predictions and paired stats are written."""
    results, work = tmp_path / "results", tmp_path / "work"
    common = ["--datasets", "synthetic", "--ratios", "0.25", "--seeds", "1", "--results_dir", str(results),
              "--work_dir", str(work), *TINY, "--set", "staged_epochs=1", "--bootstrap", "50"]
    argv = ["--methods", "uniform", "das", *common]
    assert accuracy.main(argv) == 0
    rows = {r["method"]: r for r in _rows(results / "accuracy.csv")}
    assert sorted(rows) == ["das", "full", "uniform"]
    assert (rows["full"]["recipe"], rows["full"]["sampling_ratio"]) == ("end_to_end", "1.0")
    assert "staged_epochs" not in rows["full"]["overrides"]  # the teacher does not depend on the staged step
    for method in ("das", "uniform"):
        row = rows[method]
        key = (row["recipe"], row["sampling_ratio"], row["epochs"], row["seed"])
        assert key == ("staged_selected", "0.25", "1", "0")
        assert "staged_epochs=1" in row["overrides"] and row["image_size"] == "32"
        assert 0.0 <= float(row["test_auc"]) <= 1.0
        overrides = row["overrides"].replace(" ", "-").replace("=", "")
        name = f"synthetic-{method}-seed0-staged_selected-r0.25-e1-{overrides}"
        log = (work / name / "benchmark.log").read_text()
        train_command = next(line for line in log.splitlines() if "--teacher_ckpt" in line)
        # the bundle's one training command, given the shared teacher
        assert "configs/train.json" in train_command and "train_end_to_end" not in train_command
        assert "model.pt" in train_command.split("--teacher_ckpt ")[1].split()[0]
        assert (work / name / "prior" / "model.pt").is_file() and (work / name / "selection.json").is_file()
    for row in rows.values():
        predictions = _rows(results / row["predictions"])
        assert len(predictions) == 32 and {"id", "label", "prob_disc", "prob_ring", "picked_frames"} <= set(predictions[0])
        picks = [len(p["picked_frames"].split()) for p in predictions]
        assert set(picks) == ({32} if row["method"] == "full" else {8})
    paired = {p["comparison"]: p for p in _rows(results / "paired.csv")}
    assert sorted(paired) == ["das - full", "das - uniform"]
    for p in paired.values():
        assert p["seeds"] == "1" and p["cases"] == "32"
        assert float(p["ci_low"]) <= float(p["mean_auc_difference"]) <= float(p["ci_high"])
    expected = float(rows["das"]["test_auc"]) - float(rows["uniform"]["test_auc"])
    assert abs(float(paired["das - uniform"]["mean_auc_difference"]) - expected) < 2e-4
    table = (results / "accuracy.md").read_text()
    assert "PARTIAL" not in table and "| synthetic | staged_selected | 0.25 | das | 1 |" in table
    assert "| synthetic | staged_selected | 0.25 | das - uniform | 1 | 32 |" in table

    # finished rows are skipped; another staged option is a new row that reuses the teacher
    assert accuracy.main(argv) == 0
    assert len(_rows(results / "accuracy.csv")) == 3
    more = ["--methods", "das", *common[:-4], "--set", "staged_epochs=2", "--bootstrap", "50"]
    assert accuracy.main(more) == 0
    rows = _rows(results / "accuracy.csv")
    assert len(rows) == 4 and sum(r["method"] == "full" for r in rows) == 1
    accuracy.main([*argv[:-2], "--seeds", "2", "--summary_only"])
    assert "PARTIAL: 4 of 7 runs of the plan finished." in (results / "accuracy.md").read_text()
    commands = (results / "accuracy_commands.txt").read_text().splitlines()
    assert len(commands) == 2 and "staged_epochs=2" in commands[1]


def test_resnet3d_backbone_writes_its_own_table(tmp_path):
    """``--backbone resnet18_3d`` trains through the bundles' backbone_resnet3d.json, into its own CSV and table."""
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "synthetic", "--methods", "das", "--seeds", "1", "--backbone", "resnet18_3d",
            "--recipe", "end_to_end", "--ratios", "0.25",
            "--results_dir", str(results), "--work_dir", str(work), *TINY]
    assert accuracy.main(argv) == 0
    assert not (results / "accuracy.csv").exists()
    (row,) = _rows(results / "accuracy_resnet18_3d.csv")
    assert row["method"] == "das" and 0.0 <= float(row["test_auc"]) <= 1.0
    (run_dir,) = (work / "resnet18_3d").glob("synthetic-das-seed0-end_to_end-r0.25-*")
    log = (run_dir / "benchmark.log").read_text()
    assert "backbone_resnet3d.json" in log
    assert "--backbone resnet18_3d" in (results / "accuracy_resnet18_3d.md").read_text()


def test_covid_blues_gets_a_patient_split_per_seed(tmp_path):
    """COVID-BLUES runs pass ``--split_seed SEED``: each seed is tested on other patients."""
    write_covid_blues(str(tmp_path / "data" / "ultrasound" / "covid_blues"))
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "covid_blues", "--methods", "uniform", "--seeds", "2", "--epochs", "1",
            "--recipe", "end_to_end", "--ratios", "0.5",
            "--data_root", str(tmp_path / "data"), "--results_dir", str(results), "--work_dir", str(work),
            "--set", "num_frames=8", "--set", "frame_size=16", "--set", "batch_size=4"]
    assert accuracy.main(argv) == 0
    assert sorted(r["seed"] for r in _rows(results / "accuracy.csv")) == ["0", "1"]
    for seed in (0, 1):
        (run_dir,) = work.glob(f"covid_blues-uniform-seed{seed}-end_to_end-*")
        log = (run_dir / "benchmark.log").read_text()
        assert f"--split_seed {seed}" in log and "--fold None" in log
    assert len(list((work / "video_cache").glob("*.dascache.npy"))) == 12  # decoded once, shared by both runs


def test_bad_override_is_refused(capsys):
    with pytest.raises(SystemExit):
        accuracy.main(["--set", "epochs"])
    assert "--set expects KEY=VALUE, got 'epochs'" in capsys.readouterr().err


def test_covid_blues_targets_run_one_fold_per_seed(tmp_path, capsys):
    """``covid_blues_<target>``: the bundle's target, and the seed column is the cross-validation fold."""
    write_covid_blues(str(tmp_path / "data" / "ultrasound" / "covid_blues"), videos_per_patient=4)
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "covid_blues_b_lines", "--methods", "uniform", "--seeds", "2", "--epochs", "1",
            "--recipe", "end_to_end", "--ratios", "0.5", "--data_root", str(tmp_path / "data"),
            "--results_dir", str(results), "--work_dir", str(work), "--set", "num_frames=8", "--set", "frame_size=16",
            "--set", "batch_size=4"]
    assert accuracy.main(argv) == 0
    rows = _rows(results / "accuracy.csv")
    assert sorted((r["dataset"], r["seed"]) for r in rows) == [("covid_blues_b_lines", "0"), ("covid_blues_b_lines", "1")]
    for fold in (0, 1):
        (run_dir,) = work.glob(f"covid_blues_b_lines-uniform-seed{fold}-end_to_end-*")
        log = (run_dir / "benchmark.log").read_text()
        assert "--target b_lines" in log and f"--fold {fold}" in log and "--split_seed" not in log
    assert "5-fold cross-validation" in (results / "accuracy.md").read_text()
    with pytest.raises(SystemExit):
        accuracy.main([*argv[:4], "--seeds", "6"])
    assert "--seeds must be <= 5" in capsys.readouterr().err
