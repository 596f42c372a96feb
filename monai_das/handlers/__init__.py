"""Ignite handlers and metrics: TensorBoard logging of the sampler's decisions, balanced accuracy."""

from __future__ import annotations

from .metrics import BalancedAccuracy, to_class_indices
from .prediction_writer import PredictionWriter
from .sampler_tensorboard import SamplerTensorBoardHandler, default_label_transform, unwrap_network

__all__ = [
    "BalancedAccuracy",
    "PredictionWriter",
    "SamplerTensorBoardHandler",
    "default_label_transform",
    "to_class_indices",
    "unwrap_network",
]
