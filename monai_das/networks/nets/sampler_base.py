"""The interface every frame sampler shares: its typed output, input checks and frame gathering."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import nn

__all__ = ["SamplerOutput", "FrameSampler", "max_abs_input", "pickable_frames"]


def max_abs_input(dtype: torch.dtype) -> float:
    """The largest input magnitude the samplers accept in ``dtype``: ``sqrt(finfo(dtype).max) / 100`` (1.8e17 in
    float32, 1.3e152 in float64). DAS squares frame intensities (frame variance), so its features overflow to NaN
    somewhat above ``sqrt(finfo(dtype).max)`` (from |x| ~ 1e20 in float32), which would make its picks arbitrary."""
    return math.sqrt(torch.finfo(dtype).max) / 100.0


class SamplerOutput(NamedTuple):
    """What a sampler picked.

    Attributes:
        frames: ``(B, C, k, H, W)`` the picked frames, in temporal order.
        weights: ``(B, k, T)`` the sampling matrix ``P``; one-hot rows in the forward pass (soft gradient in training
            for the learned samplers), ``frames = P`` applied to the input along ``T``.
        indices: ``(B, k)`` long, the picked frame indices, strictly increasing.
        logits: ``(B, k, T)`` the noise-free, temperature-scaled logits, for the learned samplers; ``None`` otherwise.
        temperature: ``(B,)`` the temperature, for the samplers that have one; ``None`` otherwise.
    """

    frames: torch.Tensor
    weights: torch.Tensor
    indices: torch.Tensor
    logits: Optional[torch.Tensor] = None
    temperature: Optional[torch.Tensor] = None


def pickable_frames(frame_mask: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The frames a sampler may pick, ``(B, T)`` bool, given the real frames ``frame_mask`` ``(B, T)``.

    Every real frame, and, when ``num_samples`` (k) exceeds the ``n`` real frames of an input, its first ``k - n``
    padding frames (the lowest indices), so that k distinct frames can still be picked and all ``n`` real frames are
    among them.
    """
    padding = ~frame_mask
    need = (num_samples - frame_mask.sum(dim=1, keepdim=True)).clamp_min(0)  # (B, 1)
    return frame_mask | (padding & (torch.cumsum(padding.long(), dim=1) <= need))


