"""Synthetic frame sequences whose class is visible in only a few frames.

This is the project's demonstration of why input-adaptive frame sampling exists. Every frame of a
sequence is smooth random texture plus pixel noise; the class is drawn only in ``evidence_frames``
consecutive frames at a random temporal position (and a random in-plane position) per sample:

* class 0: a bright filled disc,
* class 1: a ring (a hollow disc) scaled to the same mass of added intensity, so the frame mean
  does not tell the classes apart,
* class 2 (optional): a filled square, class 3 (optional): a filled diamond; each scaled to the same
  added mass as the disc.

Disc against ring is the default pair because a 2D backbone learns it from a few hundred frames;
disc against square (same area) needs far more data.

No other frame carries information about the label. With ``num_frames=32`` and ``k=8`` picks, a
uniform sampler that looks at frames ``floor((i + 0.5) * 4)`` hits one of two consecutive evidence
frames in about half of the samples, so with two classes its accuracy is bounded by about 75 %; a
sampler that looks at per-frame Sobel edge energy (and, less sharply, variance) can find the evidence
frames, because the shape's edges carry far more edge energy than the smooth texture (the per-frame
Laplacian magnitude is dominated by the pixel noise and separates them only weakly).

With ``distractors=True`` each sample also has ``num_distractors`` events of ``evidence_frames``
consecutive frames that show a high-contrast cross, identical for all classes and brighter than the
evidence shapes. Such frames have the *highest* edge energy of the sequence, so "top-k frames by edge
energy" only keeps the evidence when ``k >= evidence_frames * (1 + num_distractors)`` (true for the
default ``k = 8``); with ``k = evidence_frames`` a selector has to learn to prefer the evidence over
the distractors. Measured at the defaults (mean squared Sobel magnitude per frame): plain frames
about 0.07, evidence frames about 0.17, distractor frames about 0.37 (and a higher Sobel-to-variance
ratio, about 21 against 14), so a frame score that is not monotone in edge energy separates them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import apply_transform
from torch.utils.data import Dataset

from monai_das.data.indexing import resolve_index

__all__ = [
    "SYNTHETIC_CLASS_NAMES",
    "make_synthetic_sequences",
    "synthetic_evidence_mask",
    "evidence_hit_rate",
    "SyntheticSequenceDataset",
    "save_synthetic_npz",
]

#: Names of the class shapes, in label order (``num_classes`` takes the first entries).
SYNTHETIC_CLASS_NAMES: tuple[str, ...] = ("disc", "ring", "square", "diamond")

_BACKGROUND = 0.3


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_float(name: str, value: Any, minimum: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= {minimum}, got {value!r}.") from None
    if not np.isfinite(out) or out < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}.")
    return out


class _Config:
    """Validated generation parameters (internal)."""

    def __init__(
        self,
        num_frames: int,
        size: int,
        evidence_frames: int,
        num_classes: int,
        distractors: bool,
        num_distractors: int,
        texture_std: float,
        noise_std: float,
        shape_amplitude: float,
        distractor_amplitude: float,
    ) -> None:
        self.num_frames = _check_int("num_frames", num_frames, 1)
        self.size = _check_int("size", size, 12)
        self.evidence_frames = _check_int("evidence_frames", evidence_frames, 1)
        self.num_classes = _check_int("num_classes", num_classes, 2)
        if self.num_classes > len(SYNTHETIC_CLASS_NAMES):
            raise ValueError(
                f"num_classes must be between 2 and {len(SYNTHETIC_CLASS_NAMES)} "
                f"(shapes {SYNTHETIC_CLASS_NAMES}), got {num_classes!r}."
            )
        self.distractors = bool(distractors)
        self.num_distractors = _check_int("num_distractors", num_distractors, 0) if self.distractors else 0
        needed = self.evidence_frames * (1 + self.num_distractors)
        if needed > self.num_frames:
            raise ValueError(
                f"num_frames={num_frames} is too small for evidence_frames={evidence_frames} plus "
                f"{self.num_distractors} distractor event(s) of the same length: need at least {needed} frames."
            )
        self.texture_std = _check_float("texture_std", texture_std)
        self.noise_std = _check_float("noise_std", noise_std)
        self.shape_amplitude = _check_float("shape_amplitude", shape_amplitude)
        self.distractor_amplitude = _check_float("distractor_amplitude", distractor_amplitude)
        self.radius = max(2, int(round(5 * self.size / 32)))
        self.masks = _class_masks(self.radius, self.num_classes)
        self.cross = _cross_mask(self.radius)


def _class_masks(radius: int, num_classes: int) -> list[tuple[np.ndarray, float]]:
    """Boolean masks of the class shapes (odd square canvases) and their amplitude scales."""
    half = radius + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    disc = xx**2 + yy**2 <= radius**2
    side = int(round(np.sqrt(disc.sum())))
    lo = -(side // 2)
    square = (xx >= lo) & (xx < lo + side) & (yy >= lo) & (yy < lo + side)
    diamond = np.abs(xx) + np.abs(yy) <= int(round(np.sqrt(disc.sum() / 2.0)))
    ring = (xx**2 + yy**2 <= (radius + 1.5) ** 2) & (xx**2 + yy**2 > (radius - 1.0) ** 2)
    shapes = [disc, ring, square, diamond][:num_classes]
    ref = float(disc.sum())
    # same added mass as the disc: mean intensity of an evidence frame does not depend on the class
    return [(m, ref / float(m.sum())) for m in shapes]


def _cross_mask(radius: int) -> np.ndarray:
    half = radius + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    arm = max(1, radius // 3)
    return ((np.abs(xx) <= arm) & (np.abs(yy) <= radius + 1)) | ((np.abs(yy) <= arm) & (np.abs(xx) <= radius + 1))


def _smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int, int], sigma: tuple[float, float, float]
) -> np.ndarray:
    """Gaussian-filtered white noise (periodic, via FFT), zero mean and unit standard deviation."""
    noise = rng.standard_normal(shape)
    freq = np.fft.fftn(noise)
    gain = np.ones(shape)
    for axis, (n, s) in enumerate(zip(shape, sigma)):
        f = np.fft.fftfreq(n)
        g = np.exp(-2.0 * (np.pi * f * s) ** 2)
        view = [1, 1, 1]
        view[axis] = n
        gain = gain * g.reshape(view)
    out = np.real(np.fft.ifftn(freq * gain))
    out -= out.mean()
    std = out.std()
    return out / std if std > 0 else out


def _stamp(frame: np.ndarray, mask: np.ndarray, cy: int, cx: int, value: float) -> None:
    half = mask.shape[0] // 2
    frame[cy - half : cy + half + 1, cx - half : cx + half + 1] += value * mask


def _sample_one(rng: np.random.Generator, label: int, cfg: _Config) -> tuple[np.ndarray, int]:
    """One sequence ``(T, H, W)`` float32 in [0, 1] and its evidence start frame."""
    t, s, e = cfg.num_frames, cfg.size, cfg.evidence_frames
    scale = s / 32.0
    texture = _smooth_noise(rng, (t, s, s), (1.5, 2.5 * scale, 2.5 * scale))
    vol = _BACKGROUND + cfg.texture_std * texture + cfg.noise_std * rng.standard_normal((t, s, s))

    # temporal placement: evidence and distractor events never overlap
    start = int(rng.integers(0, t - e + 1))
    occupied = np.zeros(t, dtype=bool)
    occupied[start : start + e] = True
    distractor_starts = []
    for _ in range(cfg.num_distractors):
        free = [i for i in range(t - e + 1) if not occupied[i : i + e].any()]
        if not free:  # cannot happen for the checked sizes, but never loop forever
            break
        d = int(free[int(rng.integers(0, len(free)))])
        occupied[d : d + e] = True
        distractor_starts.append(d)

    half = cfg.masks[0][0].shape[0] // 2
    mask, gain = cfg.masks[label]
    cy, cx = (int(v) for v in rng.integers(half, s - half, size=2))
    for i in range(start, start + e):
        _stamp(vol[i], mask, cy, cx, cfg.shape_amplitude * gain)
    for d in distractor_starts:
        dy, dx = (int(v) for v in rng.integers(half, s - half, size=2))
        for i in range(d, d + e):
            _stamp(vol[i], cfg.cross, dy, dx, cfg.distractor_amplitude)
    return np.clip(vol, 0.0, 1.0).astype(np.float32), start


def _balanced_labels(num_samples: int, num_classes: int, key: Sequence[int]) -> np.ndarray:
    labels = np.arange(num_samples, dtype=np.int64) % num_classes
    return np.random.default_rng([*key, 0, 0]).permutation(labels)


def _check_seed(seed: Any) -> int:
    return _check_int("seed", seed, 0)


def make_synthetic_sequences(
    num_samples: int,
    num_frames: int = 32,
    size: int = 32,
    evidence_frames: int = 2,
    num_classes: int = 2,
    seed: int = 0,
    distractors: bool = True,
    num_distractors: int = 1,
    texture_std: float = 0.07,
    noise_std: float = 0.03,
    shape_amplitude: float = 0.3,
    distractor_amplitude: float = 0.45,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make ``num_samples`` sequences whose class is visible only in ``evidence_frames`` frames.

    Sample ``i`` depends only on ``(seed, i)`` and its label; labels are an exactly balanced
    (up to ``num_samples % num_classes``) random permutation drawn from ``seed``.

    Args:
        num_samples: number of sequences N (>= 1).
        num_frames: frames per sequence T.
        size: frame height and width H = W (>= 12). Shapes scale with it (disc radius ``5 * size / 32``).
        evidence_frames: number of consecutive frames E that show the class shape.
        num_classes: 2 to 4; shapes in :data:`SYNTHETIC_CLASS_NAMES` order.
        seed: non-negative integer seed; equal seeds give equal outputs.
        distractors: add class-independent high-contrast crosses (see the module docstring).
        num_distractors: number of distractor events (each E consecutive frames) when ``distractors``.
        texture_std: standard deviation of the smooth background texture.
        noise_std: standard deviation of the per-pixel white noise.
        shape_amplitude: intensity added by the disc (other class shapes are scaled to the same mass).
        distractor_amplitude: intensity added by the distractor cross.

    Returns:
        ``(images, labels, evidence_start)``: float32 ``(N, 1, T, H, W)`` in [0, 1], int64 ``(N,)``,
        int64 ``(N,)`` (the first evidence frame; evidence frames are ``start .. start + E - 1``).

    Raises:
        ValueError: for a non-positive count, too few frames for the events, an unsupported
            ``num_classes`` or a negative amplitude/noise.
    """
    n = _check_int("num_samples", num_samples, 1)
    seed = _check_seed(seed)
    cfg = _Config(
        num_frames, size, evidence_frames, num_classes, distractors, num_distractors,
        texture_std, noise_std, shape_amplitude, distractor_amplitude,
    )  # fmt: skip
    return _synthesize(n, (seed,), cfg)


