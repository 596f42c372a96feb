"""Pictures of what a frame sampler picked: the sampling matrix, a montage of the picked frames, a strip plot.

The array helpers (:py:func:`sampling_matrix_image`, :py:func:`frames_montage`, :py:func:`stack_images`,
:py:func:`soft_entropy`) need only numpy and torch and return channel-first float images in ``[0, 1]`` that
TensorBoard's ``add_image`` accepts as they are. :py:func:`plot_sampling_decisions` draws a figure with matplotlib
(through its Agg canvas: no display, no change to the global pyplot backend) and writes it to a PNG file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from monai.utils import optional_import

Figure, _has_mpl = optional_import("matplotlib.figure", name="Figure")
FigureCanvasAgg, _ = optional_import("matplotlib.backends.backend_agg", name="FigureCanvasAgg")

__all__ = ["sampling_matrix_image", "frames_montage", "stack_images", "plot_sampling_decisions", "soft_entropy"]

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence]

PICK_COLOUR = "#e4572e"  # picked frames: borders, bars and ticks
OTHER_COLOUR = "#8c8c8c"  # frames that were not picked


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array (detached, on the CPU); ``TypeError`` naming ``name`` otherwise."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a numpy array or a torch.Tensor, got {type(x).__name__}.") from e


def _to_indices(indices: ArrayLike, name: str = "indices") -> np.ndarray:
    """``indices`` as a 1-D int64 numpy array; ``ValueError`` when the values are not whole numbers."""
    arr = _to_numpy(indices, name).reshape(-1)
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must hold whole frame indices, got {arr.tolist()}.")
    return arr.astype(np.int64)


def _check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return value


def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max scale to ``[0, 1]``; a constant array becomes zeros. Non-finite values are set to 0 first."""
    x = np.where(np.isfinite(x), x, 0.0)
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 1e-12:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def sampling_matrix_image(weights: ArrayLike, cell_size: int | None = None, min_width: int = 256) -> torch.Tensor:
    """Render a sampling matrix ``P`` as a grey image: row ``j`` is pick ``j``, column ``t`` is frame ``t``.

    Each entry becomes a square block of ``cell_size`` pixels, so a hard (one-hot) row shows as one white block on
    black and a soft row as shades of grey. Values are clipped to ``[0, 1]`` (the entries of ``P`` are probabilities).

    Args:
        weights: ``(k, T)`` sampling matrix (one input's ``SamplerOutput.weights``).
        cell_size: pixels per entry; by default the smallest size that makes the image at least ``min_width``
            pixels wide (and at least 4).
        min_width: the target width used when ``cell_size`` is ``None``.

    Returns:
        ``(1, k * cell_size, T * cell_size)`` float32 tensor in ``[0, 1]``.

    Raises:
        ValueError: when ``weights`` is not 2-D or is empty, or ``cell_size`` is not a positive integer.
    """
    p = _to_numpy(weights, "weights")
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"weights must be a non-empty (k, T) matrix, got shape {p.shape}.")
    k, t = p.shape
    if cell_size is None:
        cell_size = max(4, math.ceil(min_width / t))
    _check_positive_int(cell_size, "cell_size")
    p = np.clip(np.where(np.isfinite(p), p, 0.0), 0.0, 1.0)
    image = np.kron(p, np.ones((cell_size, cell_size)))
    return torch.from_numpy(image[None].astype(np.float32))


