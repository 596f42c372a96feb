"""COVID-BLUES targets (covid, b_lines, a_lines, severity) read strictly from generated files, and patient-grouped
cross-validation folds."""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from monai_das.data import (
    COVID_BLUES_TARGETS,
    CovidBluesDataset,
    covid_blues_class_names,
    group_k_fold,
    read_covid_blues_labels,
    read_manifest,
)

pytest.importorskip("av")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_test_data import covid_blues_video_labels, write_covid_blues  # noqa: E402

REAL_COVID = "/work/shared/data/ultrasound/covid_blues"
PATIENTS, VIDEOS = 10, 4  # 5 patients per COVID label, 4 videos each


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("covid_blues")
    write_covid_blues(str(folder), patients_per_label=PATIENTS // 2, videos_per_patient=VIDEOS)
    return folder


def expected_labels(target: str) -> list[int]:
    return [covid_blues_video_labels(p, j)[target] for p in range(PATIENTS) for j in range(VIDEOS)]


def rewrite_severity(src: Path, dst: Path, row: int, column: str, value: str) -> Path:
    """A copy of the dataset at ``dst`` (videos linked) whose severity.csv has ``value`` in data row ``row``."""
    dst.mkdir()
    (dst / "lus_videos").symlink_to(src / "lus_videos")
    (dst / "manifest.csv").write_bytes((src / "manifest.csv").read_bytes())
    with open(src / "severity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if value is None:
        del rows[row - 1]
    else:
        rows[row - 1][column] = value
    with open(dst / "severity.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


@pytest.mark.parametrize("target", COVID_BLUES_TARGETS)
def test_labels_and_class_names_follow_the_target(root, target):
    ds = CovidBluesDataset(root, split=None, target=target)
    assert ds.labels.tolist() == expected_labels(target)
    assert ds.class_names == covid_blues_class_names(target) and ds.num_classes == len(ds.class_names)
    assert ds.num_classes == (4 if target == "severity" else 2)
    assert covid_blues_class_names("b_lines") == ["absent", "present"]
    assert covid_blues_class_names("severity") == ["score_0", "score_1", "score_2", "score_3"]


def test_dirty_values_are_trimmed(root):
    """The generated severity.csv holds "yes " / "no " (trailing space) and scores written as "2.0"."""
    raw = (root / "severity.csv").read_text()
    assert ",yes ," in raw and ",no ," in raw and ",2.0," in raw
    labels = read_covid_blues_labels(root / "severity.csv", "b_lines")
    assert labels["patient00_V0"] == 0 and labels["patient00_V1"] == 1  # written "no " (trailing space) and "yes"
    assert read_covid_blues_labels(root / "severity.csv", "severity")["patient01_V1"] == 2
    assert "not_in_manifest" in labels  # extra rows are read, and ignored by the dataset
    assert len(CovidBluesDataset(root, split=None, target="b_lines")) == PATIENTS * VIDEOS


@pytest.mark.parametrize(
    "column, value, target, message",
    [
        ("B-lines", "maybe", "b_lines", "column 'B-lines' must be 'yes' or 'no', got 'maybe'"),
        ("B-lines", "  ", "b_lines", "column 'B-lines' must be 'yes' or 'no', got ''"),
        ("A-lines", "1", "a_lines", "column 'A-lines' must be 'yes' or 'no', got '1'"),
        ("Severity Score", "2.5", "severity", "must be a score 0, 1, 2 or 3, got '2.5'"),
        ("Severity Score", "4.0", "severity", "must be a score 0, 1, 2 or 3, got '4.0'"),
        ("Severity Score", "", "severity", "must be a score 0, 1, 2 or 3, got ''"),
        ("Severity Score", "nan", "severity", "must be a score 0, 1, 2 or 3, got 'nan'"),
    ],
)
def test_bad_value_names_file_row_and_value(root, tmp_path, column, value, target, message):
    bad = rewrite_severity(root, tmp_path / "bad", 7, column, value)
    with pytest.raises(ValueError) as err:
        CovidBluesDataset(bad, split=None, target=target)
    text = str(err.value)
    assert message in text and f"row 7 (line 8) of {bad / 'severity.csv'}" in text and "'patient01_V2'" in text
    # the other targets do not read that column
    other = "a_lines" if target != "a_lines" else "b_lines"
    assert len(CovidBluesDataset(bad, split=None, target=other)) == PATIENTS * VIDEOS


def test_video_missing_from_severity_csv_is_reported(root, tmp_path):
    bad = rewrite_severity(root, tmp_path / "missing", 3, "", None)  # drops patient00_V2
    with pytest.raises(ValueError) as err:
        CovidBluesDataset(bad, split=None, target="severity")
    text = str(err.value)
    assert "1 video(s)" in text and "row 3: 'patient00_V2'" in text and "no 'severity' label" in text
    assert str(bad / "severity.csv") in text
    assert len(CovidBluesDataset(bad, split=None, target="covid")) == PATIENTS * VIDEOS  # covid needs no severity.csv


def test_duplicate_and_missing_file_and_unknown_target(root, tmp_path):
    dup = rewrite_severity(root, tmp_path / "dup", 5, "video_file", "patient00_V0")
    twice = r"row 5 \(line 6\) of .*: video 'patient00_V0' is listed twice \(also in row 1\)"
    with pytest.raises(ValueError, match=twice):
        CovidBluesDataset(dup, split=None, target="b_lines")
    nofile = tmp_path / "nofile"
    nofile.mkdir()
    (nofile / "manifest.csv").write_bytes((root / "manifest.csv").read_bytes())
    with pytest.raises(FileNotFoundError, match="severity.csv not found"):
        CovidBluesDataset(nofile, split=None, target="b_lines", check_files=False)
    with pytest.raises(ValueError, match="'b-lines' is not a valid value"):
        CovidBluesDataset(root, target="b-lines")


@pytest.mark.parametrize("target", COVID_BLUES_TARGETS)
def test_five_folds_test_every_patient_once(root, target):
    tested: Counter = Counter()
    for fold in range(5):
        parts = [CovidBluesDataset(root, split=s, target=target, fold=fold) for s in ("train", "val", "test")]
        assert sum(len(p) for p in parts) == PATIENTS * VIDEOS
        patients = [{r["patient_id"] for r in p.rows} for p in parts]
        assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
        for part in parts[1:]:  # stratified: every class in the validation and test folds
            assert set(part.labels.tolist()) == set(range(part.num_classes)), (target, fold, part.split)
        tested.update(r["path"] for r in parts[2].rows)
        nxt = CovidBluesDataset(root, split="test", target=target, fold=(fold + 1) % 5)
        assert [r["path"] for r in nxt.rows] == [r["path"] for r in parts[1].rows]  # val = the next test fold
    assert len(tested) == PATIENTS * VIDEOS and set(tested.values()) == {1}


def test_folds_are_deterministic_and_seeded(root):
    def tests(seed):
        return [[r["_row"] for r in CovidBluesDataset(root, "test", target="b_lines", fold=f, seed=seed).rows]
                for f in range(5)]

    assert tests(0) == tests(0)
    assert tests(0) != tests(1)
    with pytest.raises(ValueError, match=r"fold must be an integer in \[0, 4\] for num_folds=5, got 5"):
        CovidBluesDataset(root, "test", fold=5)
    with pytest.raises(ValueError, match="num_folds must be an integer >= 3"):
        CovidBluesDataset(root, "test", fold=0, num_folds=2)


def test_group_k_fold_balances_sizes_and_refuses_too_many_folds(root):
    rows = read_manifest(root / "manifest.csv")
    folds = group_k_fold(rows, 4, seed=3, group_key="patient_id")
    assert sorted(len(f) for f in folds) == [8, 8, 12, 12]  # 10 patients of 4 videos in 4 folds
    with pytest.raises(ValueError, match=r"num_folds must be an integer in \[2, 10\].*got 11"):
        group_k_fold(rows, 11, group_key="patient_id")
    singles = group_k_fold(rows, 5, group_key=None)  # every row its own group
    assert [len(f) for f in singles] == [8] * 5


@pytest.mark.skipif(not os.path.isfile(os.path.join(REAL_COVID, "severity.csv")), reason="COVID-BLUES not staged")
def test_real_covid_blues_targets_and_folds():
    counts = {t: np.bincount(CovidBluesDataset(REAL_COVID, None, target=t, check_files=False).labels).tolist()
              for t in COVID_BLUES_TARGETS}
    assert counts["b_lines"] == [127, 235] and counts["a_lines"] == [111, 251]
    assert counts["severity"] == [120, 111, 83, 48]
    for fold in range(5):
        test = CovidBluesDataset(REAL_COVID, "test", target="severity", fold=fold, check_files=False)
        assert np.bincount(test.labels, minlength=4).min() >= 5  # every score in every test fold
        assert 9 <= len({r["patient_id"] for r in test.rows}) <= 16
