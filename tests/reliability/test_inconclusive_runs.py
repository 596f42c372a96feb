"""The four cases of issue 27 item 7 that were not conclusive, each through the public command
(``python -m monai.bundle run`` in the bundle's folder, as a user or a job scheduler starts it): two trainings into one
folder started at the same moment, SIGKILL while a checkpoint is being written, a validation split of one class, and a
damaged MedMNIST npz with ``--check_md5 False``."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_processes import TINY_SYNTHETIC, finish, run_args, start_bundle

from monai_das.handlers import read_training_state

pytest.importorskip("ignite")

LOCKED = "another run (pid"
#: the end-to-end recipe: one training into the output folder itself (the staged train.json trains in stage folders)
END_TO_END = ["train.json", "train_end_to_end.json"]
#: the temporary file of ignite's atomic DiskSaver (tempfile.NamedTemporaryFile in the output folder)
TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")
FINISHED = "holds a finished run"


def test_two_trainings_started_at_the_same_moment(tmp_path):
    """Exactly one of two runs started together into one folder trains; the other stops with a clear message and
    leaves the first one's files whole."""
    out = tmp_path / "outputs"
    args = run_args(END_TO_END, *TINY_SYNTHETIC, "--epochs", "6", "--output_dir", str(out))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_bundle("synthetic", args, log) for log in logs]
    results = [finish(p, log, timeout=600) for p, log in zip(procs, logs)]
    codes = sorted(rc for rc, _ in results)
    assert codes[0] == 0 and codes[1] != 0, [(rc, text[-2000:]) for rc, text in results]
    loser = next(text for rc, text in results if rc != 0)
    assert LOCKED in loser or FINISHED in loser, loser[-3000:]
    print("second run:", "stopped by the lock" if LOCKED in loser else "found the first run finished")
    assert read_training_state(out / "last.pt")["status"]["epoch"] == 6
    assert torch.load(out / "model.pt", weights_only=True)
    assert [p for p in out.iterdir() if TEMPORARY.fullmatch(p.name)] == []


def _kill_during_a_write(proc, out: Path, timeout: float = 300) -> str | None:
    """SIGKILL ``proc`` the moment a temporary checkpoint file (ignite's atomic save: ``tmpXXXXXXXX``) is seen in
    ``out``, once a first ``last.pt`` exists; the name of that file (``None``: none seen before ``timeout``, the run
    is killed anyway)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline and proc.poll() is None:
        if not (out / "last.pt").exists():
            time.sleep(0.01)
            continue
        try:
            seen = next((e.name for e in os.scandir(out) if TEMPORARY.fullmatch(e.name)), None)
        except FileNotFoundError:
            seen = None
        if seen:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return seen


def test_sigkill_during_a_checkpoint_write(tmp_path):
    """Killed with SIGKILL while it writes a checkpoint: last.pt and model.pt are whole (the old or the new file),
    and ``--resume True`` finishes the run and removes the killed write's temporary file."""
    out = tmp_path / "outputs"
    args = run_args(END_TO_END, *TINY_SYNTHETIC, "--epochs", "200", "--output_dir", str(out))
    log = tmp_path / "first.log"
    seen = _kill_during_a_write(start_bundle("synthetic", args, log), out)
    print(f"killed while {seen!r} was being written" if seen else "no write caught; killed between writes")
    assert seen is not None, "no checkpoint write was caught in 300 s:\n" + log.read_text()[-3000:]
    state = read_training_state(out / "last.pt")  # whole: it loads
    done = state["status"]["epoch"]
    if (out / "model.pt").exists():
        torch.load(out / "model.pt", weights_only=True)
    resume_log = tmp_path / "resume.log"
    more = run_args(END_TO_END, *TINY_SYNTHETIC, "--epochs", str(done + 2), "--output_dir", str(out),
                    "--resume", "True")
    rc, text = finish(start_bundle("synthetic", more, resume_log), resume_log, timeout=600)
    assert rc == 0, text[-4000:]
    assert read_training_state(out / "last.pt")["status"]["epoch"] == done + 2
    assert [p for p in out.iterdir() if TEMPORARY.fullmatch(p.name)] == [], "the killed write's temporary file was left"


def _vessel_npz(folder: Path, val_labels: list[int]) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, labels in (("train", [0, 1, 0, 1]), ("val", val_labels), ("test", [0, 1])):
        n = len(labels)
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.uint8).reshape(n, 1)
    path = folder / "vesselmnist3d.npz"
    np.savez_compressed(path, **arrays)
    return path


def _vessel_run(tmp_path: Path) -> tuple[int, str]:
    log = tmp_path / "run.log"
    args = run_args(["train.json"], "--dataset_dir", str(tmp_path), "--check_md5", "False", "--epochs", "1",
                    "--batch_size", "4", "--output_dir", str(tmp_path / "outputs"))
    return finish(start_bundle("vesselmnist3d", args, log), log, timeout=600)


def test_one_class_validation_split(tmp_path):
    _vessel_npz(tmp_path, [0, 0, 0])
    rc, text = _vessel_run(tmp_path)
    assert rc != 0, text[-3000:]
    assert "lacks class(es) [1]" in text, text[-3000:]
    assert not (tmp_path / "outputs" / "model.pt").exists() and not (tmp_path / "outputs" / "last.pt").exists()


def test_damaged_npz_without_the_md5_check(tmp_path):
    path = _vessel_npz(tmp_path, [0, 1, 0])
    data = bytearray(path.read_bytes())
    data[300:400] = bytes(100)  # inside the first compressed member
    path.write_bytes(bytes(data))
    rc, text = _vessel_run(tmp_path)
    assert rc != 0, text[-3000:]
    assert str(path) in text and "damaged" in text, text[-3000:]
    assert not (tmp_path / "outputs" / "model.pt").exists()
