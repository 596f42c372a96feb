"""Validation splits that make training meaningless are caught before the first epoch: an empty split (no model.pt
would ever be written) and a split lacking a class (AUC NaN every epoch: model.pt stuck at epoch 1, no early stop);
the MONAI Label train task's split keeps every class in validation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from bundle_processes import finish, run_args, start_bundle
from test_bundles import run_workflow

from monai_das.engines import check_validation_labels

pytest.importorskip("ignite")


def test_check_validation_labels(caplog):
    with pytest.raises(ValueError, match="the validation split is empty"):
        check_validation_labels(np.zeros((0, 1)), 2, "val_auc")
    with pytest.raises(ValueError, match=r"\(5 inputs, per class \[5, 0\]\) lacks class\(es\) \[1\].*'val_auc'"):
        check_validation_labels(np.zeros((5, 1)), 2, "val_auc")
    with pytest.raises(ValueError, match=r"per class \[1, 1, 0\]\) lacks class\(es\) \[2\]"):
        check_validation_labels([0, 1], 3, "val_auc")  # a multi-class AUC is NaN as soon as one class is missing
    with caplog.at_level(logging.WARNING):
        check_validation_labels([1, 1, 1], 2, "val_loss")
    assert "lacks class(es) [0]" in caplog.text and "'val_loss' still works" in caplog.text
    check_validation_labels(np.array([[0], [1], [1]]), 2, "val_auc")  # every class: nothing to say


def test_one_class_validation_split_stops_the_training(tmp_path, restore_torch_state):
    out = tmp_path / "outputs"
    tiny = {"num_train": 4, "num_val": 1, "num_frames": 8, "frame_size": 16, "batch_size": 4, "epochs": 1}
    with pytest.raises(Exception) as info:  # MONAI wraps what the config's expression raised
        run_workflow("synthetic", ["train.json"], output_dir=str(out), **tiny)
    assert "lacks class(es) [1]" in str(info.value) + str(info.value.__cause__)
    assert not (out / "model.pt").exists() and not (out / "last.pt").exists()


def test_empty_validation_split_exits_non_zero(tmp_path):
    """The vessel bundle on a MedMNIST file whose val split is empty: ``python -m monai.bundle run`` fails."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 4), ("val", 0), ("test", 2)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8).reshape(n, 1)
    np.savez(tmp_path / "vesselmnist3d.npz", **arrays)
    log = tmp_path / "run.log"
    args = run_args(["train.json"], "--dataset_dir", str(tmp_path), "--check_md5", "False", "--epochs", "1",
                    "--batch_size", "4", "--output_dir", str(tmp_path / "outputs"))
    rc, text = finish(start_bundle("vesselmnist3d", args, log), log, timeout=300)
    assert rc != 0, text[-3000:]
    assert "ValueError: the validation split is empty" in text, text[-3000:]
    assert not (tmp_path / "outputs" / "last.pt").exists()


def test_monailabel_split_keeps_every_class(tmp_path):
    pytest.importorskip("monailabel.interfaces.tasks.train")
    from apps_testing import VESSEL_BUNDLE

    from monai_das.apps.monailabel import DASClassificationTrainTask

    task = DASClassificationTrainTask(VESSEL_BUNDLE, tmp_path / "model.pt", tmp_path / "work")
    # 12 images of class 0 first, then 3 of class 1 (sorted by id): every 5th image would validate on class 0 only
    items = [{"image": f"a{i:02d}", "label": 0} for i in range(12)] + [{"image": f"b{i}", "label": 1} for i in range(3)]
    train, val = task._split(items, 3)
    assert sorted({item["label"] for item in val}) == [0, 1] == sorted({item["label"] for item in train})
    assert len(val) == 5 and not {item["image"] for item in val} & {item["image"] for item in train}
    # too few images of class 1 to leave it in both parts: a smoke run on all of them
    train, val = task._split(items[:12] + items[12:13], 3)
    assert train == val == items[:13]
