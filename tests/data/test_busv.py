from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_das.data import BUSVDataset, busv_frame_files, list_busv_videos

Image = pytest.importorskip("PIL.Image")


def write_video(folder, num_frames, size=(12, 10), names=None, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i}.png" for i in range(num_frames)]
    for i, name in enumerate(names):
        arr = np.full((size[0], size[1]), 10 * i, dtype=np.uint8)
        img = Image.fromarray(arr, mode="L")
        if mode != "L":
            img = img.convert(mode)
        img.save(folder / name)


@pytest.fixture()
def busv_root(tmp_path):
    raw = tmp_path / "rawframes"
    write_video(raw / "benign" / "b1", 12)  # names 0..11: string sort would put 10 before 2
    write_video(raw / "benign" / "b2", 3, mode="RGB")
    write_video(raw / "malignant" / "m1", 4, names=["frame_3.png", "frame_1.png", "frame_2.png", "frame_10.png"])
    return tmp_path


def test_read_all_sorted_numerically(busv_root):
    ds = BUSVDataset(busv_root)
    assert [v[0] for v in ds.videos] == ["b1", "b2", "m1"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.class_names == ["benign", "malignant"] and ds.num_classes == 2
    item = ds[0]
    assert item["image"].shape == (1, 12, 12, 10) and item["image"].dtype == torch.float32
    assert int(item["label"]) == 0 and item["video_id"] == "b1"
    np.testing.assert_allclose(item["image"][0, :, 0, 0].numpy(), 10 * np.arange(12), atol=1e-4)
    rgb = ds[1]["image"]
    np.testing.assert_allclose(rgb[0, :, 0, 0].numpy(), [0, 10, 20], atol=1)
    files = busv_frame_files(busv_root / "rawframes" / "malignant" / "m1")
    assert [f.rsplit("/", 1)[-1] for f in files] == ["frame_1.png", "frame_2.png", "frame_3.png", "frame_10.png"]
    # written order 3,1,2,10 had values 0,10,20,30 -> sorted 1,2,3,10 gives 10,20,0,30
    np.testing.assert_allclose(ds[2]["image"][0, :, 0, 0].numpy(), [10, 20, 0, 30], atol=1e-4)
    assert int(ds[2]["label"]) == 1


def test_video_ids_and_subsampling(busv_root, tmp_path):
    ds = BUSVDataset(busv_root, video_ids=["m1", "benign/b1"])
    assert [v[0] for v in ds.videos] == ["m1", "b1"] and ds.labels.tolist() == [1, 0]
    ids = tmp_path / "val.txt"
    ids.write_text("# validation\nb2\n\nm1\n")
    assert [v[0] for v in BUSVDataset(busv_root, video_ids=ids).videos] == ["b2", "m1"]
    with pytest.raises(FileNotFoundError, match="zz"):
        BUSVDataset(busv_root, video_ids=["b1", "zz"])
    sub = BUSVDataset(busv_root, video_ids=["b1"], max_frames=4, frame_stride=2)
    np.testing.assert_allclose(sub[0]["image"][0, :, 0, 0].numpy(), [0, 40, 60, 100], atol=1e-4)
    with pytest.raises(ValueError, match="max_frames"):
        BUSVDataset(busv_root, max_frames=0)
    flipped = BUSVDataset(busv_root, video_ids=["b1"], transform=lambda d: {**d, "image": 1 - d["image"]})
    torch.testing.assert_close(flipped[0]["image"], 1 - BUSVDataset(busv_root, video_ids=["b1"])[0]["image"])


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="rawframes"):
        BUSVDataset(tmp_path)
    raw = tmp_path / "rawframes"
    (raw / "benign" / "empty").mkdir(parents=True)
    write_video(raw / "malignant" / "mixed", 2)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(raw / "malignant" / "mixed" / "2.png")
    ds = BUSVDataset(tmp_path)
    with pytest.raises(ValueError) as e:
        ds[0]
    assert str(raw / "benign" / "empty") in str(e.value) and "no PNG" in str(e.value)
    with pytest.raises(ValueError) as e:
        ds[1]
    assert str(raw / "malignant" / "mixed") in str(e.value) and "different sizes" in str(e.value)
    write_video(raw / "benign" / "mixed", 1)
    with pytest.raises(ValueError, match="both"):
        list_busv_videos(tmp_path)