def frames_montage(
    frames: ArrayLike,
    indices: ArrayLike | None = None,
    ncols: int | None = None,
    num_frames: int | None = None,
    padding: int = 2,
    per_frame: bool = False,
    scale: int = 1,
) -> torch.Tensor:
    """Tile the k picked frames of one input into a grid, in temporal order, left to right, top to bottom.

    Intensities are min-max normalised to ``[0, 1]`` over all k frames together (so their relative brightness is
    kept), or over each frame on its own with ``per_frame=True``. Tiles are separated by ``padding`` white pixels;
    unused grid cells are black. When ``num_frames`` (T) is given, a position bar is drawn under each tile: a dark
    track of the tile's width with a white marker at ``index / T``, so the montage shows where in the sequence each
    frame came from.

    Args:
        frames: ``(C, k, H, W)`` the picked frames of one input (``SamplerOutput.frames[i]``).
        indices: ``(k,)`` their frame indices; tiles are ordered by index. Needed for the position bars.
        ncols: tiles per row; default ``ceil(sqrt(k))``.
        num_frames: T, the length of the sequence the frames were picked from; enables the position bars.
        padding: pixels between tiles (>= 0).
        per_frame: normalise each frame separately.
        scale: integer nearest-neighbour upscaling of each frame (>= 1), so small frames stay visible.

    Returns:
        ``(C, rows * h + (rows - 1) * padding, ncols * w + (ncols - 1) * padding)`` float32 tensor in ``[0, 1]``,
        with ``rows = ceil(k / ncols)``, ``w = scale * W`` and ``h = scale * H`` (plus ``max(3, h // 8)`` with
        position bars).

    Raises:
        ValueError: for a wrong ``frames`` shape, a length mismatch between ``indices`` and k, indices outside
            ``[0, num_frames)``, a non-positive ``ncols`` or a negative ``padding``.
    """
    x = _to_numpy(frames, "frames")
    if x.ndim != 4 or x.size == 0:
        raise ValueError(f"frames must be a non-empty (C, k, H, W) array, got shape {x.shape}.")
    c, k, h, w = x.shape
    idx = None
    if indices is not None:
        idx = _to_indices(indices)
        if idx.shape[0] != k:
            raise ValueError(f"indices must hold k = {k} entries (one per frame), got {idx.shape[0]}.")
        order = np.argsort(idx, kind="stable")
        x, idx = x[:, order], idx[order]
    if num_frames is not None:
        if idx is None:
            raise ValueError("num_frames needs indices: the position bars show where each frame was picked.")
        if num_frames < 1 or idx.min() < 0 or idx.max() >= num_frames:
            raise ValueError(f"indices must lie in [0, num_frames = {num_frames}), got {idx.tolist()}.")
    ncols = min(_check_positive_int(math.ceil(math.sqrt(k)) if ncols is None else ncols, "ncols"), k)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}.")
    scale = _check_positive_int(scale, "scale")
    x = np.stack([_normalise(x[:, j]) for j in range(k)], axis=1) if per_frame else _normalise(x)
    if scale > 1:
        x = x.repeat(scale, axis=2).repeat(scale, axis=3)
    return torch.from_numpy(_tile(x, ncols, padding, idx if num_frames is not None else None, num_frames))


