from __future__ import annotations

from .adps import ADPSampler
from .classifier import SubsampledClassifier, backbone_width
from .das import DASampler
from .dps import DPSampler
from .factory import SAMPLER_NAMES, get_sampler, samples_for_ratio
from .fixed_samplers import FullSequence, RandomSampler, UniformSampler
from .efficientnet_lite import EfficientNetLite0
from .mobilenet_v3 import MobileNetV3Small
from .sampler_base import FrameSampler, SamplerOutput

__all__ = [
    "ADPSampler",
    "DASampler",
    "DPSampler",
    "EfficientNetLite0",
    "FrameSampler",
    "FullSequence",
    "MobileNetV3Small",
    "RandomSampler",
    "SAMPLER_NAMES",
    "SamplerOutput",
    "SubsampledClassifier",
    "UniformSampler",
    "backbone_width",
    "get_sampler",
    "samples_for_ratio",
]
