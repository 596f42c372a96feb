"""Build any sampler from its name, so a bundle switches method with one override."""

from __future__ import annotations

from monai.utils import look_up_option

from monai_das.networks.nets.adps import ADPSampler
from monai_das.networks.nets.das import DASampler
from monai_das.networks.nets.dps import DPSampler
from monai_das.networks.nets.fixed_samplers import FullSequence, RandomSampler, UniformSampler
from monai_das.networks.nets.sampler_base import FrameSampler

__all__ = ["SAMPLER_NAMES", "get_sampler", "samples_for_ratio"]

SAMPLER_NAMES = ("das", "das_segments", "dps", "adps", "uniform", "random", "full")


def samples_for_ratio(num_frames: int, ratio: float) -> int:
    """k for a sampling ratio: ``max(1, round(ratio * num_frames))``; ``ratio`` must be in (0, 1]."""
    if not 0 < ratio <= 1:
        raise ValueError(f"sampling ratio must be in (0, 1], got {ratio}.")
    return max(1, round(ratio * num_frames))


def get_sampler(
    name: str, num_samples: int, num_frames: int | None = None, in_channels: int = 1, seed: int | None = 0, **kwargs
) -> FrameSampler:
    """Build the sampler called ``name``.

    Args:
        name: one of ``"das"``, ``"das_segments"`` (DAS with ``coverage="segments"``), ``"dps"``, ``"adps"``, ``"uniform"``, ``"random"``, ``"full"``.
        num_samples: k, the frames to keep (ignored by ``"full"``).
        num_frames: T. Required by ``"dps"`` and ``"adps"`` (their logits have one entry per frame); optional for the
            others, which adapt to the T of each input: when given, ``num_samples <= num_frames`` is checked here, so
            a config that asks for more frames than its sequences have fails when it is built (bundle configs pass
            it to every sampler, so that one override switches the method).
        in_channels: input channels (``"das"``, ``"adps"``).
        seed: seed of ``"random"``.
        kwargs: any other constructor argument of the chosen sampler.

    Raises:
        ValueError: for an unknown ``name`` (the message lists the valid names), a missing ``num_frames``, or
            ``num_samples > num_frames``.
    """
    name = look_up_option(str(name).lower(), SAMPLER_NAMES)
    if name in ("dps", "adps") and num_frames is None:
        raise ValueError(f"get_sampler('{name}') needs num_frames (the sequence length T).")
    fits_any_length = name not in ("full", "dps", "adps")  # DPS and A-DPS check num_frames themselves
    if fits_any_length and num_frames is not None and isinstance(num_samples, int) and num_samples > num_frames:
        raise ValueError(
            f"num_samples ({num_samples}) must be <= num_frames ({num_frames}), the frames of each sequence "
            f"(get_sampler('{name}'))."
        )
    if name in ("das", "das_segments"):
        coverage = "segments" if name == "das_segments" else "none"
        return DASampler(num_samples, in_channels=in_channels, coverage=coverage, **kwargs)
    if name == "dps":
        return DPSampler(num_samples, num_frames, **kwargs)  # type: ignore[arg-type]
    if name == "adps":
        return ADPSampler(num_samples, num_frames, in_channels=in_channels, **kwargs)  # type: ignore[arg-type]
    if name == "uniform":
        return UniformSampler(num_samples, **kwargs)
    if name == "random":
        return RandomSampler(num_samples, seed=seed, **kwargs)
    return FullSequence(**kwargs)  # keeps every frame: num_samples does not apply
