"""Ignite handlers and metrics: TensorBoard logging of the sampler's decisions, balanced accuracy, quadratic-weighted
kappa, operating threshold, resumable training state (ignite checkpoints), safe checkpoint reading, the network options saved in a checkpoint."""

from __future__ import annotations

from monai_das.networks.utils import unwrap_network
from monai_das.utils.class_indices import to_class_indices

from .checkpoint_loading import SafeCheckpointLoader, load_checkpoint
from .metrics import BalancedAccuracy, QuadraticWeightedKappa, quadratic_weighted_kappa
from .network_config import NETWORK_CONFIG_KEY, NetworkConfig, split_checkpoint
from .prediction_writer import PredictionWriter
from .sampler_tensorboard import SamplerTensorBoardHandler, default_label_transform
from .operating_threshold import OperatingThreshold
from .training_state import (
    RESUME_CHOICES,
    BestModelCheckpoint,
    ReplacingDiskSaver,
    TrainingStateCheckpoint,
    claim_output,
    read_training_state,
    release_output,
)

__all__ = [
    "NETWORK_CONFIG_KEY",
    "NetworkConfig",
    "split_checkpoint",
    "RESUME_CHOICES",
    "BestModelCheckpoint",
    "BalancedAccuracy",
    "OperatingThreshold",
    "PredictionWriter",
    "QuadraticWeightedKappa",
    "SafeCheckpointLoader",
    "SamplerTensorBoardHandler",
    "TrainingStateCheckpoint",
    "claim_output",
    "default_label_transform",
    "load_checkpoint",
    "quadratic_weighted_kappa",
    "read_training_state",
    "release_output",
    "ReplacingDiskSaver",
    "to_class_indices",
    "unwrap_network",
]
