"""Samplers that learn nothing: the full sequence, uniform and random picks."""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from monai_das.networks.layers import one_hot_rows
from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput, pickable_frames
from monai_das.transforms.functional import evenly_spaced_indices

__all__ = ["FullSequence", "UniformSampler", "RandomSampler"]


class FullSequence(FrameSampler):
    """Keeps every frame: ``P`` is the identity, ``k = T``. With a ``frame_mask`` every frame is still returned (the
    classifier then pools over the real frames only).

    Args:
        num_samples: deprecated and ignored (every frame is kept); a value other than ``None`` warns.
    """

    def __init__(self, num_samples: int | None = None) -> None:
        if num_samples is not None:
            warnings.warn(
                f"FullSequence(num_samples={num_samples!r}): num_samples is ignored (every frame is kept) and will be "
                "removed; build it as FullSequence() or get_sampler('full', k).",
                DeprecationWarning,
                stacklevel=2,
            )
        super().__init__(1)

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.check_input(x, num_samples=1)
            if frame_mask is not None:
                self.check_frame_mask(x, frame_mask)
        b, t = x.shape[0], x.shape[2]
        indices = torch.arange(t, device=x.device).expand(b, t)
        return SamplerOutput(x, one_hot_rows(indices, t, x.dtype), indices, None, None)


def _first_k(keys: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The ``(B, k)`` frames with the k smallest ``keys`` ``(B, T)`` (the lower index first on ties), in temporal
    order."""
    return keys.argsort(dim=1, stable=True)[:, :num_samples].sort(dim=1).values


class UniformSampler(FrameSampler):
    """Keeps k evenly spaced frames, ``floor((i + 0.5) * T / k)`` for ``i = 0..k-1``, the same for every input.

    With a ``frame_mask`` the k frames are evenly spaced among each input's ``n`` real frames instead (the
    ``floor((i + 0.5) * n / k)``-th real frame; every real frame and the first ``k - n`` padding frames when
    ``k > n``, see :py:class:`FrameSampler`).
    """

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        self.validate(x, frame_mask)
        b, t = x.shape[0], x.shape[2]
        if frame_mask is None:
            indices = evenly_spaced_indices(t, self.num_samples, x.device).expand(b, self.num_samples)
        else:
            pickable = pickable_frames(frame_mask, self.num_samples)
            rank = torch.cumsum(pickable.long(), dim=1) - 1  # (B, T)
            count = pickable.sum(dim=1, keepdim=True)  # (B, 1), >= k
            i = torch.arange(self.num_samples, device=x.device)
            wanted = torch.div((2 * i + 1) * count, 2 * self.num_samples, rounding_mode="floor")  # (B, k) ranks
            hit = (pickable[:, None, :] & (rank[:, None, :] == wanted[:, :, None])).any(dim=1)  # (B, T)
            indices = _first_k((~hit).long(), self.num_samples)
        weights = one_hot_rows(indices, t, x.dtype)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, None, None)


class RandomSampler(FrameSampler):
    """Keeps k distinct random frames per input, in temporal order.

    Training draws new frames at every call from a generator seeded once with ``seed``; eval re-seeds a generator
    with ``seed`` at every call, so evaluation is deterministic and repeatable (while still differing per input).
    With a ``frame_mask`` the k frames are drawn among each input's real frames (every real frame and the first
    ``k - n`` padding frames when ``k > n``, see :py:class:`FrameSampler`); the draw itself is the same.

    Args:
        num_samples: k, the frames to keep.
        seed: the seed of the generators; ``None`` draws from torch's global generator in both modes.
    """

    def __init__(self, num_samples: int, seed: int | None = 0) -> None:
        super().__init__(num_samples)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _keys(self, b: int, t: int) -> torch.Tensor:
        generator = None
        if self.seed is not None:
            if not self.training:
                generator = torch.Generator().manual_seed(self.seed)
            else:
                if self._generator is None:
                    self._generator = torch.Generator().manual_seed(self.seed)
                generator = self._generator
        return torch.rand(b, t, generator=generator)

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        self.validate(x, frame_mask)
        keys = self._keys(x.shape[0], x.shape[2]).to(x.device)  # in [0, 1)
        if frame_mask is not None:
            keys = keys.masked_fill(~pickable_frames(frame_mask, self.num_samples), 2.0)
        indices = _first_k(keys, self.num_samples)
        weights = one_hot_rows(indices, x.shape[2], x.dtype)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, None, None)
