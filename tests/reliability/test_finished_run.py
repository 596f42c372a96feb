"""A finished training keeps its best model: a second ``train`` into the same output folder stops before it writes
anything (not even a TensorBoard file) unless ``--overwrite True`` (``--resume True`` continues it; evaluation still reads it); two runs at once
into one folder are stopped by a lock; temporary files of a killed write are removed."""

from __future__ import annotations

import hashlib
import re

import pytest
from bundle_processes import TINY_SYNTHETIC, poll_until, run_args, start_bundle, stop
from test_bundles import read_metrics, run_workflow

pytest.importorskip("ignite")

TRAIN, EVALUATE = ["train.json", "train_end_to_end.json"], ["train.json", "evaluate.json"]
TINY = {"num_train": 8, "num_val": 8, "num_test": 8, "num_frames": 8, "frame_size": 16, "batch_size": 4,
        "epochs": 2, "device": "$torch.device('cpu')"}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(expected: type, pattern: str, out, **overrides) -> None:
    """A train run into ``out`` fails with ``expected`` matching ``pattern`` (MONAI wraps what a config expression
    raised in a RuntimeError; the cause chain holds it)."""
    with pytest.raises(Exception) as info:
        run_workflow("synthetic", TRAIN, output_dir=str(out), **{**TINY, **overrides})
    chain, e = [], info.value
    while e is not None:
        chain.append(e)
        e = e.__cause__
    assert any(isinstance(c, expected) and re.search(pattern, str(c)) for c in chain), chain


def test_rerun_on_a_finished_folder_keeps_the_best_model(tmp_path, restore_torch_state):
    out = tmp_path / "outputs"
    run_workflow("synthetic", TRAIN, output_dir=str(out), **TINY)
    model, last = out / "model.pt", out / "last.pt"
    before = digest(model), digest(last)

    logs = sorted((out / "logs").iterdir())
    refused(FileExistsError, r"holds a finished run \(last.pt, model.pt\).*--overwrite True", out)
    assert (digest(model), digest(last)) == before
    assert sorted((out / "logs").iterdir()) == logs, "the refused run wrote TensorBoard files"

    # --resume True continues the finished run: nothing to do, nothing written
    run_workflow("synthetic", TRAIN, output_dir=str(out), resume=True, **TINY)
    assert (digest(model), digest(last)) == before

    # evaluation reads the finished folder as before
    run_workflow("synthetic", EVALUATE, output_dir=str(out), **TINY)
    assert 0.0 <= read_metrics(out / "eval" / "metrics.csv")["test_auc"] <= 1.0
    assert (digest(model), digest(last)) == before

    # a best model without a training state (copied in, or from an older version) is protected too
    last.unlink()
    refused(FileExistsError, r"holds a finished run \(model.pt\)", out)
    assert digest(model) == before[0]

    # --overwrite True replaces it, and removes what killed atomic saves left behind (ignite's temporary names)
    stale = [out / "tmpab12_x9k", out / "tmp0qz8w3e1"]
    kept = out / "tmp_notes.txt"  # a user's file that only looks alike
    kept.write_text("mine")
    for f in stale:
        f.write_bytes(b"partial")
    run_workflow("synthetic", TRAIN, output_dir=str(out), overwrite=True, seed=1, **TINY)
    assert digest(model) != before[0] and last.is_file()
    assert not any(f.exists() for f in stale) and kept.read_text() == "mine"


def test_a_second_run_into_the_same_folder_is_stopped(tmp_path, restore_torch_state):
    out = tmp_path / "outputs"
    log = tmp_path / "first.log"
    first = start_bundle("synthetic", run_args(TRAIN, *TINY_SYNTHETIC, "--epochs", "1000", "--output_dir",
                                               str(out)), log)
    try:
        lock = out / "last.pt.lock"
        poll_until(lambda: lock.is_file() and lock.read_text().strip(), first, log, 300, "it took the lock")
        assert lock.read_text().strip() == str(first.pid)
        refused(RuntimeError, rf"another run \(pid {first.pid}\) is training into {re.escape(str(out))}", out)
        assert first.poll() is None, "the refused run stopped the first one"
    finally:
        stop(first)
    # the lock went with the killed process
    run_workflow("synthetic", TRAIN, output_dir=str(out), overwrite=True, **TINY)
    assert (out / "model.pt").is_file()