def _synthesize(n: int, key: Sequence[int], cfg: _Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = _balanced_labels(n, cfg.num_classes, key)
    images = np.empty((n, 1, cfg.num_frames, cfg.size, cfg.size), dtype=np.float32)
    starts = np.empty(n, dtype=np.int64)
    for i in range(n):
        images[i, 0], starts[i] = _sample_one(np.random.default_rng([*key, 1, i]), int(labels[i]), cfg)
    return images, labels, starts


def synthetic_evidence_mask(
    evidence_start: np.ndarray | torch.Tensor, num_frames: int, evidence_frames: int = 2
) -> np.ndarray:
    """Boolean ``(N, T)`` mask of the evidence frames.

    Args:
        evidence_start: ``(N,)`` first evidence frame per sample.
        num_frames: T.
        evidence_frames: E.

    Returns:
        bool array ``(N, T)``, True at frames ``start .. start + E - 1``.
    """
    start = np.asarray(torch.as_tensor(evidence_start).cpu()).reshape(-1, 1)
    t = np.arange(_check_int("num_frames", num_frames, 1)).reshape(1, -1)
    return (t >= start) & (t < start + _check_int("evidence_frames", evidence_frames, 1))


def evidence_hit_rate(
    indices: np.ndarray | torch.Tensor, evidence_start: np.ndarray | torch.Tensor, evidence_frames: int = 2
) -> float:
    """Fraction of samples for which at least one picked frame is an evidence frame.

    Args:
        indices: ``(N, k)`` picked frame indices (e.g. a sampler's recorded indices).
        evidence_start: ``(N,)`` first evidence frame per sample.
        evidence_frames: E.

    Returns:
        hit rate in [0, 1].

    Raises:
        ValueError: if ``indices`` is not 2D or its first dimension differs from ``evidence_start``.
    """
    idx = np.asarray(torch.as_tensor(indices).detach().cpu())
    start = np.asarray(torch.as_tensor(evidence_start).detach().cpu()).reshape(-1)
    if idx.ndim != 2 or idx.shape[0] != start.shape[0]:
        raise ValueError(
            f"indices must have shape (N, k) with N = len(evidence_start) = {start.shape[0]}, got {idx.shape}."
        )
    e = _check_int("evidence_frames", evidence_frames, 1)
    hit = (idx >= start[:, None]) & (idx < start[:, None] + e)
    return float(hit.any(axis=1).mean()) if idx.shape[0] else 0.0


class SyntheticSequenceDataset(Dataset):
    """Map-style dataset of :func:`make_synthetic_sequences` samples, generated on the fly.

    Item ``i`` equals sample ``i`` of ``make_synthetic_sequences`` called with the same arguments; it is
    computed when requested (about 2-3 ms for a 32-frame 32x32 sample on one CPU core), or held in
    memory after the first access when ``cache=True``.

    Each item is a dict ``{"image": float32 tensor (1, T, H, W) in 8-bit units (255 x the sequence), "label": int64
    0-d tensor, "evidence_start": int64 0-d tensor}``, passed through ``transform`` when given.

    Args:
        num_samples: N.
        num_frames, size, evidence_frames, num_classes, seed, distractors, num_distractors,
            texture_std, noise_std, shape_amplitude, distractor_amplitude: see
            :func:`make_synthetic_sequences`.
        transform: callable applied to the item dict (e.g. a MONAI ``Compose`` of dictionary transforms).
        cache: keep generated samples in memory.

    Attributes:
        labels: int64 numpy array ``(N,)`` of all labels (for class weights or balanced sampling).
        num_classes: number of classes.
        class_names: names of the class shapes.
    """

    def __init__(
        self,
        num_samples: int,
        num_frames: int = 32,
        size: int = 32,
        evidence_frames: int = 2,
        num_classes: int = 2,
        seed: int = 0,
        distractors: bool = True,
        num_distractors: int = 1,
        texture_std: float = 0.07,
        noise_std: float = 0.03,
        shape_amplitude: float = 0.3,
        distractor_amplitude: float = 0.45,
        transform: Callable | None = None,
        cache: bool = False,
    ) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.seed = _check_seed(seed)
        self._cfg = _Config(
            num_frames, size, evidence_frames, num_classes, distractors, num_distractors,
            texture_std, noise_std, shape_amplitude, distractor_amplitude,
        )  # fmt: skip
        self.labels = _balanced_labels(self.num_samples, self._cfg.num_classes, (self.seed,))
        self.num_classes = self._cfg.num_classes
        self.class_names = list(SYNTHETIC_CLASS_NAMES[: self.num_classes])
        self.transform = transform
        self.cache = bool(cache)
        self._store: dict[int, tuple[np.ndarray, int]] = {}

    def __len__(self) -> int:
        return self.num_samples

    def _sample(self, index: int) -> tuple[np.ndarray, int]:
        if index in self._store:
            return self._store[index]
        rng = np.random.default_rng([self.seed, 1, index])
        out = _sample_one(rng, int(self.labels[index]), self._cfg)
        if self.cache:
            self._store[index] = out
        return out

    def __getitem__(self, index: int) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = resolve_index(index, self.num_samples, f"a dataset of {self.num_samples} samples")
        vol, start = self._sample(i)
        item = {
            "image": torch.from_numpy(vol * np.float32(255.0)).unsqueeze(0),  # the 8-bit units of every dataset
            "label": torch.tensor(int(self.labels[i]), dtype=torch.int64),
            "evidence_start": torch.tensor(start, dtype=torch.int64),
        }
        return apply_transform(self.transform, item) if self.transform is not None else item


def save_synthetic_npz(
    path: str | os.PathLike,
    num_train: int = 512,
    num_val: int = 128,
    num_test: int = 256,
    overwrite: bool = False,
    **kwargs: Any,
) -> str:
    """Write a synthetic train/val/test split to one npz file in the MedMNIST format.

    Keys ``{split}_images`` uint8 ``(N, T, H, W)`` (values ``round(255 * x)``), ``{split}_labels`` uint8
    ``(N, 1)`` and ``{split}_evidence_start`` int64 ``(N,)`` for ``split`` in train/val/test, so the file
    can be read by :class:`monai_das.data.NpzSequenceDataset` (or ``MedMNIST3D`` code paths) like a
    MedMNIST3D file. The splits use independent random streams of the same ``seed``.

    Args:
        path: output file (``.npz``).
        num_train: number of training samples.
        num_val: number of validation samples.
        num_test: number of test samples.
        overwrite: replace an existing file; otherwise an existing file is an error.
        kwargs: generation arguments of :func:`make_synthetic_sequences` (``num_frames``, ``size``,
            ``seed``, ...).

    Returns:
        the path written.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
        ValueError: for bad counts or generation arguments.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
    seed = _check_seed(kwargs.pop("seed", 0))
    gen_keys = (
        "num_frames", "size", "evidence_frames", "num_classes", "distractors", "num_distractors",
        "texture_std", "noise_std", "shape_amplitude", "distractor_amplitude",
    )  # fmt: skip
    unknown = sorted(set(kwargs) - set(gen_keys))
    if unknown:
        raise ValueError(f"unknown generation argument(s) {unknown}; allowed: {list(gen_keys)} and seed.")
    defaults: dict[str, Any] = {
        "num_frames": 32, "size": 32, "evidence_frames": 2, "num_classes": 2, "distractors": True,
        "num_distractors": 1, "texture_std": 0.07, "noise_std": 0.03, "shape_amplitude": 0.3,
        "distractor_amplitude": 0.45,
    }  # fmt: skip
    defaults.update(kwargs)
    cfg = _Config(**defaults)
    arrays: dict[str, np.ndarray] = {}
    for split_id, (name, count) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        n = _check_int(f"num_{name}", count, 1)
        images, labels, starts = _synthesize(n, (seed, 100 + split_id), cfg)
        arrays[f"{name}_images"] = np.round(images[:, 0] * 255.0).astype(np.uint8)
        arrays[f"{name}_labels"] = labels.astype(np.uint8).reshape(-1, 1)
        arrays[f"{name}_evidence_start"] = starts
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path
