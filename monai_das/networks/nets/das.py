"""DAS: Deep Attention-guided Adaptive Subsampling, the input-adaptive, single-pass frame sampler."""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from monai_das.networks.blocks import FrameEmbedding, FrameFeatures, SamplingAttention
from monai_das.networks.blocks.sampling_attention import DEFAULT_TAU0
from monai_das.networks.layers import gumbel_noise, hard_topk, straight_through_topk
from monai_das.networks.nets.sampler_base import FrameSampler, SamplerOutput, pickable_frames

__all__ = ["DASampler", "COVERAGES", "pooled_frames", "segment_mask"]

COVERAGES = ("none", "segments")


@functools.lru_cache(maxsize=64)
def _pooling_matrix(size: int, out_size: int) -> torch.Tensor:
    """``(size, out_size)``: column ``i`` averages the window ``[floor(i size / out), ceil((i + 1) size / out))`` of
    adaptive average pooling."""
    i = torch.arange(out_size)[None, :]
    start, end = i * size // out_size, -(-(i + 1) * size // out_size)
    j = torch.arange(size)[:, None]
    return ((j >= start) & (j < end)).float() / (end - start).float()


def _pooling_matrix_like(size: int, out_size: int, x: torch.Tensor) -> torch.Tensor:
    matrix = _pooling_matrix(size, out_size)
    return matrix if matrix.dtype == x.dtype and matrix.device == x.device else matrix.to(x)


