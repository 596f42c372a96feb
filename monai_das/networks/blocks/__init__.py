from __future__ import annotations

from .frame_embedding import FrameEmbedding
from .frame_features import FrameFeatures
from .sampling_attention import SamplingAttention

__all__ = ["FrameEmbedding", "FrameFeatures", "SamplingAttention"]
