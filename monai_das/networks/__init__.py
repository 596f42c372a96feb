from __future__ import annotations

from . import blocks, layers, nets
from .utils import unwrap_network

__all__ = ["blocks", "layers", "nets", "unwrap_network"]
