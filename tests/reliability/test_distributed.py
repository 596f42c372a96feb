"""Multi-process training with the bundles' ``multi_gpu_train.json``: ``torchrun --nproc_per_node 2`` on CPU (gloo).

Both ranks must finish (exit 0, each with its own log), rank 0 alone writes one ``model.pt``, and the validation
metrics logged for the best epoch must be those of the whole validation set: the same numbers (within 1e-4) as a
single-process evaluation of the saved checkpoint. The validation set has an odd size (9 inputs: 5 on rank 0, 4 on
rank 1, ``DistributedSampler(even_divisible=False)``), so a metric computed per rank, or over padded duplicates,
would differ.
"""

from __future__ import annotations

import glob
import re
import sys
from pathlib import Path

import pytest
from bundle_processes import TINY_SYNTHETIC, finish, free_port, run_args, start_bundle
from test_bundles import bundle_dir

from monai_das.handlers import read_training_state

pytest.importorskip("ignite")
pytest.importorskip("tensorboard")

NUM_VAL = 9
RANK0_VAL = [0, 2, 4, 6, 8]  # DistributedSampler(shuffle=False, even_divisible=False): indices r, r + 2, ...
EPOCHS = 3
# 4 iterations of 2 inputs per rank and epoch: enough for predictions that differ between inputs (an AUC other than
# 0.5), so that the metrics of the 9 inputs and those of one rank's share differ
OVERRIDES = [*TINY_SYNTHETIC[:2], "--num_val", str(NUM_VAL), *TINY_SYNTHETIC[4:6], "--batch_size", "2",
             "--epochs", str(EPOCHS)]
METRICS = ("val_auc", "val_balanced_accuracy", "val_accuracy", "val_loss")


def override_dict(args: list[str]) -> dict:
    return {k.lstrip("-"): (float(v) if "." in v else int(v)) for k, v in zip(args[::2], args[1::2])}


def evaluate_single_process(out: Path, checkpoint: str = "model.pt", dataset: str | None = None) -> dict[str, float]:
    """The train config's own validator (metrics, post-processing, loss weights), in this process, on the weights of
    ``checkpoint`` (``model.pt`` or ``last.pt``, both read by MONAI's ``CheckpointLoader`` with ``weights_only``)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle_dir("synthetic") / "configs" / "train.json"))
    parser.update({**override_dict(OVERRIDES), "output_dir": str(out), "device": "$torch.device('cpu')"})
    parser["validate#handlers"] = [{"_target_": "CheckpointLoader", "load_path": str(out / checkpoint),
                                    "load_dict": {"model": "@network"}, "map_location": "cpu"}]
    if dataset is not None:
        parser["validate#dataloader#dataset"] = dataset
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.run()
    return {name: float(evaluator.state.metrics[name]) for name in METRICS}


def scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` over the event files of ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for event_file in sorted(glob.glob(str(log_dir / "events.out.tfevents.*"))):
        acc = EventAccumulator(event_file, size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def test_torchrun_two_processes(tmp_path):
    out, torchrun_logs = tmp_path / "outputs", tmp_path / "torchrun"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "--log-dir", str(torchrun_logs), "--tee", "3"]
    args = run_args(["train.json", "multi_gpu_train.json"], *OVERRIDES, "--output_dir", str(out))
    log = tmp_path / "torchrun.log"
    rc, text = finish(start_bundle("synthetic", args, log, launcher=launcher), log, timeout=240)
    assert rc == 0, f"torchrun exited {rc}:\n{text[-6000:]}"

    # both ranks ran the whole training and exited cleanly (no abort at exit: see multi_gpu_train.json's finalize)
    for rank in (0, 1):
        files = glob.glob(str(torchrun_logs / "**" / "attempt_0" / str(rank) / "stdout.log"), recursive=True)
        assert len(files) == 1, f"no log of rank {rank}: {files}"
        rank_log = Path(files[0]).read_text()
        assert f"Engine run resuming from iteration 0, epoch 0 until {EPOCHS} epochs" in rank_log, rank_log[-3000:]
        assert "SupervisedTrainer - INFO - Engine run finished" in rank_log, rank_log[-3000:]
        assert "released the distributed model and destroyed the process group" in rank_log, rank_log[-3000:]
        assert "Traceback" not in rank_log
    assert "terminate called" not in text and "exitcode: -6" not in text, text[-4000:]

    # rank 0 alone writes: one model.pt, one last.pt, TensorBoard files of one process (named ...<host>.<pid>.<n>)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pt")) == ["last.pt", "model.pt"]
    event_files = glob.glob(str(out / "logs" / "events.out.tfevents.*"))
    assert event_files and len({f.rsplit(".", 2)[1] for f in event_files}) == 1, event_files
    assert text.count("saved the training state after epoch 1 ") == 1, "last.pt was written by more than one rank"

    # the best epoch's logged metrics == a single-process evaluation of model.pt on the same 9 inputs
    logged = scalars(out / "logs")
    assert sorted(logged["val_auc"]) == list(range(1, EPOCHS + 1)), logged["val_auc"]
    best_epoch = max(logged["val_auc"], key=lambda e: (logged["val_auc"][e], -e))
    state = read_training_state(out / "last.pt")
    best = state["best_saver"]["_saved"]
    assert best == [(pytest.approx(logged["val_auc"][best_epoch]), "model.pt")], (best, logged["val_auc"])
    single = evaluate_single_process(out)
    print(f"best epoch {best_epoch}: logged by rank 0 {({n: logged[n][best_epoch] for n in METRICS})}, "
          f"single process {single}")
    for name in METRICS:
        assert logged[name][best_epoch] == pytest.approx(single[name], abs=1e-4), (name, best_epoch, logged, single)
    best_line = re.findall(r"Key metric: val_auc best value: ([0-9.]+) at epoch: (\d+)", text)[-1]
    assert int(best_line[1]) == best_epoch and float(best_line[0]) == pytest.approx(single["val_auc"], abs=1e-4)

    # the same for the last epoch, whose weights are in last.pt (the best epoch's predictions may all be equal)
    final = evaluate_single_process(out, checkpoint="last.pt")
    print(f"last epoch: logged by rank 0 {({n: logged[n][EPOCHS] for n in METRICS})}, single process {final}")
    for name in METRICS:
        assert logged[name][EPOCHS] == pytest.approx(final[name], abs=1e-4), (name, logged, final)

    # and the test can tell: rank 0's 5 inputs alone give another loss
    rank0_only = evaluate_single_process(out, "last.pt", dataset=f"$torch.utils.data.Subset(@val_dataset, {RANK0_VAL})")
    print(f"last epoch, rank 0's inputs alone: {rank0_only}")
    assert abs(rank0_only["val_loss"] - final["val_loss"]) > 1e-4, (rank0_only, final)
