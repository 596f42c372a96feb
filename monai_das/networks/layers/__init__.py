from __future__ import annotations

from .area_pool import area_downsample
from .straight_through import gumbel_noise, sort_picks, straight_through_pick, straight_through_topk

__all__ = ["area_downsample", "gumbel_noise", "sort_picks", "straight_through_pick", "straight_through_topk"]
