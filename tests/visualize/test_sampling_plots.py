"""Images and plots of sampling decisions: shapes, values, PNG output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from monai_das.visualize import (
    frames_montage,
    plot_sampling_decisions,
    sampling_matrix_image,
    soft_entropy,
    stack_images,
)


def test_sampling_matrix_image_blocks():
    indices = torch.tensor([1, 3, 4])
    weights = torch.nn.functional.one_hot(indices, 5).float()
    image = sampling_matrix_image(weights, cell_size=4)
    assert image.shape == (1, 3 * 4, 5 * 4) and image.dtype == torch.float32
    expected = torch.zeros(3, 5)
    expected[torch.arange(3), indices] = 1
    torch.testing.assert_close(image[0, ::4, ::4], expected)
    torch.testing.assert_close(image[0, 3::4, 3::4], expected)  # every pixel of a block


def test_sampling_matrix_image_default_size_and_clipping():
    image = sampling_matrix_image(torch.tensor([[2.0, -1.0, 0.25, float("nan")]] * 2))
    assert image.shape == (1, 2 * 64, 4 * 64)  # 64-pixel cells make it 256 wide
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert image[0, 0, 2 * 64].item() == pytest.approx(0.25)
    assert sampling_matrix_image(np.eye(3)).shape == (1, 3 * 86, 3 * 86)
    with pytest.raises(ValueError, match="k, T"):
        sampling_matrix_image(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="cell_size"):
        sampling_matrix_image(torch.rand(2, 3), cell_size=0)


def test_frames_montage_shape_range_and_order():
    k, h, w = 5, 6, 7
    frames = torch.stack([torch.full((1, h, w), float(v)) for v in (50, 10, 40, 20, 30)], dim=1)  # (1, k, H, W)
    indices = torch.tensor([9, 1, 7, 3, 5])
    montage = frames_montage(frames, indices, padding=1)
    ncols, nrows = 3, 2
    assert montage.shape == (1, nrows * h + (nrows - 1), ncols * w + (ncols - 1))
    assert float(montage.min()) >= 0.0 and float(montage.max()) <= 1.0
    # tiles are ordered by frame index: values 10, 20, 30 / 40, 50 -> normalised 0, .25, .5 / .75, 1
    tile_values = [montage[0, r * (h + 1), c * (w + 1)].item() for r in range(nrows) for c in range(ncols)][:k]
    assert tile_values == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert montage[0, -1, -1].item() == 0.0  # the unused cell is black
    assert montage[0, 0, w].item() == 1.0  # white padding between tiles


def test_frames_montage_scale_position_bars_and_rgb():
    frames = torch.rand(3, 4, 8, 8)
    montage = frames_montage(frames, torch.tensor([0, 2, 5, 9]), ncols=4, num_frames=10, scale=2, padding=0)
    bar = max(3, 16 // 8)
    assert montage.shape == (3, 16 + bar, 4 * 16)
    # the marker of the last frame (index 9 of 10) sits at the right end of its track
    track = montage[0, 16 + 1, 3 * 16 :]
    assert track[-1].item() == 1.0 and track[0].item() == pytest.approx(0.2)
    per_frame = frames_montage(frames * torch.arange(1, 5).view(1, 4, 1, 1), per_frame=True)
    assert per_frame.shape == (3, 2 * 8 + 2, 2 * 8 + 2)
    for j in range(4):
        r, c = divmod(j, 2)
        tile = per_frame[:, r * 10 : r * 10 + 8, c * 10 : c * 10 + 8]
        assert tile.min().item() == 0.0 and tile.max().item() == pytest.approx(1.0)


def test_frames_montage_bad_input():
    with pytest.raises(ValueError, match="C, k, H, W"):
        frames_montage(torch.rand(4, 8, 8))
    with pytest.raises(ValueError, match="k = 3"):
        frames_montage(torch.rand(1, 3, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_frames"):
        frames_montage(torch.rand(1, 2, 4, 4), torch.tensor([0, 5]), num_frames=5)
    with pytest.raises(ValueError, match="ncols"):
        frames_montage(torch.rand(1, 2, 4, 4), ncols=0)


def test_stack_images():
    out = stack_images([torch.zeros(1, 3, 5), torch.ones(1, 2, 4)], gap=2, fill=0.5)
    assert out.shape == (1, 3 + 2 + 2, 5)
    assert out[0, 3, 0].item() == 0.5 and out[0, 5, 4].item() == 0.5 and out[0, 5, 0].item() == 1.0
    with pytest.raises(ValueError):
        stack_images([])
    with pytest.raises(ValueError):
        stack_images([torch.zeros(1, 2, 2), torch.zeros(3, 2, 2)])


def test_soft_entropy_known_values():
    t = 6
    uniform = torch.zeros(2, 3, t)
    torch.testing.assert_close(soft_entropy(uniform), torch.full((2,), math.log(t)))
    peaked = torch.full((1, 2, t), -1e4)
    peaked[..., 0] = 0.0
    assert soft_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)
    masked = torch.tensor([[[0.0, 0.0, float("-inf"), float("-inf")], [0.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(soft_entropy(masked), torch.tensor([(math.log(2) + math.log(4)) / 2]))
    with pytest.raises(ValueError, match="B, k, T"):
        soft_entropy(torch.zeros(2, 3))


@pytest.mark.parametrize("t, channels", [(12, 1), (40, 3)])  # a strip of thumbnails; a kymograph (T > 32)
def test_plot_sampling_decisions_writes_png(tmp_path, t, channels):
    volume = torch.rand(channels, t, 10, 12)
    indices = torch.tensor([1, 4, 7, 10])
    path = plot_sampling_decisions(
        volume, indices, tmp_path / "sub" / "picks.png", title="test", scores=torch.rand(4, t)
    )
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 200 and height > 100


def test_plot_sampling_decisions_bad_input(tmp_path):
    with pytest.raises(ValueError, match="C, T, H, W"):
        plot_sampling_decisions(torch.rand(5, 8, 8), [0], tmp_path / "a.png")
    with pytest.raises(ValueError, match="lie in"):
        plot_sampling_decisions(torch.rand(1, 5, 8, 8), [5], tmp_path / "a.png")
    with pytest.raises(ValueError, match="scores"):
        plot_sampling_decisions(torch.rand(1, 5, 8, 8), [1], tmp_path / "a.png", scores=torch.rand(4))
    assert not (tmp_path / "a.png").exists()
