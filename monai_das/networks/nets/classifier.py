"""A classifier that looks only at the frames its sampler picks."""

from __future__ import annotations

import torch
from monai.utils import look_up_option
from torch import nn

from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput

__all__ = ["SubsampledClassifier"]

POOLINGS = ("mean", "max", "attention")


class SubsampledClassifier(nn.Module):
    """Sampler + backbone + pooling + linear head; returns one logits tensor.

    With a 2D backbone (``backbone_dims=2``) the k picked frames of every input run through the backbone as one batch
    of ``B * k`` images, and their features are pooled over frames: ``"mean"`` (default), ``"max"`` (per feature, the
    strongest frame: suits labels shown by a few frames) or ``"attention"`` (attention pooling, `Ilse et al. 2018 <https://arxiv.org/abs/1802.04712>`_). With a 3D backbone
    (``backbone_dims=3``) the picked frames, in temporal order, form a ``(B, C, k, H, W)`` volume that the backbone
    sees whole, and no pooling is applied.

    What the sampler did in the last call is kept in ``self.last_sampler_output`` (a :py:class:`SamplerOutput`)
    for handlers to read; it is not returned, so MONAI trainers, ``ckpt_export`` and MONAI Label see one tensor.

    Args:
        sampler: any :py:class:`FrameSampler`.
        backbone: maps ``(N, C, H, W)`` (or ``(B, C, k, H, W)`` when ``backbone_dims=3``) to ``(N, feature_dim)``.
        num_classes: number of classes (>= 1).
        feature_dim: size of the backbone's output features.
        pooling: ``"mean"``, ``"max"`` or ``"attention"`` (2D backbones only).
        dropout: dropout before the head, in [0, 1).
        backbone_dims: 2 or 3.

    Shape:
        input ``(B, C, T, H, W)``, output ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        sampler: FrameSampler,
        backbone: nn.Module,
        num_classes: int,
        feature_dim: int = 576,
        pooling: str = "mean",
        dropout: float = 0.2,
        backbone_dims: int = 2,
    ) -> None:
        super().__init__()
        if not isinstance(sampler, FrameSampler):
            raise TypeError(f"sampler must be a monai_das FrameSampler, got {type(sampler).__name__}.")
        if num_classes < 1 or feature_dim < 1:
            raise ValueError(f"num_classes and feature_dim must be >= 1, got {num_classes} and {feature_dim}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if backbone_dims not in (2, 3):
            raise ValueError(f"backbone_dims must be 2 or 3, got {backbone_dims}.")
        self.sampler = sampler
        self.backbone = backbone
        self.pooling = look_up_option(pooling, POOLINGS)
        self.backbone_dims = backbone_dims
        self.attention = (
            nn.Sequential(nn.Linear(feature_dim, 128), nn.Tanh(), nn.Linear(128, 1)) if self.pooling == "attention"
            else None
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))
        self.last_sampler_output: SamplerOutput | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sampler(x)
        if not torch.jit.is_scripting():
            self.last_sampler_output = out
        frames = out.frames  # (B, C, k, H, W)
        if self.backbone_dims == 3:
            return self.head(self.backbone(frames))
        b, c, k, h, w = frames.shape
        feats = self.backbone(frames.transpose(1, 2).reshape(b * k, c, h, w)).reshape(b, k, -1)  # (B, k, D)
        if self.attention is not None:
            pooled = (torch.softmax(self.attention(feats), dim=1) * feats).sum(dim=1)
        elif self.pooling == "max":
            pooled = feats.amax(dim=1)
        else:
            pooled = feats.mean(dim=1)
        return self.head(pooled)
