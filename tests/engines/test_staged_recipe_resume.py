"""``kill -9`` during each stage of the staged recipe, then the same command with resume True: the run finishes with
the model the uninterrupted run saved (real processes, real SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from monai_das.handlers import read_training_state

pytest.importorskip("ignite")

SCRIPT = Path(__file__).with_name("staged_run.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore",
       "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[2]), str(SCRIPT.parent), os.environ.get("PYTHONPATH", "")])}


def start(out: Path, resume: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, str(SCRIPT), str(out), resume], env=ENV, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path) -> str:
    rc = proc.wait(timeout=600)
    text = log.read_text()
    assert rc == 0, text[-4000:]
    return text


def epochs_done(last: Path) -> int:
    try:
        return int(read_training_state(last)["status"]["epoch"])
    except (FileNotFoundError, ValueError):  # not written yet (every write is atomic: never a partial file)
        return 0


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    finish(start(out, "False", out / "run.log"), out / "run.log")
    return out


@pytest.mark.parametrize("stage", ["teacher", "prior", "sampler", "finetune"])
def test_a_run_killed_in_a_stage_resumes_to_the_same_model(uninterrupted, tmp_path, stage):
    out, first_log = tmp_path / "run", tmp_path / "first.log"
    proc = start(out, "False", first_log)
    last = out / stage / "last.pt"
    deadline = time.monotonic() + 300
    while epochs_done(last) < 1:
        assert proc.poll() is None, f"the run ended before {stage} saved an epoch:\n{first_log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, first_log.read_text()[-3000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    killed_at = epochs_done(last)
    max_epochs = read_training_state(last)["status"]["max_epochs"]
    assert 1 <= killed_at < max_epochs, f"killed after {stage} finished ({killed_at} of {max_epochs})"
    assert not (out / "model.pt").exists()

    resume_log = tmp_path / "resume.log"
    text = finish(start(out, "True", resume_log), resume_log)
    assert f"resumed from {last}: {killed_at} epoch(s) done, continuing with epoch {killed_at + 1}." in text
    earlier = ["teacher", "prior", "sampler", "finetune"][: ["teacher", "prior", "sampler", "finetune"].index(stage)]
    for name in earlier:
        assert f"stage '{name}' finished earlier" in text
    assert read_training_state(last)["status"]["epoch"] == max_epochs

    # the same best model as the uninterrupted run: every epoch's draws depend on the seed and the epoch only
    resumed, reference = weights(out / "model.pt"), weights(uninterrupted / "model.pt")
    assert resumed["network_config"] == reference["network_config"]
    assert resumed["model"].keys() == reference["model"].keys()
    for key, value in reference["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for name in ("teacher", "prior", "sampler", "finetune"):
        assert read_training_state(out / name / "last.pt")["best"] == read_training_state(
            uninterrupted / name / "last.pt")["best"], name
