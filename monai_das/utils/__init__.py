"""Small helpers shared by the data, handlers and apps of monai_das (no dependency beyond torch and numpy)."""

from __future__ import annotations

from .atomic_file import atomic_write
from .class_indices import to_class_indices

__all__ = ["atomic_write", "to_class_indices"]
