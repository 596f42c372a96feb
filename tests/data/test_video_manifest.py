from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

from monai_das.data import CovidBluesDataset, VideoManifestDataset, read_manifest, split_by_group, validate_manifest

av = pytest.importorskip("av")

SIZE = 32
REAL_COVID = "/work/shared/data/ultrasound/covid_blues"


def write_mp4(path, values):
    """A small grey mp4 whose frame i is uniformly ``values[i]`` (0-255)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "1"}
        for v in values:
            rgb = np.full((SIZE, SIZE, 3), v, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_manifest(path, rows, columns=("path", "label", "patient_id")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    return str(path)


@pytest.fixture(scope="module")
def video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    rows = []
    for p in range(6):
        for j in range(2):
            name = f"clips/p{p}_{j}.mp4"
            write_mp4(root / name, [40 + 20 * p + 10 * j + 5 * t for t in range(6)])
            rows.append((name, p % 2, f"P{p}"))
    write_manifest(root / "manifest.csv", rows)
    return root


def test_read_and_decode(video_root):
    ds = VideoManifestDataset(video_root / "manifest.csv", group_key="patient_id")
    assert len(ds) == 12 and ds.num_classes == 2 and ds.labels.tolist() == [0, 0, 1, 1] * 3
    item = ds[3]
    assert item["image"].shape == (1, 6, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert type(item["image"]) is torch.Tensor
    assert int(item["label"]) == 1 and item["group"] == "P1" and item["row"] == 4
    assert item["path"] == os.path.join(str(video_root), "clips", "p1_1.mp4")
    means = item["image"].mean(dim=(0, 2, 3)).numpy()  # 8-bit values
    np.testing.assert_allclose(means, [70 + 5 * t for t in range(6)], atol=3)
    short = VideoManifestDataset(video_root / "manifest.csv", max_frames=3, frame_stride=1)
    assert short[0]["image"].shape == (1, 3, SIZE, SIZE)


def test_split_by_group_disjoint_and_deterministic(video_root):
    rows = read_manifest(video_root / "manifest.csv")
    splits = split_by_group(rows, (0.5, 0.25, 0.25), seed=0, group_key="patient_id")
    assert sum(len(s) for s in splits) == 12
    groups = [{r["patient_id"] for r in s} for s in splits]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert all(len(s) > 0 for s in splits)
    again = split_by_group(rows, (0.5, 0.25, 0.25), seed=0, group_key="patient_id")
    assert [[r["_row"] for r in s] for s in splits] == [[r["_row"] for r in s] for s in again]
    firsts = [split_by_group(rows, (0.5, 0.25, 0.25), seed=s, group_key="patient_id")[0] for s in range(6)]
    others = {tuple(r["_row"] for r in first) for first in firsts}
    assert len(others) > 1
    strat = split_by_group(rows, (0.5, 0.5), seed=1, group_key="patient_id", stratify_key="label")
    for s in strat:
        assert sorted({r["label"] for r in s}) == ["0", "1"]
    assert [len(s) for s in split_by_group(rows, (1.0,), group_key=None)] == [12]
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(rows, (0.5, 0.2))
    with pytest.raises(ValueError, match="row 2"):
        split_by_group([{"_row": 1, "g": "a"}, {"_row": 2, "g": ""}], (1.0,), group_key="g")


def test_dataset_splits_cover_all(video_root):
    kw = dict(group_key="patient_id", fractions=(0.5, 0.25, 0.25), seed=3)
    parts = [VideoManifestDataset(video_root / "manifest.csv", split=s, **kw) for s in ("train", "val", "test")]
    assert sorted(r["_row"] for p in parts for r in p.rows) == list(range(1, 13))
    assert all(p.num_classes == 2 for p in parts)
    assert [r["_row"] for r in VideoManifestDataset(video_root / "manifest.csv", split=1, **kw).rows] == [
        r["_row"] for r in parts[1].rows
    ]
    with pytest.raises(ValueError, match="split"):
        VideoManifestDataset(video_root / "manifest.csv", split="validation", **kw)


def test_missing_files_and_validate(tmp_path, video_root):
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            (str(video_root / "clips/p0_0.mp4"), 0, "A"),
            ("missing.mp4", 1, "B"),
            ("", 0, "C"),
            (str(video_root / "clips/p0_1.mp4"), "x", "D"),
        ],
    )
    bad = validate_manifest(manifest)
    assert [b[0] for b in bad] == [2, 3, 4]
    assert bad[0][1] == os.path.join(str(tmp_path), "missing.mp4") and "not found" in bad[0][2]
    with pytest.raises(ValueError, match=r"row 4 \(line 5\)"):
        VideoManifestDataset(manifest)

    rows = [(str(video_root / "clips/p0_0.mp4"), 0, "A"), ("missing.mp4", 1, "B")]
    manifest = write_manifest(tmp_path / "m2.csv", rows)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoManifestDataset(manifest)
    ds = VideoManifestDataset(manifest, check_files=False)
    assert [b[0] for b in ds.validate()] == [2]
    with pytest.raises(FileNotFoundError) as e:
        ds[1]
    assert "missing.mp4" in str(e.value) and "row 2" in str(e.value) and "m2.csv" in str(e.value)

    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    manifest = write_manifest(tmp_path / "m3.csv", [("broken.mp4", 0, "A")])
    ds = VideoManifestDataset(manifest)
    with pytest.raises(ValueError, match="row 1"):
        ds[0]
    assert ds.validate() == [] and len(ds.validate(decode=True)) == 1


def test_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        VideoManifestDataset(tmp_path / "nope.csv")
    manifest = write_manifest(tmp_path / "m.csv", [("a.mp4", 0)], columns=("file", "label"))
    with pytest.raises(ValueError, match="'path'"):
        VideoManifestDataset(manifest)
    with pytest.raises(ValueError, match="patient"):
        VideoManifestDataset(manifest, path_key="file", group_key="patient", check_files=False)
    with pytest.raises(ValueError, match="frame_stride"):
        VideoManifestDataset(manifest, path_key="file", frame_stride=0, check_files=False)
    ds = VideoManifestDataset(manifest, path_key="file", label_key=None, check_files=False)
    assert ds.labels is None
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_manifest(tmp_path / "empty.csv")


def test_cache(tmp_path, video_root, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    user_file = cache / "p0_0.npy"
    user_file.write_bytes(b"user data")
    plain = VideoManifestDataset(video_root / "manifest.csv")
    cached = VideoManifestDataset(video_root / "manifest.csv", cache_dir=cache)
    first = cached[0]["image"]
    written = sorted(p.name for p in cache.iterdir())
    assert len(written) == 2 and user_file.read_bytes() == b"user data"
    assert [n for n in written if n != "p0_0.npy"][0].endswith(".dascache.npy")
    torch.testing.assert_close(first, plain[0]["image"], rtol=0, atol=0)

    def no_decode(path):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cached.videos, "_decode", no_decode)
    torch.testing.assert_close(cached[0]["image"], first, rtol=0, atol=0)
    # other decode options -> another cache entry
    other = VideoManifestDataset(video_root / "manifest.csv", cache_dir=cache, max_frames=2)
    assert other[0]["image"].shape[1] == 2 and len(list(cache.iterdir())) == 3


def test_transform_applied(video_root):
    def resize(d):
        d = dict(d)
        d["image"] = torch.nn.functional.interpolate(d["image"], size=(8, 8))
        return d

    ds = VideoManifestDataset(video_root / "manifest.csv", transform=resize)
    assert ds[0]["image"].shape == (1, 6, 8, 8)


def test_covid_blues_layout(tmp_path, video_root):
    rows = []
    for p in range(10):
        rel = f"lus_videos/patient_{p}_L1.mp4"
        os.makedirs(tmp_path / "lus_videos", exist_ok=True)
        os.link(video_root / "clips/p0_0.mp4", tmp_path / rel)
        rows.append((rel, p % 2, "src", p, "L1", 6))
    columns = ("path", "label", "source", "patient_id", "bluepoint", "num_frames")
    write_manifest(tmp_path / "manifest.csv", rows, columns)
    parts = [CovidBluesDataset(tmp_path, s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 10 and all(len(p) for p in parts)
    assert parts[0].class_names == ["negative", "positive"]
    item = parts[1][0]
    assert item["image"].shape == (1, 6, SIZE, SIZE) and "group" in item


@pytest.mark.skipif(not os.path.isfile(os.path.join(REAL_COVID, "manifest.csv")), reason="COVID-BLUES not staged")
def test_real_covid_blues_split():
    parts = [CovidBluesDataset(REAL_COVID, s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 362
    patients = [{r["patient_id"] for r in p.rows} for p in parts]
    assert sum(len(s) for s in patients) == 63 and not (patients[0] & patients[1] | patients[0] & patients[2])
