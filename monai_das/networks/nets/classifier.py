"""A classifier that looks only at the frames its sampler picks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import torch
from monai.utils import look_up_option
from torch import nn

from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput

__all__ = ["SubsampledClassifier", "backbone_width"]

POOLINGS = ("mean", "max", "attention")
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def backbone_width(backbone: nn.Module, backbone_dims: int = 2, depth: int = 8) -> int:
    """The width of the features ``backbone`` returns: its ``out_features`` attribute, else one dry run.

    The dry run feeds zeros ``(2, C, 32, 32)`` (``(2, C, depth, 32, 32)`` when ``backbone_dims=3``) in eval mode
    without gradient, with ``C`` the ``in_channels`` of the backbone's first convolution; the training mode is
    restored afterwards.

    Raises:
        TypeError: when the backbone has neither ``out_features`` nor a convolution to read ``C`` from, or does not
            return ``(N, width)`` features.
    """
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int) and not isinstance(width, bool):
        return width
    conv = next((m for m in backbone.modules() if isinstance(m, CONVOLUTIONS)), None)
    if conv is None:
        raise TypeError(
            f"cannot infer feature_dim: the backbone {type(backbone).__name__} has no out_features attribute and no "
            "convolution to read its input channels from; pass feature_dim."
        )
    param = conv.weight
    shape = (2, conv.in_channels, depth, 32, 32) if backbone_dims == 3 else (2, conv.in_channels, 32, 32)
    mode = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(shape, dtype=param.dtype, device=param.device))
    finally:
        backbone.train(mode)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"the backbone must return (N, feature_dim) features, got {got} for an input {shape}.")
    return int(out.shape[1])


def _load_bundle_checkpoint(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """A ``load_state_dict`` pre-hook: a bundle checkpoint ``{"model": state dict, "network_config": options}`` loads
    as its ``model`` entry (the other entries, options for the bundle tools, are dropped), so that
    ``load_state_dict(torch.load("model.pt"))``, ignite's ``Checkpoint.load_objects`` and MONAI's ``ckpt_export``
    without ``--key_in_ckpt model`` (as the MONAI model-zoo verifier calls it) read the self-describing checkpoints.
    The classifier has no submodule called ``model``, so no state dict of its own has that key."""
    weights = state_dict.get(prefix + "model")
    if isinstance(weights, Mapping):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]
        state_dict.update({prefix + k: v for k, v in weights.items()})


class SubsampledClassifier(nn.Module):
    """Sampler + backbone + pooling + linear head; returns one logits tensor.

    With a 2D backbone (``backbone_dims=2``) the k picked frames of every input run through the backbone as one batch
    of ``B * k`` images, and their features are pooled over frames: ``"mean"`` (default), ``"max"`` (per feature, the
    strongest frame: suits labels shown by a few frames) or ``"attention"`` (attention pooling, `Ilse et al. 2018 <https://arxiv.org/abs/1802.04712>`_). With a 3D backbone
    (``backbone_dims=3``) the picked frames, in temporal order, form a ``(B, C, k, H, W)`` volume that the backbone
    sees whole, and no pooling is applied.

    ``load_state_dict`` also takes a bundle checkpoint ``{"model": state dict, "network_config": options}`` and loads
    its ``model`` entry.

    What the sampler did in the last call is kept in ``self.last_sampler_output`` (a :py:class:`SamplerOutput`)
    for handlers to read; it is not returned, so MONAI trainers, ``ckpt_export`` and MONAI Label see one tensor.
    Under ``DistributedDataParallel`` (one process per device) every process's module keeps the picks of its own
    part of the batch (read it through :py:func:`monai_das.networks.unwrap_network`). ``nn.DataParallel`` over
    several devices runs the forward on throw-away replicas, which would keep it where no one reads it: that is
    refused with a ``RuntimeError`` (DataParallel over one device runs the module itself and works).

    ``forward(x, frame_mask=None)``: ``frame_mask`` ``(B, T)`` bool marks the real frames of each input (``True``)
    against padding (``False``: repeated or zero frames; e.g. the ``image_frame_mask`` of
    :py:class:`monai_das.transforms.PadOrCropFramesd` with ``return_mask=True``, passed by MONAI engines with
    ``monai.engines.PrepareBatchExtraInput({"frame_mask": "image_frame_mask"})``). The sampler then picks distinct
    real frames (see :py:class:`FrameSampler`), and when an input has fewer real frames than k the pooling leaves
    out its padding picks (``frame_mask`` at the picks), so its prediction rests on its real frames only, each
    counted once. A 3D backbone (``backbone_dims=3``) is not pooled: it sees those padding picks too. Without a
    mask every frame counts as real, as before.

    Args:
        sampler: any :py:class:`FrameSampler`.
        backbone: maps ``(N, C, H, W)`` (or ``(B, C, k, H, W)`` when ``backbone_dims=3``) to ``(N, feature_dim)``.
        num_classes: number of classes (>= 1).
        feature_dim: size of the backbone's output features; ``None`` (default) reads it from the backbone
            (:py:func:`backbone_width`). A given value must match the backbone's ``out_features`` when it has one.
        pooling: ``"mean"``, ``"max"`` or ``"attention"`` (2D backbones only: a 3D backbone is not pooled).
        dropout: dropout before the head, in [0, 1).
        backbone_dims: 2 or 3.

    Raises:
        ValueError: for a ``feature_dim`` that differs from the backbone's width (at construction when the backbone
            has ``out_features``, else at the first forward), or ``pooling="attention"`` with ``backbone_dims=3``.

    Shape:
        input ``(B, C, T, H, W)``, output ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        sampler: FrameSampler,
        backbone: nn.Module,
        num_classes: int,
        feature_dim: int | None = None,
        pooling: str = "mean",
        dropout: float = 0.2,
        backbone_dims: int = 2,
    ) -> None:
        super().__init__()
        if not isinstance(sampler, FrameSampler):
            raise TypeError(f"sampler must be a monai_das FrameSampler, got {type(sampler).__name__}.")
        if num_classes < 1 or (feature_dim is not None and feature_dim < 1):
            raise ValueError(f"num_classes and feature_dim must be >= 1, got {num_classes} and {feature_dim}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if backbone_dims not in (2, 3):
            raise ValueError(f"backbone_dims must be 2 or 3, got {backbone_dims}.")
        self.pooling = look_up_option(pooling, POOLINGS)
        if self.pooling == "attention" and backbone_dims == 3:
            raise ValueError(
                "pooling='attention' needs a 2D backbone (backbone_dims=2): a 3D backbone sees the k frames as one "
                "volume and nothing is pooled, so the attention head would never be used."
            )
        declared = getattr(backbone, "out_features", None)
        if feature_dim is None:
            feature_dim = backbone_width(backbone, backbone_dims, depth=max(sampler.num_samples, 8))
        elif isinstance(declared, int) and declared != feature_dim:
            raise ValueError(
                f"feature_dim={feature_dim} does not match the backbone's width: {type(backbone).__name__} returns "
                f"{declared} features (out_features); pass feature_dim={declared} or leave it out."
            )
        self.sampler = sampler
        self.backbone = backbone
        self.backbone_dims = backbone_dims
        self.feature_dim = feature_dim
        self.attention = (
            nn.Sequential(nn.Linear(feature_dim, 128), nn.Tanh(), nn.Linear(128, 1)) if self.pooling == "attention"
            else None
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.last_sampler_output: SamplerOutput | None = None
        self.register_load_state_dict_pre_hook(_load_bundle_checkpoint)

    def check_width(self, feats: torch.Tensor) -> torch.Tensor:
        """Return the backbone's ``(N, D)`` features, after checking eagerly that ``D == feature_dim``."""
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and feats.shape[-1] != self.feature_dim:
            raise ValueError(
                f"the backbone returned features of width {feats.shape[-1]} (shape {tuple(feats.shape)}) but the "
                f"classifier was built for feature_dim={self.feature_dim}; pass feature_dim={feats.shape[-1]} or "
                "leave it out to read it from the backbone."
            )
        return feats

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.sampler(x, frame_mask)
        if not torch.jit.is_scripting():
            if next(self.head.parameters(), None) is None:
                raise RuntimeError(
                    "SubsampledClassifier is running as an nn.DataParallel replica (its weights are copies, not "
                    "parameters): its last_sampler_output would be kept on the replica and lost. Use "
                    "DistributedDataParallel (one process per device) or DataParallel over a single device."
                )
            self.last_sampler_output = out
        frames = out.frames  # (B, C, k, H, W)
        if self.backbone_dims == 3:
            return self.head(self.check_width(self.backbone(frames)))
        b, c, k, h, w = frames.shape
        feats = self.check_width(self.backbone(frames.transpose(1, 2).reshape(b * k, c, h, w))).reshape(b, k, -1)
        real = None if frame_mask is None else frame_mask.gather(1, out.indices)  # (B, k) real picks
        if self.attention is not None:
            scores = self.attention(feats)  # (B, k, 1)
            if real is not None:
                scores = scores.masked_fill(~real[:, :, None], float("-inf"))
            pooled = (torch.softmax(scores, dim=1) * feats).sum(dim=1)
        elif self.pooling == "max":
            pooled = (feats if real is None else feats.masked_fill(~real[:, :, None], float("-inf"))).amax(dim=1)
        elif real is None:
            pooled = feats.mean(dim=1)
        else:
            weights = real[:, :, None].to(feats.dtype)
            pooled = (feats * weights).sum(dim=1) / weights.sum(dim=1)
        return self.head(pooled)
