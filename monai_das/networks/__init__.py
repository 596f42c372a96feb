from __future__ import annotations

from . import blocks, layers, nets

__all__ = ["blocks", "layers", "nets"]
