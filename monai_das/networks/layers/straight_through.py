"""Differentiable picking of frames: Gumbel noise and straight-through one-hot rows without replacement."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gumbel_noise", "straight_through_pick", "straight_through_topk", "sort_picks", "hard_topk"]


def gumbel_noise(shape: list[int], like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw standard Gumbel(0, 1) noise of ``shape`` with the dtype and device of ``like``."""
    u = torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)
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
    hard = F.one_hot(index, scores.shape[-1]).to(soft.dtype)
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
    """The picks of :py:func:`straight_through_topk`, exactly, for inference: no gradient and a few operations.

    Row ``j`` takes the best frame that rows ``0..j-1`` did not take (the first one on ties, as ``argmax``). This
    greedy assignment is sequential by nature (each row's pick depends on all earlier ones), so instead of ``k``
    rounds of masked softmax, argmax and scatter on tensors, the rows are sorted once (a stable descending sort, so
    ties keep the lower index first) and the k walks down the sorted lists run on Python integers: row ``j`` takes
    the first of its top ``j + 1`` frames not taken yet (one of them is free: only ``j`` are taken).

    Args:
        scores: ``(B, k, T)`` temperature-scaled logits, ``k <= T``.

    Returns:
        ``(P, indices)``: the exactly one-hot sampling matrix ``(B, k, T)`` (no straight-through gradient) and the
        ``(B, k)`` long indices, both in temporal order.
    """
    b, k, t = scores.shape
    order = scores.detach().argsort(dim=-1, descending=True, stable=True)[:, :, :k].tolist()
    picks = []
    for rows in order:
        taken: set[int] = set()
        for j, row in enumerate(rows):
            frame = next(f for f in row[: j + 1] if f not in taken)
            taken.add(frame)
        picks.append(sorted(taken))
    indices = torch.tensor(picks, dtype=torch.long, device=scores.device)
    return F.one_hot(indices, t).to(scores.dtype), indices
