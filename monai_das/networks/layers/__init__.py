from __future__ import annotations

from .straight_through import gumbel_noise, hard_topk, one_hot_rows, sort_picks, straight_through_pick, straight_through_topk

__all__ = ["gumbel_noise", "hard_topk", "one_hot_rows", "sort_picks", "straight_through_pick", "straight_through_topk"]
