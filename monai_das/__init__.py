"""monai_das: per-input adaptive slice/frame subsampling (DAS) and its peers as MONAI components."""

from __future__ import annotations

__version__ = "0.1.0"

from . import networks, transforms

__all__ = ["networks", "transforms", "__version__"]
