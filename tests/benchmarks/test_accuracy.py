"""The accuracy benchmark end to end on the synthetic bundle: rows, table, resume, partial marking."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from monai_das.benchmarks import accuracy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_test_data import write_covid_blues  # noqa: E402

TINY = ["--set", "num_train=32", "--set", "num_val=16", "--set", "num_test=32", "--epochs", "1"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_parallel_runs_write_rows_and_resume(tmp_path):
    results, work = tmp_path / "results", tmp_path / "work"
    common = ["--datasets", "synthetic", "--methods", "uniform", "das", "--jobs", "2",
              "--results_dir", str(results), "--work_dir", str(work), *TINY]
    argv = [*common, "--seeds", "1"]
    assert accuracy.main(argv) == 0
    rows = _rows(results / "accuracy.csv")
    assert sorted(r["method"] for r in rows) == ["das", "uniform"]
    for row in rows:
        assert 0.0 <= float(row["test_auc"]) <= 1.0
        assert row["epochs"] == "1" and row["sampling_ratio"] == "0.25" and row["seed"] == "0"
        assert (work / f"synthetic-{row['method']}-seed0" / "eval" / "metrics.csv").is_file()
    table = (results / "accuracy.md").read_text()
    assert "PARTIAL" not in table and "| synthetic | das | 0.25 | 1 |" in table and "--jobs 2" in table

    # finished rows are skipped; a larger plan is marked partial
    assert accuracy.main(argv) == 0
    assert len(_rows(results / "accuracy.csv")) == 2
    accuracy.main([*common, "--seeds", "2", "--summary_only"])
    assert "PARTIAL: 2 of 4 runs finished." in (results / "accuracy.md").read_text()
    assert len(_rows(results / "accuracy.csv")) == 2

    # every command that ran something is listed in the table; a summary is not
    first = (results / "accuracy_commands.txt").read_text().splitlines()
    assert len(first) == 1 and "--seeds 1" in first[0]
    more = [*common[:4], "uniform", *common[5:], "--seeds", "2", "--set", "batch_size=8"]
    assert accuracy.main(more) == 0
    commands = (results / "accuracy_commands.txt").read_text().splitlines()
    assert commands[0] == first[0] and "--set batch_size=8" in commands[1] and len(commands) == 2
    table = (results / "accuracy.md").read_text()
    assert all(f"- `{c}`" in table for c in commands)


def test_resnet3d_backbone_writes_its_own_table(tmp_path):
    """``--backbone resnet18_3d`` trains through the bundles' backbone_resnet3d.json, into its own CSV and table."""
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "synthetic", "--methods", "das", "--seeds", "1", "--backbone", "resnet18_3d",
            "--results_dir", str(results), "--work_dir", str(work), *TINY]
    assert accuracy.main(argv) == 0
    assert not (results / "accuracy.csv").exists()
    (row,) = _rows(results / "accuracy_resnet18_3d.csv")
    assert row["method"] == "das" and 0.0 <= float(row["test_auc"]) <= 1.0
    log = (work / "resnet18_3d" / "synthetic-das-seed0" / "benchmark.log").read_text()
    assert "backbone_resnet3d.json" in log
    assert "--backbone resnet18_3d" in (results / "accuracy_resnet18_3d.md").read_text()


def test_covid_blues_gets_a_patient_split_per_seed(tmp_path):
    """COVID-BLUES runs pass ``--split_seed SEED``: each seed is tested on other patients."""
    write_covid_blues(str(tmp_path / "data" / "ultrasound" / "covid_blues"))
    results, work = tmp_path / "results", tmp_path / "work"
    argv = ["--datasets", "covid_blues", "--methods", "uniform", "--seeds", "2", "--epochs", "1",
            "--data_root", str(tmp_path / "data"), "--results_dir", str(results), "--work_dir", str(work),
            "--set", "num_frames=8", "--set", "frame_size=16", "--set", "batch_size=4"]
    assert accuracy.main(argv) == 0
    assert sorted(r["seed"] for r in _rows(results / "accuracy.csv")) == ["0", "1"]
    for seed in (0, 1):
        log = (work / f"covid_blues-uniform-seed{seed}" / "benchmark.log").read_text()
        assert f"--split_seed {seed}" in log
    assert len(list((work / "video_cache").glob("*.dascache.npy"))) == 12  # decoded once, shared by both runs


def test_bad_override_is_refused(capsys):
    with pytest.raises(SystemExit):
        accuracy.main(["--set", "epochs"])
    assert "--set expects KEY=VALUE, got 'epochs'" in capsys.readouterr().err
