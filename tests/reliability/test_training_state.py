"""``TrainingStateCheckpoint``, ``BestModelCheckpoint`` and ``ReplacingDiskSaver`` (ignite's checkpointing) on a tiny
ignite trainer, in this process."""

from __future__ import annotations

import os

import pytest
import torch

from monai_das.handlers import BestModelCheckpoint, ReplacingDiskSaver, TrainingStateCheckpoint, read_training_state

ignite_engine = pytest.importorskip("ignite.engine")
from ignite.handlers import EarlyStopping  # noqa: E402

DATA = [torch.ones(2, 3)] * 3  # 3 iterations per epoch


def make_trainer(path, resume, max_epochs, scores=None, patience=5, **kwargs):
    """A trainer with a model, an optimizer, a scheduler and early stopping on ``scores[epoch - 1]``; it records the
    epochs it trains in ``trainer.trained``."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)

    def step(engine, batch):
        optimizer.zero_grad()
        loss = model(batch).pow(2).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer = ignite_engine.Engine(step)
    trainer.trained = []
    trainer.add_event_handler(ignite_engine.Events.EPOCH_STARTED, lambda e: e.trained.append(e.state.epoch))
    trainer.add_event_handler(ignite_engine.Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    scores = scores or [float(i) for i in range(100)]
    stopper = EarlyStopping(patience=patience, score_function=lambda e: scores[e.state.epoch - 1], trainer=trainer)
    trainer.add_event_handler(ignite_engine.Events.EPOCH_COMPLETED, stopper)
    handler = TrainingStateCheckpoint(path, {"model": model, "optimizer": optimizer, "lr_scheduler": scheduler,
                                             "early_stop": stopper}, resume=resume, **kwargs)
    handler.attach(trainer)
    trainer.max_epochs_wanted = max_epochs
    return trainer, model, optimizer, scheduler, stopper


def run(trainer):
    trainer.run(DATA, max_epochs=trainer.max_epochs_wanted)
    return trainer


def test_resume_continues_with_the_next_epoch(tmp_path):
    path = tmp_path / "last.pt"
    first, model, optimizer, _, _ = make_trainer(path, False, 2)
    run(first)
    assert first.trained == [1, 2]
    state = read_training_state(path)
    assert state["status"]["epoch"] == 2 and state["trainer"]["iteration"] == 6 and not state["status"]["early_stopped"]

    second, model2, optimizer2, scheduler2, stopper2 = make_trainer(path, True, 4)
    run(second)
    assert second.trained == [3, 4] and second.state.iteration == 12
    assert scheduler2.last_epoch == 4 and optimizer2.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)
    assert stopper2.best_score == 3.0 and stopper2.counter == 0
    assert read_training_state(path)["status"]["epoch"] == 4

    # the same run uninterrupted trains the same epochs on the same data: identical weights
    whole, model3, *_ = make_trainer(tmp_path / "whole.pt", False, 4)
    run(whole)
    for a, b in zip(model2.parameters(), model3.parameters()):
        torch.testing.assert_close(a, b)


def test_early_stopping_state_survives_and_a_stopped_run_stays_stopped(tmp_path):
    path = tmp_path / "last.pt"
    scores = [1.0, 0.5, 0.4, 0.3, 0.2, 0.1]
    first, *_ = make_trainer(path, False, 2, scores=scores, patience=2)
    run(first)
    assert read_training_state(path)["early_stop"]["counter"] == 1  # epoch 2 did not improve
    second, *_ = make_trainer(path, True, 6, scores=scores, patience=2)
    run(second)
    assert second.trained == [3]  # the restored counter (1) reaches the patience (2) after one more epoch
    assert read_training_state(path)["status"]["early_stopped"] is True
    third, *_ = make_trainer(path, True, 6, scores=scores, patience=2)
    run(third)
    assert third.trained == []


def test_resume_options(tmp_path, caplog):
    path = tmp_path / "last.pt"
    with pytest.raises(FileNotFoundError, match=f"no training state to resume from: {path} does not exist"):
        run(make_trainer(path, True, 2)[0])
    assert run(make_trainer(path, "auto", 2)[0]).trained == [1, 2]  # nothing to resume: starts afresh
    assert run(make_trainer(path, "auto", 3)[0]).trained == [3]
    with pytest.raises(ValueError, match=r"holds 3 finished epochs, more than this trainer's max_epochs \(2\)"):
        run(make_trainer(path, True, 2)[0])
    with pytest.raises(FileExistsError, match=r"holds a finished run \(last.pt\); a fresh run would replace them"):
        run(make_trainer(path, False, 1)[0])
    with caplog.at_level("WARNING"):
        assert run(make_trainer(path, False, 1, overwrite=True)[0]).trained == [1]
    assert "last.pt in " in caplog.text and "will be overwritten" in caplog.text
    with pytest.raises(ValueError, match="resume must be False, True or 'auto', got 'yes'"):
        TrainingStateCheckpoint(path, {}, resume="yes")


def test_a_model_checkpoint_is_not_a_training_state(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 1).state_dict(), path)
    with pytest.raises(ValueError, match=r"model.pt is not a training state .* \(found \['bias', 'weight'\]\)"):
        read_training_state(path)


def test_a_fixed_name_checkpoint_is_replaced_never_removed(tmp_path):
    path = tmp_path / "model.pt"
    saver = ReplacingDiskSaver(tmp_path)
    saver({"a": torch.arange(3)}, "model.pt")
    saver.remove("model.pt")  # ignite's Checkpoint calls this just before it saves the same name again
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle this"):
        saver({"a": torch.zeros(10**6), "b": Unpicklable()}, "model.pt")
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.arange(3))  # the old file, intact
    assert os.listdir(tmp_path) == ["model.pt"]  # and no temporary file left behind
    assert os.stat(path).st_mode & 0o044 == 0o044  # readable by group and others, not mkstemp's 0600


def test_best_model_keeps_the_first_best_epoch_and_its_record_resumes(tmp_path):
    scores = [0.6, 0.8, 0.7, 0.8, 0.9]
    model = torch.nn.Linear(3, 1)
    saved_weights = {}

    def make(resume, max_epochs):
        trainer = ignite_engine.Engine(lambda e, b: None)
        best = BestModelCheckpoint(str(tmp_path), {"model": model}, "val_auc")

        def validate(engine):
            torch.nn.init.constant_(model.bias, float(engine.state.epoch))  # weights that name their epoch
            engine.state.metrics["val_auc"] = scores[engine.state.epoch - 1]
            best(engine)
            saved_weights[engine.state.epoch] = torch.load(tmp_path / "model.pt", weights_only=True)["bias"].item()

        trainer.add_event_handler(ignite_engine.Events.EPOCH_COMPLETED, validate)
        TrainingStateCheckpoint(tmp_path / "last.pt", {"best": best}, resume=resume).attach(trainer)
        trainer.run(DATA, max_epochs=max_epochs)
        return best

    make(False, 3)
    assert saved_weights == {1: 1.0, 2: 2.0, 3: 2.0}  # epoch 3 (0.7) did not replace epoch 2 (0.8)
    best = make(True, 5)
    # resumed with the record 0.8: epoch 4 ties (the first best is kept), epoch 5 is better
    assert saved_weights[4] == 2.0 and saved_weights[5] == 5.0
    assert [priority for priority, _ in best.state_dict()["_saved"]] == [0.9]
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "last.pt.lock", "model.pt"]
