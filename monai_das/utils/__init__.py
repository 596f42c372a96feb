"""Small helpers shared by the data, handlers and apps of monai_das (no dependency beyond torch and numpy)."""

from __future__ import annotations

from .atomic_file import atomic_write
from .class_indices import to_class_indices
from .decision import DECISION_THRESHOLD_KEY, choose_threshold, decide

__all__ = ["DECISION_THRESHOLD_KEY", "atomic_write", "choose_threshold", "decide", "to_class_indices"]
