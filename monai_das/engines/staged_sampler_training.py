"""The pieces of the staged recipe (:py:class:`monai_das.engines.StagedRecipe`): a sampler trained on the cached
per-frame features of a frozen full-sequence backbone.

Training the sampler end to end through the backbone gives it a straight-through gradient that is a first-order
estimate in pixel space; on the MedMNIST3D masks it moved the picks onto empty slices. The staged recipe takes that
estimate out of the loop: a full-sequence **teacher** (:py:func:`load_teacher`) gives the frozen backbone and the
head; every frame goes through the backbone once (:py:func:`cache_frame_features`); with mean pooling and a linear
head the logits of a picked subset are ``head(mean_j (P f)_j)`` (:py:func:`subset_logits`), an exact function of the
sampling matrix ``P``, so the only estimate left is the straight-through step from the hard picks to ``P``. The loss
is the task's cross-entropy plus a ranking term (:py:func:`ranking_loss`) that asks every row of the sampler's logits
to rank frames like the teacher does (:py:func:`teacher_frame_scores`; in the spirit of SCSampler, Korbar et al. 2019,
and AR-Net's saliency ranking). Because the backbone is frozen and evaluated in eval mode, the features the trained
head sees in the network are exactly the cached ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

from monai_das.handlers.checkpoint_loading import load_checkpoint
from monai_das.handlers.network_config import split_checkpoint

__all__ = [
    "load_teacher",
    "cache_frame_features",
    "teacher_frame_scores",
    "subset_logits",
    "ranking_loss",
]

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
    state = split_checkpoint(load_checkpoint(teacher_ckpt))[0]
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
    network: nn.Module, dataset: Sequence[dict], device: Any = "cpu", batch_size: int = 16,
    frame_mask_key: str | None = None,
) -> dict[str, torch.Tensor]:
    """Run every frame of every input of ``dataset`` through the frozen backbone of ``network`` once (eval mode).

    Args:
        frame_mask_key: the item key of the ``(T,)`` bool mask of real frames (e.g. ``"image_frame_mask"``), or
            ``None`` when every frame is real.

    Returns:
        ``{"images": (N, C, T, H, W), "features": (N, T, D), "labels": (N,), "frame_mask": (N, T) bool}`` on
        ``device``.
    """
    backbone = network.backbone.eval()
    images, features, labels, masks = [], [], [], []
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
        masks.append(torch.ones(b, t, dtype=torch.bool) if frame_mask_key is None else torch.stack(
            [torch.as_tensor(item[frame_mask_key]).as_subclass(torch.Tensor).reshape(t).bool() for item in items]))
    return {"images": torch.cat(images), "features": torch.cat(features), "labels": torch.cat(labels).to(device),
            "frame_mask": torch.cat(masks).to(device)}


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


def subset_logits(head: nn.Module, weights: torch.Tensor, features: torch.Tensor,
                  picked_real: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of mean-pooled picks, as :py:class:`SubsampledClassifier` pools them.

    Args:
        head: the classifier head.
        weights: ``(B, k, T)`` the sampling matrix.
        features: ``(B, T, D)`` cached frame features.
        picked_real: ``(B, k)`` bool, whether each pick is a real frame (``frame_mask`` at the picks); padding picks
            are left out of the mean. ``None``: every pick counts.
    """
    picked = torch.bmm(weights.to(features.dtype), features)  # (B, k, D)
    if picked_real is None:
        return head(picked.mean(dim=1))
    real = picked_real[:, :, None].to(features.dtype)
    return head((picked * real).sum(dim=1) / real.sum(dim=1))


def ranking_loss(logits: torch.Tensor, scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Listwise cross-entropy between every row of ``logits`` ``(B, k, T)`` and ``softmax(scores / temperature)``."""
    target = F.softmax(scores / temperature, dim=-1)[:, None, :]
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
