"""Samplers that learn nothing: the full sequence, uniform and random picks."""

from __future__ import annotations

import torch

from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput
from monai_das.transforms.functional import evenly_spaced_indices

__all__ = ["FullSequence", "UniformSampler", "RandomSampler"]


def _one_hot_rows(indices: torch.Tensor, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, k)`` indices -> ``(B, k, T)`` one-hot sampling matrix."""
    return torch.nn.functional.one_hot(indices, num_frames).to(dtype)


class FullSequence(FrameSampler):
    """Keeps every frame: ``P`` is the identity, ``k = T``. ``num_samples`` is accepted (and ignored) so every
    sampler can be built with the same arguments."""

    def __init__(self, num_samples: int | None = None) -> None:
        super().__init__(1 if num_samples is None else num_samples)

    def forward(self, x: torch.Tensor) -> SamplerOutput:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.check_input(x, num_samples=1)
        b, t = x.shape[0], x.shape[2]
        indices = torch.arange(t, device=x.device).expand(b, t)
        return SamplerOutput(x, _one_hot_rows(indices, t, x.dtype), indices, None, None)


class UniformSampler(FrameSampler):
    """Keeps k evenly spaced frames, ``floor((i + 0.5) * T / k)`` for ``i = 0..k-1``, the same for every input."""

    def forward(self, x: torch.Tensor) -> SamplerOutput:
        self.validate(x)
        b, t = x.shape[0], x.shape[2]
        indices = evenly_spaced_indices(t, self.num_samples, x.device).expand(b, self.num_samples)
        weights = _one_hot_rows(indices, t, x.dtype)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, None, None)


class RandomSampler(FrameSampler):
    """Keeps k distinct random frames per input, in temporal order.

    Training draws new frames at every call from a generator seeded once with ``seed``; eval re-seeds a generator
    with ``seed`` at every call, so evaluation is deterministic and repeatable (while still differing per input).

    Args:
        num_samples: k, the frames to keep.
        seed: the seed of the generators; ``None`` draws from torch's global generator in both modes.
    """

    def __init__(self, num_samples: int, seed: int | None = 0) -> None:
        super().__init__(num_samples)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _draw(self, b: int, t: int) -> torch.Tensor:
        generator = None
        if self.seed is not None:
            if not self.training:
                generator = torch.Generator().manual_seed(self.seed)
            else:
                if self._generator is None:
                    self._generator = torch.Generator().manual_seed(self.seed)
                generator = self._generator
        keys = torch.rand(b, t, generator=generator)
        return keys.argsort(dim=1)[:, : self.num_samples].sort(dim=1).values

    def forward(self, x: torch.Tensor) -> SamplerOutput:
        self.validate(x)
        indices = self._draw(x.shape[0], x.shape[2]).to(x.device)
        weights = _one_hot_rows(indices, x.shape[2], x.dtype)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, None, None)
