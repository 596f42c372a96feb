"""The ignite engines of the staged recipe's stages, and the MONAI and ignite handlers that every stage gets.

Two kinds of stage: on images (the full-sequence teacher, the optional fine-tuning) MONAI's ``SupervisedTrainer`` and
``SupervisedEvaluator``; on cached frame features (the head on the prior's picks, the sampler with the head) the same
classes with an ``iteration_update`` that runs the sampler and the head on the cache. Every stage then gets
(:func:`attach_stage_handlers`): validation every epoch, the best model by validation AUC with the operating threshold
of its epoch (:class:`BestModelCheckpoint`, :class:`OperatingThreshold`), early stopping (ignite's
``EarlyStopping``), console and TensorBoard logs with the sampler's decisions, and the whole training state after
every epoch (:class:`TrainingStateCheckpoint`), all in the stage's own folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import decollate_batch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import LrScheduleHandler, ROCAUC, StatsHandler, TensorBoardStatsHandler, ValidationHandler
from monai.transforms import Activationsd
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_das.engines.staged_sampler_training import ranking_loss, subset_logits
from monai_das.engines.training_recipe import metric_score, probabilities_and_labels
from monai_das.handlers import (
    BestModelCheckpoint,
    OperatingThreshold,
    SamplerTensorBoardHandler,
    TrainingStateCheckpoint,
)

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
EarlyStopping, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "EarlyStopping")
PrepareBatchExtraInput, _ = optional_import("monai.engines", name="PrepareBatchExtraInput")

__all__ = ["attach_stage_handlers", "epoch_seed", "feature_engines", "image_engines", "probabilities_and_onehot"]

#: the validation metric every stage keeps its best model by
KEY_METRIC = "val_auc"


def probabilities_and_onehot(output: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probabilities (B, C), one-hot labels (B, C))`` of a decollated evaluator output (MONAI's ``ROCAUC``)."""
    prob, labels = probabilities_and_labels(output)
    return prob, F.one_hot(labels, prob.shape[1])


def _loss(output: Any) -> float:
    output = output[0] if isinstance(output, list) else output
    return float(output["loss"])


def _metrics(network_config: Any, num_classes: int) -> dict:
    metrics = {KEY_METRIC: ROCAUC(output_transform=probabilities_and_onehot)}
    if network_config is not None and num_classes == 2:
        metrics["val_threshold"] = OperatingThreshold(network_config, output_transform=probabilities_and_labels)
    return metrics


def image_engines(network: nn.Module, train_loader: Any, val_loader: Any, optimizer: torch.optim.Optimizer,
                  loss_function: Callable, epochs: int, device: Any, network_config: Any, num_classes: int,
                  frame_mask_key: str | None = None) -> tuple[Any, Any]:
    """``(trainer, evaluator)`` on images: MONAI's supervised engines, the frame mask given to the network."""
    prepare = {} if frame_mask_key is None else {
        "prepare_batch": PrepareBatchExtraInput({"frame_mask": frame_mask_key})}
    metrics = _metrics(network_config, num_classes)
    key, extra = {KEY_METRIC: metrics.pop(KEY_METRIC)}, metrics
    evaluator = SupervisedEvaluator(device=device, val_data_loader=val_loader, network=network,
                                    postprocessing=Activationsd(keys="pred", softmax=True), key_val_metric=key,
                                    additional_metrics=extra, **prepare)
    trainer = SupervisedTrainer(device=device, max_epochs=epochs, train_data_loader=train_loader, network=network,
                                optimizer=optimizer, loss_function=loss_function, **prepare)
    return trainer, evaluator


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's random draws: an epoch trained after a resume draws what the uninterrupted run drew."""
    return seed * 100_003 + epoch


