"""The bundle's one training command, ``python -m monai.bundle run --config_file configs/train.json``, runs the whole
staged recipe on the synthetic bundle: killed with SIGKILL in a stage and run again with ``--resume True`` it ends with
the uninterrupted run's model; the threshold it stores was chosen on validation, and evaluate decides with it."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bundles"))
from bundle_processes import finish, run_args, start_bundle  # noqa: E402
from test_bundles import bundle_dir, read_metrics, run_workflow  # noqa: E402

from monai_das.handlers import read_training_state  # noqa: E402
from monai_das.utils import choose_threshold, decide  # noqa: E402

pytest.importorskip("ignite")

TINY = {"num_train": 24, "num_val": 16, "num_test": 15, "num_frames": 16, "frame_size": 16, "batch_size": 8,
        "epochs": 2, "staged_epochs": 6, "staged_batch_size": 8}
ARGS = [item for key, value in TINY.items() if key != "num_test" for item in (f"--{key}", str(value))]


def run_to_end(out: Path, log: Path, *extra: str) -> str:
    rc, text = finish(start_bundle("synthetic", run_args(["train.json"], *ARGS, "--output_dir", str(out), *extra), log),
                      log, timeout=600)
    assert rc == 0, text[-4000:]
    return text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("staged") / "outputs"
    run_to_end(out, out.parent / "train.log")
    (out.parent / "reference.pt").write_bytes((out / "model.pt").read_bytes())  # a later test edits model.pt
    return out


def test_one_command_trains_every_stage_and_keeps_what_selection_chose(trained):
    for stage in ("teacher", "prior", "sampler"):
        status = read_training_state(trained / stage / "last.pt")["status"]
        assert status["epoch"] == status["max_epochs"] or status["early_stopped"], (stage, status)
        assert (trained / stage / "model.pt").is_file() and any((trained / stage / "logs").iterdir())
    selection = json.loads((trained / "selection.json").read_text())
    assert selection["rule"] == "bootstrap" and selection["kept"] in ("prior", "sampler")
    final = torch.load(trained / "model.pt", weights_only=True)
    kept = torch.load(trained / selection["kept"] / "model.pt", weights_only=True)
    assert final["network_config"] == kept["network_config"]
    assert all(torch.equal(final["model"][k], v) for k, v in kept["model"].items())
    assert not (trained / "finetune").exists()  # finetune_epochs 0


def test_the_stored_threshold_is_chosen_on_validation_and_evaluate_decides_with_it(trained, restore_torch_state):
    final = torch.load(trained / "model.pt", weights_only=True)
    threshold = final["network_config"]["decision_threshold"]
    # the kept network's validation probabilities give that threshold again
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir("synthetic") / "configs" / "train.json"))
    parser.update({k: v for k, v in TINY.items()})
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(final["model"])
    network.eval()
    val = parser.get_parsed_content("val_dataset")
    with torch.no_grad():
        prob = torch.cat([torch.softmax(network(item["image"][None], item["image_frame_mask"][None]), dim=-1)
                          for item in val])
    labels = torch.tensor([int(item["label"]) for item in val])
    assert threshold == pytest.approx(choose_threshold(prob[:, 1], labels), abs=1e-6)

    # evaluate reports accuracy at the stored threshold: store one below every test probability (every case called
    # "ring"; a tiny run's probabilities are all but equal, below 0.5), and check the metrics against those decisions
    rows = [(float(r["prob_ring"]), int(r["label"])) for r in _evaluate(trained, TINY)]
    moved = min(p for p, _ in rows) - 1e-3
    final["network_config"]["decision_threshold"] = moved
    torch.save(final, trained / "model.pt")
    rows = [(float(r["prob_ring"]), int(r["label"])) for r in _evaluate(trained, TINY)]
    probs = torch.tensor([[1 - p, p] for p, _ in rows])
    truth = torch.tensor([y for _, y in rows])
    at_stored = (decide(probs, {"decision_threshold": moved}) == truth).float().mean().item()
    at_argmax = (probs.argmax(dim=1) == truth).float().mean().item()
    metrics = read_metrics(trained / "eval" / "metrics.csv")
    assert metrics["test_accuracy"] == pytest.approx(at_stored, abs=1e-6)
    assert at_stored == pytest.approx(sum(y for _, y in rows) / 15)  # every case called positive
    assert at_stored != at_argmax, f"the test could not tell them apart: {rows}"
    assert "test_threshold" not in metrics  # nothing is chosen on test


def _evaluate(out: Path, overrides: dict) -> list[dict]:
    run_workflow("synthetic", ["train.json", "evaluate.json"], output_dir=str(out), **overrides)
    with open(out / "eval" / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_killed_in_the_sampler_stage_resume_true_ends_with_the_same_model(trained, tmp_path):
    out, log = tmp_path / "outputs", tmp_path / "first.log"
    proc = start_bundle("synthetic", run_args(["train.json"], *ARGS, "--output_dir", str(out)), log)
    last = out / "sampler" / "last.pt"
    deadline = time.monotonic() + 600
    while True:
        try:
            if read_training_state(last)["status"]["epoch"] >= 1:
                break
        except (FileNotFoundError, ValueError):
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_training_state(last)["status"]["epoch"]
    assert killed_at < TINY["staged_epochs"] and not (out / "model.pt").exists()

    text = run_to_end(out, tmp_path / "resume.log", "--resume", "True")
    assert "stage 'teacher' finished earlier" in text and "stage 'prior' finished earlier" in text
    assert f"resumed from {last}: {killed_at} epoch(s) done" in text
    resumed, reference = (torch.load(p, weights_only=True) for p in (out / "model.pt", trained.parent / "reference.pt"))
    assert resumed["network_config"] == reference["network_config"]
    assert all(torch.equal(resumed["model"][k], v) for k, v in reference["model"].items())