@torch.jit.unused
def pooled_frames(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Every frame of ``(B, C, T, H, W)`` average-pooled to ``(height, width)``, as ``(B * T, C, height, width)``.

    Equal (to float32 rounding) to ``F.adaptive_avg_pool3d(x, (T, height, width))`` with T moved next to B, computed
    as two matrix products (pooling is linear and separable): 2-6x faster on the CPU where the pooling windows
    overlap, i.e. the sizes do not divide evenly (512 frames of 28 -> 16 pixels at 1 thread: 0.3 ms against 1.9 ms).
    Where they divide evenly the matrix products do more work than the pooling (512 frames of 112 -> 16 pixels: 19.6
    ms against 9.7 ms), so DAS pools those with ``adaptive_avg_pool3d``.
    """
    b, c, t, h, w = x.shape
    rows = x.reshape(b * c * t, h, w) @ _pooling_matrix_like(w, width, x)  # (B C T, H, width)
    pooled = _pooling_matrix_like(h, height, x).t() @ rows  # (B C T, height, width)
    return pooled.reshape(b, c, t, height, width).transpose(1, 2).reshape(b * t, c, height, width)


def segment_mask(
    num_samples: int, num_frames: int, device: Optional[torch.device] = None, pickable: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``(k, T)`` bool, True where row ``j`` may *not* pick: outside its segment ``[j T / k, (j + 1) T / k)``.

    The k segments split the T frames into consecutive runs of ``T // k`` or ``T // k + 1`` frames (none empty
    since ``k <= T``). With ``pickable`` ``(B, T)`` bool (:py:func:`pickable_frames`, at least k per input) the
    segments split each input's pickable frames instead, and the result is ``(B, k, T)``, True for every frame that
    is not pickable.
    """
    rows = torch.arange(num_samples, device=device)
    if pickable is None:
        segment = torch.arange(num_frames, device=device) * num_samples // num_frames  # (T,) row of each frame
        return segment[None, :] != rows[:, None]
    rank = torch.cumsum(pickable.long(), dim=1) - 1  # (B, T) rank of each pickable frame
    segment = rank * num_samples // pickable.sum(dim=1, keepdim=True)
    return (segment[:, None, :] != rows[None, :, None]) | ~pickable[:, None, :]


class DASampler(FrameSampler):
    """Picks ``num_samples`` frames per input in one pass (`Shankaranarayana et al., arXiv 2510.12376
    <https://arxiv.org/abs/2510.12376>`_).

    1. Per-frame features ``F``, computed on every frame average-pooled to at most ``feature_size`` pixels a side
       (so the sampler's cost stays small next to the backbone's): variance, Sobel and Laplacian edge energy
       (:py:class:`FrameFeatures`, log-scaled and standardised over T per input), plus, when ``embedding_size > 0``,
       a learned tiny-CNN embedding of each frame (:py:class:`FrameEmbedding`); the frames are pooled once and both
       read them.
    2. Multi-head sampling attention (:py:class:`SamplingAttention`) gives k rows of logits ``A`` ``(B, k, T)`` and
       the adaptive temperature ``tau = tau0 * (0.5 + sigmoid(MLP_temp(F)))``.
    3. ``P_soft = softmax_T(tau * A + G)`` with Gumbel noise ``G`` in training only; straight-through one-hot rows
       in the forward pass; row ``j`` cannot pick a frame taken by rows ``< j``, so the k picks are distinct; the
       picks are returned in temporal order. In eval mode there is no noise and the selection is deterministic; when
       no gradient is needed (``torch.no_grad``/``inference_mode``) the same picks come from :py:func:`hard_topk`
       and ``P`` is exactly one-hot.
       With ``coverage="segments"`` row ``j`` may only pick in the j-th of k consecutive segments of the sequence
       (:py:func:`segment_mask`; of its real frames when a ``frame_mask`` is given): the picks then cover the
       sequence like uniform sampling, each one placed where the input shows most within its segment.

    Training: the straight-through gradient is a linearisation in pixel space, and it can point the wrong way (on
    binary masks it can move the picks to nearly empty end slices while the training loss stops falling). Watch
    ``picked_index/class_*`` in TensorBoard for this, and give the sampler a lower learning rate than the backbone (the
    MedMNIST3D bundles use ``sampler_lr_scale`` 0.1; the runs behind that choice are in ``benchmarks/results/``).

    The literal form of the paper (picks = top-k of the frame variance) is
    ``DASampler(k, base_score="variance", row_queries=False, temporal_context="none", embedding_size=0)``.

    Args:
        num_samples: k, the frames to keep.
        in_channels: channels of the input (for the learned embedding).
        num_heads: attention heads H.
        hidden_size: width of the attention MLPs (a multiple of ``num_heads``).
        tau0: base temperature (> 0, default :py:data:`DEFAULT_TAU0` = 3.0, unchanged since commit 3dbfb15); the
            temperature multiplies the logits, so a larger ``tau0`` makes training picks follow the logits more and
            the Gumbel noise less.
        base_score: ``"learned"`` (default) or ``"variance"``, see :py:class:`SamplingAttention`.
        temporal_context: ``"conv"`` (default) or ``"none"``.
        context_kernel: kernel of the temporal convolution (odd).
        row_queries: learned per-row queries so rows can prefer different frames (default ``True``).
        base_prior: ``"variance"`` (default: the learned base score starts from the variance ranking) or ``"none"``.
        embedding_size: size of the learned per-frame embedding added to the hand-made features; 0 disables it.
        kernel_size: Sobel/Laplacian kernel size.
        feature_size: frames larger than this (in H or W) are average-pooled to it before the features are computed;
            ``0`` computes them at full resolution.
        coverage: ``"none"`` (default: any k distinct frames) or ``"segments"`` (one pick per segment, above).

    Example::

        >>> sampler = DASampler(num_samples=8)
        >>> out = sampler(torch.rand(2, 1, 32, 28, 28))
        >>> out.frames.shape, out.indices.shape
        (torch.Size([2, 1, 8, 28, 28]), torch.Size([2, 8]))
    """

    def __init__(
        self,
        num_samples: int,
        in_channels: int = 1,
        num_heads: int = 4,
        hidden_size: int = 32,
        tau0: float = DEFAULT_TAU0,
        base_score: str = "learned",
        temporal_context: str = "conv",
        context_kernel: int = 5,
        row_queries: bool = True,
        base_prior: str = "variance",
        embedding_size: int = 16,
        kernel_size: int = 3,
        feature_size: int = 16,
        coverage: str = "none",
    ) -> None:
        super().__init__(num_samples)
        if embedding_size < 0:
            raise ValueError(f"embedding_size must be >= 0, got {embedding_size}.")
        if feature_size < 0 or 0 < feature_size < kernel_size:
            raise ValueError(f"feature_size must be 0 or >= kernel_size ({kernel_size}), got {feature_size}.")
        self.feature_size = feature_size
        if coverage not in COVERAGES:
            raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}.")
        self.coverage = coverage
        self.in_channels = in_channels
        self.features = FrameFeatures(kernel_size=kernel_size)
        self.embedding = FrameEmbedding(in_channels, embedding_size) if embedding_size > 0 else None
        self.attention = SamplingAttention(
            in_features=FrameFeatures.num_features + embedding_size,
            num_samples=num_samples,
            num_heads=num_heads,
            hidden_size=hidden_size,
            tau0=tau0,
            base_score=base_score,
            temporal_context=temporal_context,
            context_kernel=context_kernel,
            row_queries=row_queries,
            base_prior=base_prior,
        )
        self.norm = nn.LayerNorm(FrameFeatures.num_features + embedding_size)

    def downsampled_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The frames of ``(B, C, T, H, W)`` average-pooled to at most ``feature_size`` pixels a side, as
        ``(B * T, C, h, w)``: what the hand-made features and the embedding are computed on."""
        b, c, t, h, w = x.shape
        if self.feature_size == 0 or (h <= self.feature_size and w <= self.feature_size):
            return x.transpose(1, 2).reshape(b * t, c, h, w)
        size = (min(h, self.feature_size), min(w, self.feature_size))
        if torch.jit.is_scripting() or (h % size[0] == 0 and w % size[1] == 0):  # windows that do not overlap
            return F.adaptive_avg_pool3d(x, (t, size[0], size[1])).transpose(1, 2).reshape(b * t, c, size[0], size[1])
        return pooled_frames(x, size[0], size[1])

    def forward(self, x: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> SamplerOutput:
        """``x``: ``(B, C, T, H, W)`` with ``T >= num_samples``; ``frame_mask``: ``(B, T)`` bool, the real frames (see
        :py:class:`FrameSampler`: the scores of the other frames are set to ``-inf`` before the picks; the returned
        ``logits`` are those before this mask); returns a :py:class:`SamplerOutput`."""
        self.validate(x, frame_mask)
        b, t = x.shape[0], x.shape[2]
        frames = self.downsampled_frames(x)  # (B * T, C, h, w), computed once for the features and the embedding
        raw = self.features.frame_features(frames).reshape(b, t, -1)  # (B, T, 3)
        feats = torch.log(raw + 1e-6)
        std, mean = torch.std_mean(feats, dim=1, keepdim=True, unbiased=False)
        feats = (feats - mean) / (std + 1e-3)
        if self.embedding is not None:
            feats = torch.cat([feats, self.embedding.embed_frames(frames).reshape(b, t, -1)], dim=-1)
        logits, tau = self.attention(self.norm(feats), raw[..., 0], feats[..., 0])
        logits = tau.view(-1, 1, 1) * logits  # (B, k, T), returned as they are: the masks and noise go on scores
        scores = logits
        pickable = None if frame_mask is None else pickable_frames(frame_mask, self.num_samples)
        if self.coverage == "segments":
            excluded = segment_mask(self.num_samples, scores.shape[-1], scores.device, pickable)
            scores = scores.masked_fill(excluded, float("-inf"))
        elif pickable is not None:
            scores = scores.masked_fill(~pickable[:, None, :], float("-inf"))
        if self.training:
            scores = scores + gumbel_noise(list(scores.shape), scores)
        if self.training or torch.jit.is_tracing() or (torch.is_grad_enabled() and scores.requires_grad):
            weights, indices = straight_through_topk(scores)
        else:  # inference: the same picks without the k rounds of straight-through rows
            weights, indices = hard_topk(scores)
        return SamplerOutput(self.gather_frames(x, weights, indices), weights, indices, logits, tau)