def _batches(n: int, batch_size: int) -> list[int]:
    return list(range((n + batch_size - 1) // batch_size))


def feature_engines(network: nn.Module, train_cache: dict, val_cache: dict, scores: torch.Tensor,
                    optimizer: torch.optim.Optimizer, loss_function: Callable, epochs: int, batch_size: int,
                    device: Any, network_config: Any, num_classes: int, sampler_learns: bool,
                    rank_weight: float = 0.0, rank_temperature: float = 0.5, seed: int = 0) -> tuple[Any, Any]:
    """``(trainer, evaluator)`` on cached frame features (``cache_frame_features``): the sampler picks from the
    images, the head classifies the mean of the picked frames' features (:func:`subset_logits`).

    Every epoch's input order comes from ``seed`` and the epoch number alone (:func:`epoch_seed`).
    """
    n, order = len(train_cache["labels"]), {}

    def shuffle(engine: Any) -> None:
        generator = torch.Generator().manual_seed(epoch_seed(seed, engine.state.epoch))
        order["idx"] = torch.randperm(n, generator=generator).to(train_cache["labels"].device)

    def train_step(engine: Any, batch: int) -> dict:
        idx = order["idx"][batch * batch_size : (batch + 1) * batch_size]
        network.sampler.train()
        network.head.train()
        mask = train_cache["frame_mask"][idx]
        with torch.set_grad_enabled(sampler_learns):
            out = network.sampler(train_cache["images"][idx], mask)
        logits = subset_logits(network.head, out.weights, train_cache["features"][idx], mask.gather(1, out.indices))
        loss = loss_function(logits, train_cache["labels"][idx])
        if sampler_learns and rank_weight > 0 and out.logits is not None:
            loss = loss + rank_weight * ranking_loss(out.logits, scores[idx], rank_temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def val_step(engine: Any, batch: int) -> list[dict]:
        part = slice(batch * batch_size, (batch + 1) * batch_size)
        network.eval()
        mask = val_cache["frame_mask"][part]
        out = network.sampler(val_cache["images"][part], mask)
        network.last_sampler_output = out  # what SubsampledClassifier keeps: the sampler's decisions get logged
        logits = subset_logits(network.head, out.weights, val_cache["features"][part], mask.gather(1, out.indices))
        return decollate_batch({"pred": F.softmax(logits, dim=-1), "label": val_cache["labels"][part]})

    metrics = _metrics(network_config, num_classes)
    val_batches = _batches(len(val_cache["labels"]), batch_size)
    evaluator = SupervisedEvaluator(device=device, val_data_loader=val_batches, epoch_length=len(val_batches),
                                    network=network, iteration_update=val_step,
                                    key_val_metric={KEY_METRIC: metrics.pop(KEY_METRIC)}, additional_metrics=metrics)
    train_batches = _batches(n, batch_size)
    trainer = SupervisedTrainer(device=device, max_epochs=epochs, train_data_loader=train_batches,
                                epoch_length=len(train_batches), network=network, optimizer=optimizer,
                                loss_function=loss_function, iteration_update=train_step, decollate=False)
    trainer.add_event_handler(Events.EPOCH_STARTED, shuffle)
    return trainer, evaluator


def attach_stage_handlers(trainer: Any, evaluator: Any, stage_dir: str | os.PathLike, network: nn.Module,
                          optimizer: torch.optim.Optimizer, network_config: Any = None, patience: int = 10,
                          resume: bool | str = False, overwrite: bool = False, lr_scheduler: Any = None,
                          before_validation: Callable | None = None, seed: int = 0) -> None:
    """The handlers of one stage; its files go to ``stage_dir``: ``model.pt`` (best validation AUC, with
    ``network_config`` and its threshold), ``last.pt`` (the training state), ``logs/`` (TensorBoard).

    Every epoch starts by seeding torch with :func:`epoch_seed` (dropout, the sampler's noise, a shuffling
    ``DataLoader``'s order): with inputs read without random augmentation, a run resumed after a kill trains the
    same epochs as the uninterrupted run and ends with the same best model.

    Args:
        before_validation: called with the trainer at the end of every epoch before the validation (e.g. the
            BatchNorm re-estimation of the fine-tuning).
        seed: of :func:`epoch_seed`.
    """
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: torch.manual_seed(epoch_seed(seed, e.state.epoch)))
    stage_dir = os.fspath(stage_dir)
    log_dir = os.path.join(stage_dir, "logs")
    save = {"model": network} if network_config is None else {"model": network, "network_config": network_config}
    best = BestModelCheckpoint(stage_dir, save, KEY_METRIC)
    stop = EarlyStopping(patience=patience, score_function=metric_score(KEY_METRIC), trainer=trainer)
    for handler in (StatsHandler(iteration_log=False), TensorBoardStatsHandler(log_dir=log_dir, iteration_log=False),
                    SamplerTensorBoardHandler(network, log_dir=log_dir, label_source="output"), best):
        handler.attach(evaluator)
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, stop)
    handlers = [] if lr_scheduler is None else [LrScheduleHandler(lr_scheduler, print_lr=False)]
    if before_validation is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, before_validation)
    handlers += [ValidationHandler(interval=1, validator=evaluator, epoch_level=True),
                 StatsHandler(tag_name="train_loss", output_transform=_loss),
                 TensorBoardStatsHandler(log_dir=log_dir, tag_name="train_loss", output_transform=_loss)]
    save_state = {"model": network, "optimizer": optimizer, "early_stop": stop, "best": best}
    if lr_scheduler is not None:
        save_state["lr_scheduler"] = lr_scheduler
    handlers.append(TrainingStateCheckpoint(os.path.join(stage_dir, "last.pt"), save_state, resume=resume,
                                            overwrite=overwrite, protect=[os.path.join(stage_dir, "model.pt")]))
    for handler in handlers:
        handler.attach(trainer)
