"""An interrupted training loses nothing: kill a real ``python -m monai.bundle run`` after its second epoch, resume
it with ``--resume True``, and check that the two runs together trained exactly the configured epochs, once each."""

from __future__ import annotations

import glob
import os
import re
import time

import pytest
import torch
from bundle_processes import TINY_SYNTHETIC, finish, poll_until, run_args, start_bundle, stop
from test_bundles import bundle_dir, check_checkpoint

from monai_das.handlers import read_training_state

pytest.importorskip("ignite")
pytest.importorskip("tensorboard")

EPOCHS = 4
ITERATIONS = 4  # 16 training inputs, batch size 4


def scalar_steps(event_files, tag: str) -> dict[int, float]:
    """``{step: value}`` of one scalar over some TensorBoard event files (a run writes one per handler)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[int, float] = {}
    for event_file in event_files:
        acc = EventAccumulator(event_file, size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            for event in acc.Scalars(tag):
                assert event.step not in steps, f"{tag} step {event.step} written twice by one run"
                steps[event.step] = event.value
    return steps


def test_killed_training_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "outputs"
    args = run_args(["train.json", "train_end_to_end.json"], *TINY_SYNTHETIC, "--epochs", str(EPOCHS), "--output_dir", str(out))
    last = out / "last.pt"

    # 1. train until last.pt says two epochs are done, then SIGTERM (and SIGKILL if needed)
    first_log = tmp_path / "first.log"
    proc = start_bundle("synthetic", args, first_log)
    seen = {"mtime": None}

    def epochs_done() -> int:
        try:
            mtime = os.stat(last).st_mtime_ns
        except FileNotFoundError:
            return 0
        if mtime == seen["mtime"]:
            return 0
        seen["mtime"] = mtime
        # the file is replaced atomically: whenever it is there it loads (a partial file would raise here)
        epoch = read_training_state(last)["status"]["epoch"]
        return epoch if epoch >= 2 else 0

    poll_until(epochs_done, proc, first_log, timeout=240, what="last.pt with 2 finished epochs")
    killed_rc = stop(proc)
    killed_at = read_training_state(last)["status"]["epoch"]
    print(f"first run stopped (exit {killed_rc}) with last.pt at epoch {killed_at}")
    assert 2 <= killed_at < EPOCHS, f"the first run was not stopped before the end (last.pt: epoch {killed_at})"
    events_before = set(glob.glob(str(out / "logs" / "events.out.tfevents.*")))

    # 2. the same command with --resume True finishes the remaining epochs
    resume_log = tmp_path / "resume.log"
    resumed_at = time.time()
    rc, text = finish(start_bundle("synthetic", [*args, "--resume", "True"], resume_log), resume_log, timeout=300)
    assert rc == 0, text[-4000:]
    assert f"resumed from {last}: {killed_at} epoch(s) done, continuing with epoch {killed_at + 1}." in text, text

    state = read_training_state(last)
    assert state["status"]["epoch"] == EPOCHS and not state["status"]["early_stopped"]
    assert state["trainer"]["iteration"] == EPOCHS * ITERATIONS and state["trainer"]["max_epochs"] == EPOCHS

    # no epoch was trained twice: the resumed run logs, and writes TensorBoard steps for, only the later epochs
    logged_epochs = {int(e) for e in re.findall(r"Epoch: (\d+)/4, Iter: \d+/4 -- train_loss", text)}
    assert logged_epochs == set(range(killed_at + 1, EPOCHS + 1)), sorted(logged_epochs)
    new_events = sorted(set(glob.glob(str(out / "logs" / "events.out.tfevents.*"))) - events_before)
    steps = sorted(scalar_steps(new_events, "train_loss"))
    assert steps == list(range(killed_at * ITERATIONS + 1, EPOCHS * ITERATIONS + 1)), steps
    resumed_val_auc = scalar_steps(new_events, "val_auc")
    assert sorted(resumed_val_auc) == list(range(killed_at + 1, EPOCHS + 1)), resumed_val_auc

    # the best-model record survived the interruption: best over all 4 epochs, model.pt rewritten only if the
    # resumed run found a better epoch
    val_auc = {s: v for s, v in scalar_steps(events_before, "val_auc").items() if s <= killed_at}
    val_auc.update(resumed_val_auc)
    assert sorted(val_auc) == list(range(1, EPOCHS + 1)), val_auc
    best_epoch = max(val_auc, key=lambda e: (val_auc[e], -e))  # the first epoch with the highest AUC
    assert state["best_saver"]["_saved"] == [(pytest.approx(val_auc[best_epoch], rel=1e-6), "model.pt")]
    assert state["early_stop"]["best_score"] == pytest.approx(val_auc[best_epoch], rel=1e-6)
    rewritten = (out / "model.pt").stat().st_mtime > resumed_at
    assert rewritten == (best_epoch > killed_at), (best_epoch, killed_at, rewritten)

    # model.pt and the weights in last.pt load (weights_only) into a network built from the config
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir("synthetic") / "configs" / "train.json"))  # network_def: the same either way
    parser.update(dict(zip([a.lstrip("-") for a in TINY_SYNTHETIC[::2]], [int(v) for v in TINY_SYNTHETIC[1::2]])))
    network = parser.get_parsed_content("network_def")
    check_checkpoint(out / "model.pt", network)
    network.load_state_dict(state["model"], strict=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
