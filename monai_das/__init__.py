"""monai_das: per-input adaptive slice/frame subsampling (DAS) and its peers as MONAI components."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from . import networks, transforms

# subpackages with optional dependencies (ignite, tensorboard, av, medmnist) load on first use, so that
# ``import monai_das`` needs only monai, torch and numpy, and ``monai_das.handlers`` works after ``import monai_das``
# (as bundle configs write it)
_LAZY_SUBPACKAGES = ("apps", "data", "engines", "handlers", "utils", "visualize")

__all__ = ["networks", "transforms", "__version__", *_LAZY_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'monai_das' has no attribute '{name}'")
