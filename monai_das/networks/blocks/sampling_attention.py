"""The DAS multi-head sampling attention: k rows of sampling logits and an input-dependent temperature."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

__all__ = ["DEFAULT_TAU0", "SamplingAttention"]

#: the base temperature of DAS, the one default of :py:class:`SamplingAttention` and ``DASampler``: the value
#: ``DASampler`` has passed since commit 3dbfb15 (tau0 is not in the state dict, so this keeps the picks of checkpoints
#: built with the default; only a ``SamplingAttention`` built alone changes, from 1.0)
DEFAULT_TAU0 = 3.0

BASE_SCORES = ("learned", "variance")
TEMPORAL_CONTEXTS = ("conv", "none")
BASE_PRIORS = ("variance", "none")


class SamplingAttention(nn.Module):
    """Maps per-frame features ``F`` to the sampling logits ``A`` and temperature ``tau`` of DAS.

    Following the DAS specification (`arXiv 2510.12376 <https://arxiv.org/abs/2510.12376>`_)::

        s_h = Softplus(MLP_h(pool_T(F)))                   (B, k), one MLP per head h = 1..H
        A_h[:, j, :] = a_base * s_h[:, j]                  (B, k, T)
        A = mean_h A_h
        tau = tau0 * (0.5 + sigmoid(MLP_temp(pool_T(F))))  (B,)

    Each row of ``A_h`` is a positive multiple of ``a_base``, so with the literal form every row ranks frames the
    same way and the picks are the top-k of ``a_base``. To make the ranking learnable, by default:

    * ``base_score="learned"``: ``a_base = Softplus(prior_t + w . ctx_t + b)`` is scored by a small network from
      the embedded features with temporal context ``ctx`` (a residual 1D convolution across frames,
      ``temporal_context="conv"``), so a frame is judged against its neighbours. With ``base_prior="variance"``,
      ``prior_t`` is the log frame variance standardised over T and ``w, b`` start at zero: the sampler starts from
      the paper's variance ranking (it finds frames that carry structure from the first step, so the backbone gets
      useful frames to learn from) and learns how to depart from it; ``base_prior="none"`` starts from a random
      ranking. ``base_score="variance"`` is the literal form: the frame variance divided by its maximum over T;
    * ``row_queries=True``: every head adds ``q_{h,j} . key_h(ctx_t) / sqrt(d)`` with a learned query per row ``j``
      (near zero at the start), so the k rows can learn to prefer different frames.

    ``pool_T`` concatenates the mean and the max over frames of the embedded features. The temperature multiplies
    the logits (``softmax(tau * A + G)``): a larger ``tau`` gives a sharper distribution.

    Args:
        in_features: number of per-frame features ``d``.
        num_samples: number of rows ``k``.
        num_heads: number of heads ``H``.
        hidden_size: width of the embedding, the MLPs and the context convolution.
        tau0: base temperature ``tau0`` (> 0), default :py:data:`DEFAULT_TAU0`.
        base_score: ``"learned"`` or ``"variance"``; ``"variance"`` reads feature 0 of the raw features.
        temporal_context: ``"conv"`` (kernel ``context_kernel``) or ``"none"``.
        context_kernel: odd kernel size of the temporal convolution.
        row_queries: add the per-row query term described above.
        base_prior: ``"variance"`` or ``"none"``, the starting point of the learned base score.

    Shape:
        ``forward(features, raw_variance, variance_prior=None)`` with ``features`` ``(B, T, d)`` (normalised) and
        ``raw_variance`` ``(B, T)`` (non-negative), returns ``(A, tau)`` of shapes ``(B, k, T)`` and ``(B,)``.
        ``variance_prior`` ``(B, T)``, when given, is ``prior_t`` already computed (the log variance standardised
        over T, ``(v - mean_T v) / (std_T v + 1e-3)`` with ``v = log(raw_variance + 1e-6)``; DAS has it as its first
        normalised feature), so it is not computed twice.
    """

    def __init__(
        self,
        in_features: int,
        num_samples: int,
        num_heads: int = 4,
        hidden_size: int = 32,
        tau0: float = DEFAULT_TAU0,
        base_score: str = "learned",
        temporal_context: str = "conv",
        context_kernel: int = 5,
        row_queries: bool = True,
        base_prior: str = "variance",
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("num_samples", num_samples), ("num_heads", num_heads)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        if hidden_size < num_heads or hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be a positive multiple of num_heads ({num_heads}).")
        if tau0 <= 0:
            raise ValueError(f"tau0 must be > 0, got {tau0}.")
        if context_kernel < 1 or context_kernel % 2 == 0:
            raise ValueError(f"context_kernel must be an odd integer >= 1, got {context_kernel}.")
        self.base_score = look_up_option(base_score, BASE_SCORES)
        self.temporal_context = look_up_option(temporal_context, TEMPORAL_CONTEXTS)
        self.base_prior = look_up_option(base_prior, BASE_PRIORS)
        self.num_samples = num_samples
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.tau0 = tau0
        self.row_queries = row_queries

        self.embed = nn.Sequential(nn.Linear(in_features, hidden_size), nn.GELU())
        self.context = nn.Conv1d(hidden_size, hidden_size, context_kernel, padding=context_kernel // 2)
        self.base = nn.Linear(hidden_size, 1)
        self.scales = nn.ModuleList(
            [nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, num_samples))
             for _ in range(num_heads)]
        )
        self.temperature = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, 1))
        self.keys = nn.Linear(hidden_size, hidden_size)
        self.queries = nn.Parameter(torch.randn(num_heads, num_samples, self.head_dim) * 0.01)
        if self.base_prior == "variance":
            nn.init.zeros_(self.base.weight)
            nn.init.zeros_(self.base.bias)

    def forward(
        self, features: torch.Tensor, raw_variance: torch.Tensor, variance_prior: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = features.shape
        ctx = self.embed(features)  # (B, T, hidden)
        if self.temporal_context == "conv":
            ctx = ctx + F.gelu(self.context(ctx.transpose(1, 2)).transpose(1, 2))
        pooled = torch.cat([ctx.mean(dim=1), ctx.amax(dim=1)], dim=-1)  # (B, 2 * hidden)

        if self.base_score == "learned":
            score = self.base(ctx).squeeze(-1)  # (B, T)
            if self.base_prior == "variance":
                if variance_prior is None:
                    log_var = torch.log(raw_variance + 1e-6)
                    variance_prior = (log_var - log_var.mean(dim=1, keepdim=True)) / (
                        log_var.std(dim=1, keepdim=True, unbiased=False) + 1e-3
                    )
                score = score + variance_prior
            a_base = F.softplus(score)  # (B, T)
        else:
            a_base = raw_variance / raw_variance.amax(dim=1, keepdim=True).clamp_min(1e-12)
        # the H scale MLPs as one matrix product per layer, their weights stacked (the parameters stay per head)
        first_weight = torch.cat([mlp[0].weight for mlp in self.scales])  # (H * hidden, 2 * hidden)
        first_bias = torch.cat([mlp[0].bias for mlp in self.scales])
        second_weight = torch.stack([mlp[2].weight for mlp in self.scales])  # (H, k, hidden)
        second_bias = torch.stack([mlp[2].bias for mlp in self.scales]).unsqueeze(1)  # (H, 1, k)
        hidden = F.gelu(F.linear(pooled, first_weight, first_bias)).reshape(b, self.num_heads, -1)  # (B, H, hidden)
        scales = torch.baddbmm(second_bias, hidden.transpose(0, 1), second_weight.transpose(1, 2))  # (H, B, k)
        # mean_h (s_h a_base + q_h . key_h / sqrt(dh)) = mean_h(s_h) a_base + sum_h q_h . key_h / (H sqrt(dh))
        row_scales = F.softplus(scales).mean(dim=0)  # (B, k)
        if self.row_queries:
            queries = self.queries.permute(0, 2, 1).reshape(-1, self.num_samples)  # (H * dh, k)
            query_term = torch.matmul(self.keys(ctx), queries).transpose(1, 2)  # (B, k, T)
            scale = 1.0 / (self.num_heads * math.sqrt(self.head_dim))
            logits = torch.baddbmm(query_term, row_scales[:, :, None], a_base[:, None, :], beta=scale)
        else:
            logits = row_scales[:, :, None] * a_base[:, None, :]  # (B, k, T)
        tau = self.tau0 * (0.5 + torch.sigmoid(self.temperature(pooled).squeeze(-1)))  # (B,)
        return logits, tau