def _tile(x: np.ndarray, ncols: int, padding: int, indices: np.ndarray | None, num_frames: int | None) -> np.ndarray:
    """The montage of ``x`` ``(C, k, h, w)`` in ``[0, 1]``: ``ncols`` tiles per row, white gaps of ``padding``
    pixels, and under each tile a position bar for ``indices[j] / num_frames`` when ``indices`` is given."""
    c, k, h, w = x.shape
    nrows = math.ceil(k / ncols)
    bar = max(3, h // 8) if indices is not None else 0
    tile_h = h + bar
    out = np.zeros((c, nrows * tile_h + (nrows - 1) * padding, ncols * w + (ncols - 1) * padding), np.float32)
    # the gaps between tiles are white so dark frames stay distinguishable
    for r in range(1, nrows):
        out[:, r * (tile_h + padding) - padding : r * (tile_h + padding)] = 1.0
    for col in range(1, ncols):
        out[:, :, col * (w + padding) - padding : col * (w + padding)] = 1.0
    for j in range(k):
        r, col = divmod(j, ncols)
        y0, x0 = r * (tile_h + padding), col * (w + padding)
        out[:, y0 : y0 + h, x0 : x0 + w] = x[:, j]
        if indices is not None and num_frames is not None:
            out[:, y0 + h : y0 + tile_h, x0 : x0 + w] = 0.2  # the track
            centre = (indices[j] + 0.5) / num_frames * w
            half = max(1.0, w / num_frames / 2)
            lo, hi = int(max(0, math.floor(centre - half))), int(min(w, math.ceil(centre + half)))
            out[:, y0 + h + 1 : y0 + tile_h, x0 + lo : x0 + hi] = 1.0  # the marker
    return out


def stack_images(images: Sequence[torch.Tensor], gap: int = 4, fill: float = 0.5) -> torch.Tensor:
    """Stack ``(C, H_i, W_i)`` images vertically, separated by ``gap`` rows of value ``fill``.

    Narrower images are padded on the right with ``fill``; channel counts must agree.

    Returns:
        ``(C, sum(H_i) + (n - 1) * gap, max(W_i))`` float32 tensor.

    Raises:
        ValueError: for an empty sequence, an image that is not 3-D, or different channel counts.
    """
    if len(images) == 0:
        raise ValueError("images must hold at least one image.")
    imgs = [torch.as_tensor(i, dtype=torch.float32) for i in images]
    if any(i.ndim != 3 for i in imgs) or len({i.shape[0] for i in imgs}) != 1:
        raise ValueError(f"images must be (C, H, W) with one C, got shapes {[tuple(i.shape) for i in imgs]}.")
    c, width = imgs[0].shape[0], max(i.shape[2] for i in imgs)
    parts: list[torch.Tensor] = []
    for n, img in enumerate(imgs):
        if n:
            parts.append(torch.full((c, gap, width), fill))
        if img.shape[2] < width:
            img = torch.cat([img, torch.full((c, img.shape[1], width - img.shape[2]), fill)], dim=2)
        parts.append(img)
    return torch.cat(parts, dim=1)


def soft_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean row entropy, in nats, of ``softmax(logits)`` over the frames: how spread the soft choice is.

    ``0`` means every row puts all its mass on one frame; ``log(T)`` means every row is uniform over the T frames.
    Entries of ``-inf`` (masked frames) have zero probability and contribute nothing.

    Args:
        logits: ``(B, k, T)`` (``SamplerOutput.logits``).

    Returns:
        ``(B,)`` float tensor, the entropy averaged over the k rows of each input.

    Raises:
        ValueError: when ``logits`` is not 3-D.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must be (B, k, T), got shape {tuple(logits.shape)}.")
    logits = logits.detach().float()
    log_p = torch.log_softmax(logits, dim=-1)
    p = log_p.exp()
    terms = torch.where(p > 0, p * log_p, torch.zeros_like(p))
    return -terms.sum(dim=-1).mean(dim=-1)


def _display_frames(volume: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(C, T, H, W)`` -> ``(T, H, W)`` grey or ``(T, H, W, 3)`` RGB frames in ``[0, 1]``, and whether RGB."""
    if volume.shape[0] == 3:
        return np.moveaxis(_normalise(volume), 0, -1), True
    return _normalise(volume[0]), False


def plot_sampling_decisions(
    volume: ArrayLike,
    indices: ArrayLike,
    path: str | Path,
    title: str | None = None,
    scores: ArrayLike | None = None,
    max_strip_frames: int = 32,
    frames_per_row: int = 16,
    dpi: int = 120,
) -> Path:
    """Draw which frames of one input were picked and write the figure to a PNG file.

    - ``T <= max_strip_frames``: every frame is drawn as a thumbnail, ``frames_per_row`` per row, labelled with its
      index; picked frames get a thick coloured border and a bold coloured label, the others a thin grey one (their
      intensities are left untouched, so brightness stays comparable).
    - longer sequences: a kymograph, the middle row of every frame stacked over time (time runs downwards), with the
      picked times marked by coloured ticks and lines, next to thumbnails of the picked frames only.

    With ``scores`` a bar chart under the frames shows how much selection mass each frame received (for a ``(k, T)``
    soft sampling matrix, the column sums), picked frames in colour.

    Channels: three channels are shown as RGB, otherwise the first channel in grey. Intensities are normalised over
    the whole volume, so brightness is comparable between frames.

    Args:
        volume: ``(C, T, H, W)`` one input.
        indices: the k picked frame indices (any order; duplicates are ignored).
        path: the PNG file to write; parent folders are created.
        title: the figure title; default ``"picked k of T frames"``.
        scores: optional ``(T,)`` per-frame scores or ``(k, T)`` soft sampling matrix.
        max_strip_frames: the longest sequence drawn as a strip of thumbnails.
        frames_per_row: thumbnails per row in the strip.
        dpi: resolution of the PNG.

    Returns:
        the path written.

    Raises:
        ValueError: for a wrong ``volume`` shape, indices outside ``[0, T)``, or ``scores`` not of length T.
        RuntimeError: when matplotlib is not installed.
    """
    if not _has_mpl:
        raise RuntimeError("plot_sampling_decisions needs matplotlib; install it with `pip install matplotlib`.")
    vol, picked, score_row = _check_plot_inputs(volume, indices, scores, max_strip_frames, frames_per_row)
    t = vol.shape[1]
    frames, rgb = _display_frames(vol)
    is_picked = np.zeros(t, dtype=bool)
    is_picked[picked] = True
    fig = Figure(dpi=dpi)
    FigureCanvasAgg(fig)
    if t <= max_strip_frames:
        _draw_strip(fig, frames, None if rgb else "gray", is_picked, score_row, frames_per_row)
    else:
        _draw_kymograph(fig, frames, None if rgb else "gray", is_picked, score_row)
    fig.suptitle(title if title is not None else f"picked {picked.size} of {t} frames", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def _check_plot_inputs(
    volume: ArrayLike, indices: ArrayLike, scores: ArrayLike | None, max_strip_frames: int, frames_per_row: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The arguments of :py:func:`plot_sampling_decisions` checked: the ``(C, T, H, W)`` volume, the sorted distinct
    picked indices, and the ``(T,)`` finite scores (``None`` without ``scores``)."""
    vol = _to_numpy(volume, "volume")
    if vol.ndim != 4 or vol.size == 0:
        raise ValueError(f"volume must be a non-empty (C, T, H, W) array, got shape {vol.shape}.")
    t = vol.shape[1]
    picked = np.unique(_to_indices(indices))
    if picked.size == 0 or picked.min() < 0 or picked.max() >= t:
        raise ValueError(f"indices must be non-empty and lie in [0, T = {t}), got {picked.tolist()}.")
    score_row = None
    if scores is not None:
        s = _to_numpy(scores, "scores")
        s = s.sum(axis=0) if s.ndim == 2 else s
        if s.ndim != 1 or s.shape[0] != t:
            raise ValueError(f"scores must be (T,) or (k, T) with T = {t}, got shape {np.shape(scores)}.")
        score_row = np.where(np.isfinite(s), s, 0.0)
    if frames_per_row < 1 or max_strip_frames < 1:
        raise ValueError(f"frames_per_row and max_strip_frames must be >= 1, got {frames_per_row}, {max_strip_frames}.")
    return vol, picked, score_row


def _thumbnail(ax, frame: np.ndarray, cmap: str | None, label: str, picked: bool, border: float) -> None:
    """One frame without ticks, framed and titled in the pick colour (bold) or, not picked, in grey."""
    ax.imshow(frame, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_edgecolor(PICK_COLOUR if picked else OTHER_COLOUR)
        side.set_linewidth(border)
    if picked:
        ax.set_title(label, fontsize=8, color=PICK_COLOUR, fontweight="bold", pad=2)
    else:
        ax.set_title(label, fontsize=7, color=OTHER_COLOUR, pad=2)


def _draw_strip(fig, frames: np.ndarray, cmap: str | None, is_picked: np.ndarray, score_row: np.ndarray | None,
                frames_per_row: int) -> None:
    """Every frame as a thumbnail, ``frames_per_row`` per row, picked ones framed; the score bars under them."""
    t, h, w = frames.shape[:3]
    aspect = h / max(w, 1)
    ncols = min(frames_per_row, t)
    nrows = math.ceil(t / ncols)
    tile = 1.1
    fig_h = nrows * tile * aspect * 1.15 + 0.8 + (1.4 if score_row is not None else 0.0)
    fig.set_size_inches(max(6.0, ncols * tile), fig_h)
    ratios = [nrows * aspect] + ([0.5] if score_row is not None else [])
    outer = fig.add_gridspec(len(ratios), 1, height_ratios=ratios, hspace=0.35)
    grid = outer[0].subgridspec(nrows, ncols, wspace=0.08, hspace=0.25)
    for i in range(nrows * ncols):
        ax = fig.add_subplot(grid[divmod(i, ncols)])
        if i >= t:
            ax.axis("off")
            continue
        _thumbnail(ax, frames[i], cmap, f"t={i}", bool(is_picked[i]), 3.5 if is_picked[i] else 0.5)
    if score_row is not None:
        _score_bars(fig.add_subplot(outer[1]), score_row, is_picked)


def _draw_kymograph(fig, frames: np.ndarray, cmap: str | None, is_picked: np.ndarray,
                    score_row: np.ndarray | None) -> None:
    """The middle row of every frame stacked over time with the picked times marked, beside thumbnails of the
    picked frames; the score bars under both."""
    picked = np.flatnonzero(is_picked)
    k, h = picked.size, frames.shape[1]
    ncols = min(k, max(4, math.ceil(math.sqrt(2 * k))))
    nrows = math.ceil(k / ncols)
    fig.set_size_inches(11.0, max(4.0, 1.6 * nrows + 1.0) + (1.4 if score_row is not None else 0.0))
    ratios = [3.0] + ([1.0] if score_row is not None else [])
    outer = fig.add_gridspec(len(ratios), 2, height_ratios=ratios, width_ratios=[1.0, 2.2], wspace=0.15, hspace=0.4)
    ax = fig.add_subplot(outer[0, 0])
    kymo = frames[:, h // 2]  # (T, W) or (T, W, 3): the middle row of every frame
    ax.imshow(kymo, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for i in picked:
        ax.axhline(i, color=PICK_COLOUR, lw=1.0, alpha=0.8)
    ax.set_yticks(picked if k <= 16 else picked[:: math.ceil(k / 16)])
    ax.tick_params(axis="y", colors=PICK_COLOUR, labelsize=7)
    ax.set_xticks([])
    ax.set_ylabel("frame t (middle row of each frame)")
    ax.set_title("all frames", fontsize=9)
    grid = outer[0, 1].subgridspec(nrows, ncols, wspace=0.08, hspace=0.3)
    for j, i in enumerate(picked):
        _thumbnail(fig.add_subplot(grid[divmod(j, ncols)]), frames[i], cmap, f"t={i}", True, 2.5)
    if score_row is not None:
        _score_bars(fig.add_subplot(outer[1, :]), score_row, is_picked)


def _score_bars(ax, scores: np.ndarray, is_picked: np.ndarray) -> None:
    """Bar chart of per-frame selection scores, picked frames in the pick colour."""
    t = scores.shape[0]
    colours = [PICK_COLOUR if p else OTHER_COLOUR for p in is_picked]
    ax.bar(np.arange(t), scores, color=colours, width=0.8)
    ax.set_xlim(-0.6, t - 0.4)
    ax.set_xlabel("frame t")
    ax.set_ylabel("selection mass", fontsize=8)
    ax.tick_params(labelsize=7)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
