"""A tiny generated task for the staged-recipe tests: 8 frames of 16 x 16, class 1 has one bright square in one
frame, and a 2D backbone small enough to train in seconds on a CPU."""

from __future__ import annotations

import torch
from torch import nn

from monai_das.networks.nets import SubsampledClassifier, get_sampler

T, K, SIZE = 8, 2, 16


class FrameMeans(nn.Module):
    """A tiny 2D backbone: 4 learned projections of a frame's mean intensity (BatchNorm to test eval mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3))


def classifier(name: str, k: int = K) -> SubsampledClassifier:
    torch.manual_seed(0)
    return SubsampledClassifier(get_sampler(name, k, num_frames=T), FrameMeans(), num_classes=2, feature_dim=4)


def data(n: int, seed: int, noise: float = 0.1, signal: float = 1.0) -> list[dict]:
    """Class 1 has one square brighter by ``signal`` in a random frame; every frame holds uniform noise of amplitude
    ``noise``."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        x = noise * torch.rand(1, T, SIZE, SIZE, generator=g)
        label = i % 2
        if label:
            t = int(torch.randint(0, T, (1,), generator=g))
            x[0, t, 4:12, 4:12] += signal
        items.append({"image": x, "label": torch.tensor(label)})
    return items
