"""Re-estimate a classifier's BatchNorm statistics on the frames its sampler picks in eval mode.

During training the backbone of a :py:class:`SubsampledClassifier` sees the sampler's Gumbel-perturbed picks; in
evaluation it sees the deterministic picks, whose statistics can differ a lot (a sampler that learned to find the
evidence frames picks them more reliably in eval). The running statistics that BatchNorm kept during training then
normalise the wrong distribution. Recomputing them as exact averages over the eval-mode picks of the training data
fixes that (PreciseBN; Wu & Johnson, "Rethinking 'Batch' in BatchNorm", arXiv 2105.07576).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["recalibrate_batchnorm"]


@torch.no_grad()
def recalibrate_batchnorm(network: nn.Module, images: torch.Tensor, batch_size: int = 32) -> int:
    """Recompute the running mean and variance of every BatchNorm layer of ``network.backbone``.

    The sampler runs in eval mode (deterministic picks); the backbone's BatchNorm layers accumulate the exact average
    of the batch statistics over ``images``; nothing else changes. The network is left in eval mode.

    Args:
        network: a :py:class:`SubsampledClassifier`.
        images: ``(N, C, T, H, W)`` inputs (the training inputs, without random augmentation).
        batch_size: inputs per forward pass.

    Returns:
        the number of BatchNorm layers recalibrated (0: nothing to do).
    """
    norms = [m for m in network.backbone.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))]
    if not norms:
        return 0
    network.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches seen
        m.train()
    for start in range(0, len(images), batch_size):
        network(images[start : start + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    network.eval()
    return len(norms)
