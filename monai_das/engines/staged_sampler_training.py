"""The staged recipe: a sampler trained on the cached per-frame features of a frozen full-sequence backbone.

Training the sampler end to end through the backbone gives it a straight-through gradient that is a first-order
estimate in pixel space; on the MedMNIST3D masks it moved the picks onto empty slices (DESIGN §7). The staged recipe
takes that estimate out of the loop:

1. **Teacher.** A model of the same bundle trained on the full sequence (``--sampler_name full``); its backbone and
   head are copied into the network (:py:func:`load_teacher`) and the backbone stays frozen.
2. **Cache.** Every frame of every training and validation input goes through the frozen backbone once, in eval mode:
   features ``f`` of shape ``(N, T, D)`` (:py:func:`cache_frame_features`).
3. **Sampler and head.** With mean pooling and a linear head the logits of a picked subset are
   ``head(mean_j (P f)_j)``: an exact function of the sampling matrix ``P``, so the only estimate left is the
   straight-through step from the hard picks to ``P``. The loss is the task's cross-entropy plus a ranking term that
   asks every row of the sampler's logits to rank frames like the teacher does (a listwise cross-entropy to
   ``softmax(s / rank_temperature)``, ``s_t`` the teacher's log-probability of the true class from frame ``t`` alone,
   in the spirit of SCSampler, Korbar et al. 2019, and AR-Net's saliency ranking). The sampler's parameters learn at
   ``sampler_lr_scale`` times the head's rate; at 0 the sampler stays at its prior and only the head learns, which is
   what a sampler without parameters (uniform) gets too, so every method shares the recipe except for how its
   sampler is trained. The state with the best validation AUC (eval-mode picks) is kept.

Because the backbone is frozen and evaluated in eval mode, the features that the trained head sees in the network
are exactly the cached ones: no BatchNorm statistics need re-estimating.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.metrics import compute_roc_auc
from monai.utils import look_up_option
from torch import nn

from monai_das.engines.batchnorm_recalibration import recalibrate_batchnorm
from monai_das.handlers.training_state import atomic_torch_save

__all__ = [
    "load_teacher",
    "cache_frame_features",
    "teacher_frame_scores",
    "subset_logits",
    "ranking_loss",
    "train_sampler_staged",
]

logger = logging.getLogger(__name__)

#: the parts of a :py:class:`SubsampledClassifier` that come from the teacher
TEACHER_PARTS = ("backbone.", "head.")


def load_teacher(network: nn.Module, teacher_ckpt: str | os.PathLike) -> None:
    """Copy the backbone and head of a full-sequence checkpoint of the same bundle into ``network``.

    Raises:
        FileNotFoundError: when ``teacher_ckpt`` does not exist.
        ValueError: when it lacks a backbone or head weight of ``network``, or a shape differs.
    """
    if not os.path.isfile(teacher_ckpt):
        raise FileNotFoundError(
            f"teacher_ckpt {str(teacher_ckpt)!r} does not exist: train the bundle with --sampler_name full first and "
            "pass its model.pt."
        )
    state = torch.load(teacher_ckpt, map_location="cpu", weights_only=True)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = network.state_dict()
    wanted = {k: v for k, v in own.items() if k.startswith(TEACHER_PARTS)}
    missing = sorted(k for k in wanted if k not in state)
    if missing:
        raise ValueError(f"teacher_ckpt {str(teacher_ckpt)!r} lacks {len(missing)} weights, e.g. {missing[:3]}.")
    for key, value in wanted.items():
        if state[key].shape != value.shape:
            raise ValueError(
                f"teacher_ckpt {str(teacher_ckpt)!r}: {key} has shape {tuple(state[key].shape)}, the network "
                f"expects {tuple(value.shape)} (was the teacher trained with other options?)."
            )
    network.load_state_dict({**own, **{k: state[k] for k in wanted}})


@torch.no_grad()
def cache_frame_features(
    network: nn.Module, dataset: Sequence[dict], device: Any = "cpu", batch_size: int = 16
) -> dict[str, torch.Tensor]:
    """Run every frame of every input of ``dataset`` through the frozen backbone of ``network`` once (eval mode).

    Returns:
        ``{"images": (N, C, T, H, W), "features": (N, T, D), "labels": (N,)}`` on ``device``.
    """
    backbone = network.backbone.eval()
    images, features, labels = [], [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        # plain tensors, not MONAI MetaTensors: the cache file is read back with weights_only=True
        x = torch.stack([torch.as_tensor(item["image"]).as_subclass(torch.Tensor) for item in items])
        x = x.to(device=device, dtype=torch.float32)
        b, c, t, h, w = x.shape
        feats = backbone(x.transpose(1, 2).reshape(b * t, c, h, w).contiguous(memory_format=torch.channels_last))
        images.append(x)
        features.append(feats.reshape(b, t, -1))
        labels.append(torch.as_tensor([int(torch.as_tensor(item["label"]).reshape(-1)[0]) for item in items]))
    return {"images": torch.cat(images), "features": torch.cat(features), "labels": torch.cat(labels).to(device)}


RANK_TARGETS = ("true_class", "confidence")


@torch.no_grad()
def teacher_frame_scores(head: nn.Module, features: torch.Tensor, labels: torch.Tensor,
                         target: str = "true_class") -> torch.Tensor:
    """``(N, T)``: how much each frame's features alone tell the teacher head.

    ``target="true_class"``: the log-probability of the true class; ``"confidence"`` (label-free): the log-probability
    of the class the frame votes for, i.e. the teacher's own most confident frames whatever the label.
    """
    target = look_up_option(target, RANK_TARGETS)
    was_training = head.training
    head.eval()
    log_probs = F.log_softmax(head(features), dim=-1)  # (N, T, classes)
    head.train(was_training)
    if target == "confidence":
        return log_probs.max(dim=-1).values
    return log_probs.gather(-1, labels[:, None, None].expand(-1, features.shape[1], 1)).squeeze(-1)


def subset_logits(head: nn.Module, weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Logits of mean-pooled picks: ``weights`` ``(B, k, T)`` (the sampling matrix), ``features`` ``(B, T, D)``."""
    return head(torch.bmm(weights.to(features.dtype), features).mean(dim=1))


