"""Differentiable picking of frames: Gumbel noise and straight-through one-hot rows without replacement."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

__all__ = ["gumbel_noise", "one_hot_rows", "straight_through_pick", "straight_through_topk", "sort_picks", "hard_topk"]


def one_hot_rows(indices: torch.Tensor, num_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """``(..., k)`` long indices -> ``(..., k, num_frames)`` one-hot rows of ``dtype``. Unlike ``F.one_hot`` it does
    not scan the indices for their range first (a host sync on an accelerator, and a cost on the CPU)."""
    shape = list(indices.shape) + [num_frames]
    return torch.zeros(shape, dtype=dtype, device=indices.device).scatter_(-1, indices.unsqueeze(-1), 1.0)


def gumbel_noise(shape: list[int], like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw standard Gumbel(0, 1) noise of ``shape`` with the dtype and device of ``like``."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
    if torch.jit.is_scripting():  # TorchScript has no torch.finfo: float32's smallest normal number
        tiny = 1.1754943508222875e-38
    else:
        tiny = torch.finfo(like.dtype).tiny
    exponential = (-torch.log(u.clamp_min(tiny))).clamp_min(tiny)
    return -torch.log(exponential)


def straight_through_pick(scores: torch.Tensor, taken: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one frame per input among those not yet taken.

    Args:
        scores: ``(B, T)`` perturbed, temperature-scaled logits of one sampling row.
        taken: ``(B, T)`` bool, frames picked by earlier rows (masked out).

    Returns:
        ``(row, index)``: ``row`` is ``(B, T)``, exactly one-hot in the forward pass and carrying the gradient of
        ``softmax(scores)`` (restricted to the frames not taken) in the backward pass; ``index`` is ``(B,)`` long.
    """
    masked = scores.masked_fill(taken, float("-inf"))
    soft = F.softmax(masked, dim=-1)
    index = masked.argmax(dim=-1)
    hard = one_hot_rows(index, scores.shape[-1], soft.dtype)
    return hard - soft.detach() + soft, index


def sort_picks(rows: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder the ``k`` rows of a sampling matrix ``(B, k, T)`` and indices ``(B, k)`` into temporal order."""
    indices, order = indices.sort(dim=1)
    rows = rows.gather(1, order.unsqueeze(-1).expand(-1, -1, rows.shape[-1]))
    return rows, indices


def straight_through_topk(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn ``k`` rows of scores into ``k`` distinct picks with a straight-through estimator.

    Row ``j`` picks the best frame that rows ``0..j-1`` did not take, so the ``k`` picks are distinct. When all rows
    hold the same Gumbel-perturbed scores this is Gumbel top-k, i.e. sampling ``k`` frames without replacement.

    Args:
        scores: ``(B, k, T)`` perturbed, temperature-scaled logits, ``k <= T``.

    Returns:
        ``(P, indices)``: sampling matrix ``(B, k, T)`` with one-hot rows (soft gradient) and ``(B, k)`` long
        indices, both sorted into temporal order.
    """
    taken = torch.zeros(scores.shape[0], scores.shape[2], dtype=torch.bool, device=scores.device)
    rows = []
    picks = []
    for j in range(scores.shape[1]):
        row, index = straight_through_pick(scores[:, j], taken)
        # a tensor source: a Python bool value makes torch.jit.trace fail on aten::scatter
        taken = taken.scatter(1, index.unsqueeze(1), torch.ones_like(taken[:, :1]))
        rows.append(row)
        picks.append(index)
    return sort_picks(torch.stack(rows, dim=1), torch.stack(picks, dim=1))


def hard_topk(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The picks of :py:func:`straight_through_topk`, exactly, for inference: no gradient and a few tensor operations.

    Row ``j`` takes the best frame that rows ``0..j-1`` did not take (the first one on ties, as ``argmax``): a greedy
    assignment, sequential by nature. The rows are sorted once (a stable descending sort, so ties keep the lower
    index first) and the walk down the sorted rows runs on Python integers: row ``j`` takes the first of its top
    ``j + 1`` frames not taken yet (one of them is free, as only ``j`` are taken).

    The walk is not vectorised on purpose. A vectorised exact form exists (update all rows at once, ``p_j = the first
    frame in row j's order that is none of p_0..p_{j-1}``, until nothing changes: its fixed point is the greedy
    assignment), but DAS's rows rank the frames much alike, so their picks depend on each other in long chains: at
    k = T / 2 it took about k / 2 rounds of tensor operations, and measured on the CPU (1 thread, batch 1, T = 64) it
    was several times slower than this walk.

    Args:
        scores: ``(B, k, T)`` temperature-scaled logits, ``k <= T``.

    Returns:
        ``(P, indices)``: the exactly one-hot sampling matrix ``(B, k, T)`` (no straight-through gradient) and the
        ``(B, k)`` long indices, both in temporal order.
    """
    b, k, t = scores.shape
    order = torch.jit.annotate(
        List[List[List[int]]], scores.detach().argsort(dim=-1, descending=True, stable=True)[:, :, :k].tolist()
    )
    picks: List[List[int]] = []
    for rows in order:
        taken = [False] * t
        chosen: List[int] = []
        for j in range(k):
            for frame in rows[j][: j + 1]:
                if not taken[frame]:
                    taken[frame] = True
                    chosen.append(frame)
                    break
        chosen.sort()
        picks.append(chosen)
    indices = torch.tensor(picks, dtype=torch.long, device=scores.device)
    return one_hot_rows(indices, t, scores.dtype), indices