class FrameSampler(nn.Module):
    """Base class of the samplers: picks ``num_samples`` (k) of the ``T`` frames of a ``(B, C, T, H, W)`` input.

    Every sampler's ``forward(x, frame_mask=None)`` takes an optional ``frame_mask`` ``(B, T)`` bool, ``True`` for
    the real frames of each input and ``False`` for padding (repeated or zero frames, e.g. the ``image_frame_mask``
    that :py:class:`monai_das.transforms.PadOrCropFramesd` writes with ``return_mask=True``). With it, a sampler
    never spends two picks on copies of one source frame: the k picks are distinct real frames whenever the input has
    at least k of them. An input with ``n < k`` real frames gets all ``n`` of them plus its first ``k - n`` padding
    frames (lowest indices; :py:func:`pickable_frames`): ``frame_mask.gather(1, indices)`` tells which picks are real,
    and the classifier leaves the padding picks out of its pooling. Without a mask every frame counts as real.

    Args:
        num_samples: the number of frames to keep, k >= 1.

    Raises:
        ValueError: when ``num_samples`` is not a positive integer.
    """

    def __init__(self, num_samples: int) -> None:
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
        self.num_samples = num_samples

    @torch.jit.unused
    def check_input(self, x: torch.Tensor, num_samples: int | None = None) -> None:
        """Raise ``TypeError``/``ValueError`` naming the argument ``x`` when it is not a valid frame sequence: not a
        floating-point (real) 5-D tensor, fewer than k frames, empty, the wrong channels, another dtype than the
        sampler's parameters, or, for a CPU tensor, NaN / Inf values or values beyond :func:`max_abs_input` (see
        :py:meth:`check_values`)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, C, T, H, W), got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating point tensor, got dtype {x.dtype}.")
        if x.ndim != 5:
            raise ValueError(f"x must be 5-D (B, C, T, H, W), got shape {tuple(x.shape)} ({x.ndim}-D).")
        k = self.num_samples if num_samples is None else num_samples
        if x.shape[2] < k:
            raise ValueError(
                f"num_samples ({k}) must be <= the number of frames T of x, got x of shape {tuple(x.shape)} "
                f"(T = {x.shape[2]})."
            )
        if min(x.shape) == 0:
            raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}.")
        channels = getattr(self, "in_channels", None)
        if channels is not None and x.shape[1] != channels:
            raise ValueError(
                f"x must have in_channels={channels} channels (dimension 1 of (B, C, T, H, W)), got shape "
                f"{tuple(x.shape)}."
            )
        if x.device.type == "cpu":
            self.check_values(x)
        param = next(self.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            raise TypeError(
                f"x has dtype {x.dtype} but the sampler's parameters are {param.dtype}: convert one to the other "
                f"(e.g. x.to({param.dtype}) or sampler.to({x.dtype}))."
            )

    @staticmethod
    @torch.jit.unused
    def check_values(x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` holds NaN / Inf or values beyond :func:`max_abs_input`.

        :py:meth:`check_input` runs it on CPU inputs only: there one reduction (NaN and Inf propagate into min and
        max) is read back without any device synchronisation, for 0.004 ms (1 x 32 frames of 28 x 28) to 0.2 ms (1 x
        32 frames of 224 x 224) at 1 thread, the same for every sampler. On an accelerator the read-back would stall
        the device at every forward, so inputs there are not scanned (call this method yourself to check them).
        """
        # the element-wise scan runs only on failure
        lo, hi = (float(v) for v in torch.aminmax(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = torch.isfinite(x)
            bad_frames = (~finite).flatten(3).any(-1).any(1).nonzero()[:5].tolist()  # [[b, t], ...]
            raise ValueError(
                f"x of shape {tuple(x.shape)} contains {int((~finite).sum())} NaN or Inf values (first (batch, frame) "
                f"pairs: {bad_frames}); the samplers need finite frames."
            )
        limit = max_abs_input(x.dtype)
        if max(-lo, hi) > limit:
            raise ValueError(
                f"x of shape {tuple(x.shape)} and dtype {x.dtype} has values in [{lo:.3g}, {hi:.3g}]; the samplers "
                f"need |x| <= {limit:.3g} (the square root of the dtype's largest value / 100), beyond which the DAS "
                "frame features overflow to NaN and the picks would mean nothing. Scale the frames first (e.g. to "
                "[0, 1])."
            )

    @torch.jit.unused
    def check_frame_mask(self, x: torch.Tensor, frame_mask: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` naming ``frame_mask`` when it is not a ``(B, T)`` bool tensor for
        ``x`` ``(B, C, T, H, W)`` with at least one real (``True``) frame per input."""
        if not isinstance(frame_mask, torch.Tensor) or frame_mask.dtype != torch.bool:
            got = frame_mask.dtype if isinstance(frame_mask, torch.Tensor) else type(frame_mask).__name__
            raise TypeError(f"frame_mask must be a bool torch.Tensor of shape (B, T), got {got}.")
        expected = (x.shape[0], x.shape[2])
        if tuple(frame_mask.shape) != expected:
            raise ValueError(
                f"frame_mask must have shape (B, T) = {expected} for x of shape {tuple(x.shape)}, got "
                f"{tuple(frame_mask.shape)}."
            )
        empty = (~frame_mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"frame_mask marks no real frame for the input(s) {empty} of the batch; each needs one.")

    def validate(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> None:
        """Check ``x`` (and ``frame_mask`` when given) eagerly; skipped while scripting or tracing."""
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.check_input(x)
            if frame_mask is not None:
                self.check_frame_mask(x, frame_mask)

    @staticmethod
    def gather_frames(x: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Apply the sampling matrix along T: ``(B, C, T, H, W)`` -> ``(B, C, k, H, W)``.

        (Not called ``apply``: that name is ``nn.Module.apply(fn)``, which initialisers such as
        ``net.apply(init_fn)`` rely on.)

        When no gradient is needed the frames are gathered by index, which costs nothing; otherwise the product
        with ``P`` carries the straight-through gradient to the sampler.
        """
        if weights.requires_grad:
            return torch.einsum("bkt,bcthw->bckhw", weights.to(x.dtype), x)
        b, c, t, h, w = x.shape
        k = indices.shape[1]
        # one index_select of whole frames: 3-9x faster than Tensor.gather with an index expanded over H and W
        # (measured on the CPU, 1 thread: 16 of 32 frames of 224 x 224 in 0.16 ms against 1.3 ms)
        if b == 1 and not torch.jit.is_tracing():  # a trace must not keep the batch-of-one shortcut
            return x.index_select(2, indices[0])
        rows = (torch.arange(b * c, device=x.device).reshape(b, c, 1) * t + indices[:, None, :]).reshape(-1)
        return x.reshape(b * c * t, h * w).index_select(0, rows).reshape(b, c, k, h, w)