def ranking_loss(logits: torch.Tensor, scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Listwise cross-entropy between every row of ``logits`` ``(B, k, T)`` and ``softmax(scores / temperature)``."""
    target = F.softmax(scores / temperature, dim=-1)[:, None, :]
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


@torch.no_grad()
def _validation_auc(network: nn.Module, cache: dict[str, torch.Tensor], batch_size: int) -> float:
    network.eval()
    probs = []
    for start in range(0, len(cache["labels"]), batch_size):
        part = slice(start, start + batch_size)
        out = network.sampler(cache["images"][part])
        probs.append(F.softmax(subset_logits(network.head, out.weights, cache["features"][part]), dim=-1))
    prob = torch.cat(probs)
    onehot = F.one_hot(cache["labels"], prob.shape[1])
    return float(compute_roc_auc(prob, onehot, average="macro"))


def train_sampler_staged(
    network: nn.Module,
    teacher_ckpt: str | os.PathLike,
    train_data: Sequence[dict],
    val_data: Sequence[dict],
    output_path: str | os.PathLike,
    loss_function: nn.Module | None = None,
    epochs: int = 30,
    learning_rate: float = 1e-3,
    sampler_lr_scale: float = 1.0,
    rank_weight: float = 0.3,
    rank_temperature: float = 0.5,
    rank_target: str = "true_class",
    batch_size: int = 32,
    device: Any = "cpu",
    log_dir: str | None = None,
    overwrite: bool = False,
    finetune_epochs: int = 0,
    finetune_learning_rate: float = 1e-4,
    head_epochs: int = 0,
    feature_cache: str | os.PathLike | None = None,
    network_config: Any = None,
) -> dict[str, list[float]]:
    """Stages 1-3 of the recipe (module docstring) on ``network`` (a :py:class:`SubsampledClassifier` with a 2D
    backbone and mean pooling), saving the best state (validation AUC, eval-mode picks) to ``output_path``.

    Args:
        network: the classifier to train; its backbone and head are replaced by the teacher's.
        teacher_ckpt: ``model.pt`` of the same bundle trained with ``--sampler_name full``.
        train_data, val_data: datasets of ``{"image": (C, T, H, W), "label": ...}`` without random augmentation.
        output_path: where the network's best state dict is written (atomically).
        loss_function: the task loss on ``(logits, labels)``; cross-entropy when ``None``.
        epochs: passes over the cached training features.
        learning_rate: the head's learning rate (Adam).
        sampler_lr_scale: the sampler's learning rate is this times ``learning_rate``; 0 leaves it untrained.
        rank_weight: weight of the teacher ranking term (0 disables it; samplers without logits have none). 0.3 by
            default: on VesselMNIST3D at k = 4 of 28 (validation AUC, one teacher), weight 1 held the picks on
            near-empty slices for most epochs (best 0.685), 0.3 reached 0.797 and 0.1 0.773, against 0.693 for
            uniform picks; on AdrenalMNIST3D weights 1 and 0.1 reached 0.750 and 0.752.
        rank_temperature: temperature of the teacher's frame distribution.
        rank_target: what the teacher ranks frames by (:py:func:`teacher_frame_scores`): ``"true_class"`` or the
            label-free ``"confidence"``. Best validation AUC of DAS at k/T = 1/8 and 1/4 on one seed-0 teacher each
            (Vessel 1/8, 1/4; Adrenal 1/8, 1/4): true class 0.797, 0.806, 0.746, 0.806; confidence 0.777, 0.792,
            0.737, 0.806; no ranking term (``rank_weight=0``) 0.731, 0.775, 0.792, 0.828.
        batch_size: inputs per step.
        device: where to train.
        log_dir: TensorBoard folder for the stage's losses and validation AUC (``staged/...`` tags), or ``None``.
        overwrite: replace an existing ``output_path``; without it an existing model is never replaced.
        finetune_epochs: stage 4, optional: epochs of joint training of sampler, backbone and head on the images
            (sampler at ``sampler_lr_scale`` times ``finetune_learning_rate``), then the backbone's BatchNorm
            statistics re-estimated on the eval-mode picks (:py:func:`recalibrate_batchnorm`); the fine-tuned state
            is kept only when its validation AUC beats the best cached-feature state.
        finetune_learning_rate: the learning rate of the fine-tuning.
        head_epochs: epochs that train the head alone on the picks of the sampler's prior (its untrained state)
            before the ``epochs`` in which the sampler learns with it; the best validation state of both phases is
            kept, so a sampler whose learning does not help on validation stays at its prior. Ignored when the
            sampler does not learn. Measured against none (best validation AUC of DAS at k/T 1/8, 1/4, 1/2 on the
            seed-0 and seed-1 teachers, 30 head epochs vs 0): Adrenal 0.772 vs 0.746, 0.803 vs 0.806, 0.804 vs
            0.804, 0.801 vs 0.792, 0.808 vs 0.799, 0.801 vs 0.799; Vessel 0.799 vs 0.797, 0.818 vs 0.806, 0.798 vs
            0.800, 0.736 vs 0.757, 0.780 vs 0.775, 0.765 vs 0.771: a tie on average (+0.003), so the default stays 0
            and the benchmark runs it as its own method, ``das_from_prior``. On test it ties with DAS too (5 seeds,
            both sets, every budget: mean difference -0.009 to +0.003, every paired interval containing 0;
            ``benchmarks/results/accuracy.md``).
        feature_cache: a file that keeps the cached features of this teacher, so that the other samplers and
            budgets trained on it skip stage 2 (reused only when the teacher's sha256 and the dataset sizes match).
        network_config: an object with ``state_dict()`` (the bundles' ``NetworkConfig``) saved next to the weights
            as ``{"model": ..., "network_config": ...}``, as the bundles' best checkpoints are; ``None`` saves the
            plain state dict.

    Returns:
        ``{"loss": [...], "val_auc": [...]}`` per epoch of stage 3, and with ``finetune_epochs`` also
        ``"finetune_val_auc"`` (one value, after the BatchNorm re-estimation).

    Raises:
        ValueError: for a 3D backbone, a pooling other than mean, or non-positive epochs.
        FileExistsError: when ``output_path`` exists and ``overwrite`` is False.
    """
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(
            f"{str(output_path)!r} exists: a finished model is never replaced; pass overwrite=True (bundle: "
            "--overwrite True) to train it again, or choose another output_dir."
        )
    if getattr(network, "backbone_dims", 2) != 2 or getattr(network, "pooling", "mean") != "mean":
        raise ValueError("the staged recipe needs a 2D backbone with mean pooling (pooling='mean', backbone_dims=2).")
    if epochs < 1 or head_epochs < 0:
        raise ValueError(f"epochs must be >= 1 and head_epochs >= 0, got {epochs} and {head_epochs}.")
    load_teacher(network, teacher_ckpt)
    network.to(device)
    for p in network.backbone.parameters():
        p.requires_grad_(False)
    train_cache, val_cache = _cached_features(network, teacher_ckpt, train_data, val_data, device, feature_cache)
    scores = teacher_frame_scores(network.head, train_cache["features"], train_cache["labels"], rank_target)
    loss_function = loss_function if loss_function is not None else nn.CrossEntropyLoss()
    groups = [{"params": list(network.head.parameters()), "lr": learning_rate}]
    sampler_params = [p for p in network.sampler.parameters() if p.requires_grad]
    learns = bool(sampler_params) and sampler_lr_scale > 0
    if learns:
        groups.append({"params": sampler_params, "lr": learning_rate * sampler_lr_scale})
    optimizer = torch.optim.Adam(groups)
    writer = _summary_writer(log_dir)
    history: dict[str, list[float]] = {"loss": [], "val_auc": []}
    best_auc, best_state = -1.0, None
    n = len(train_cache["labels"])
    # the head alone on the prior's picks first (when asked), then the sampler with it
    phases = [False] * (head_epochs if learns else 0) + [learns] * epochs
    for epoch, sampler_learns in enumerate(phases):
        network.sampler.train()
        network.head.train()
        order = torch.randperm(n, device=train_cache["labels"].device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            with torch.set_grad_enabled(sampler_learns):
                out = network.sampler(train_cache["images"][idx])
            loss = loss_function(subset_logits(network.head, out.weights, train_cache["features"][idx]),
                                 train_cache["labels"][idx])
            if sampler_learns and rank_weight > 0 and out.logits is not None:
                loss = loss + rank_weight * ranking_loss(out.logits, scores[idx], rank_temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        auc = _validation_auc(network, val_cache, batch_size)
        history["loss"].append(total / n)
        history["val_auc"].append(auc)
        logger.info("staged epoch %d/%d (%s): loss %.4f, val AUC %.4f", epoch + 1, len(phases),
                    "sampler and head" if sampler_learns else "head", total / n, auc)
        if writer is not None:
            writer.add_scalar("staged/loss", total / n, epoch + 1)
            writer.add_scalar("staged/val_auc", auc, epoch + 1)
        if auc > best_auc:
            best_auc, best_state = auc, copy.deepcopy(network.state_dict())
    if writer is not None:
        writer.close()
    network.load_state_dict(best_state)
    for p in network.backbone.parameters():
        p.requires_grad_(True)
    if finetune_epochs > 0:
        _finetune(network, train_cache, loss_function, finetune_epochs, finetune_learning_rate, sampler_lr_scale,
                  batch_size)
        auc = _network_auc(network, val_cache, batch_size)
        history["finetune_val_auc"] = [auc]
        logger.info("staged fine-tuning: val AUC %.4f after %d epochs (cached-feature best %.4f)", auc,
                    finetune_epochs, best_auc)
        if auc > best_auc:
            best_auc, best_state = auc, copy.deepcopy(network.state_dict())
        network.load_state_dict(best_state)
    network.eval()
    checkpoint = best_state if network_config is None else {"model": best_state,
                                                            "network_config": network_config.state_dict()}
    atomic_torch_save(checkpoint, output_path)
    logger.info("staged: best val AUC %.4f, saved %s", best_auc, output_path)
    return history


def _cached_features(network: nn.Module, teacher_ckpt: str | os.PathLike, train_data: Sequence[dict],
                     val_data: Sequence[dict], device: Any, path: str | os.PathLike | None) -> tuple[dict, dict]:
    with open(teacher_ckpt, "rb") as f:
        stamp = {"teacher_sha256": hashlib.sha256(f.read()).hexdigest(), "sizes": [len(train_data), len(val_data)]}
    if path is not None and os.path.isfile(path):
        saved = torch.load(path, map_location=device, weights_only=True)
        if saved.get("stamp") == stamp:
            logger.info("staged: frame features read from %s", path)
            return saved["train"], saved["val"]
    train_cache = cache_frame_features(network, train_data, device)
    val_cache = cache_frame_features(network, val_data, device)
    if path is not None:
        atomic_torch_save({"stamp": stamp, "train": train_cache, "val": val_cache}, path)
    return train_cache, val_cache


def _finetune(network: nn.Module, cache: dict[str, torch.Tensor], loss_function: nn.Module, epochs: int,
              learning_rate: float, sampler_lr_scale: float, batch_size: int) -> None:
    """Stage 4: joint training on the images, then BatchNorm statistics re-estimated on the eval-mode picks."""
    groups = [{"params": list(network.backbone.parameters()) + list(network.head.parameters()), "lr": learning_rate}]
    sampler_params = list(network.sampler.parameters())
    if sampler_params and sampler_lr_scale > 0:
        groups.append({"params": sampler_params, "lr": learning_rate * sampler_lr_scale})
    optimizer = torch.optim.Adam(groups)
    n = len(cache["labels"])
    for _ in range(epochs):
        network.train()
        for idx in torch.randperm(n, device=cache["labels"].device).split(batch_size):
            loss = loss_function(network(cache["images"][idx]), cache["labels"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    recalibrate_batchnorm(network, cache["images"], batch_size)


@torch.no_grad()
def _network_auc(network: nn.Module, cache: dict[str, torch.Tensor], batch_size: int) -> float:
    network.eval()
    prob = torch.cat([F.softmax(network(x), dim=-1) for x in cache["images"].split(batch_size)])
    return float(compute_roc_auc(prob, F.one_hot(cache["labels"], prob.shape[1]), average="macro"))


def _summary_writer(log_dir: str | None) -> Any:
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir)
