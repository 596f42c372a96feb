"""``monai-das predict``: readers, resampling to the bundle's input, the CSV, montages, errors and exit status.

One subprocess runs ``python -m monai_das.apps.cli predict`` on a NIfTI volume, a DICOM series, a multi-frame RGB
DICOM cine, an mp4, a MedMNIST npz (3 test volumes), a corrupt .nii.gz and a truncated mp4; the readers and the
resampling are also checked in-process on the same kind of files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from apps_testing import (
    PYTHON,
    REPO,
    VESSEL_BUNDLE,
    build_network,
    has_av,
    has_nib,
    has_pydicom,
    save_checkpoint,
    subprocess_env,
    write_dicom,
    write_dicom_series,
    write_medmnist_npz,
    write_nifti,
    write_video,
)

from monai_das.apps import cli
from monai_das.apps.bundle_predictor import BundlePredictor
from monai_das.data import LoadSequence, expand_inputs
from monai_das.transforms import uniform_frame_indices

T, K = 28, 14  # the vessel bundle: 28 frames of 28 x 28, sampling ratio 0.5
CLASSES = ("vessel", "aneurysm")
needs_dicom = pytest.mark.skipif(not has_pydicom, reason="pydicom is not installed")
needs_nifti = pytest.mark.skipif(not has_nib, reason="nibabel is not installed")


def _make_inputs(root: Path) -> tuple[list[str], dict[str, int], list[str]]:
    """Write the inputs; return the command-line paths, {expected input id: original frame count}, bad ids."""
    rng = np.random.default_rng(0)
    folder = root / "inputs"
    folder.mkdir(parents=True)
    expected: dict[str, int] = {}
    if has_nib:
        expected[str(write_nifti(folder / "scan.nii.gz", rng.random((20, 24, 12)) * 255))] = 12
    if has_pydicom:
        expected[str(write_dicom_series(folder / "series", rng.integers(0, 4000, (6, 24, 24))))] = 6
        cine = write_dicom(folder / "cine.dcm", rng.integers(0, 256, (10, 32, 40, 3)), "1.2.3.4", num_frames=10,
                           rgb=True)
        expected[str(cine)] = 10
    if has_av:
        expected[str(write_video(folder / "clip.mp4", rng.integers(0, 256, (40, 32, 32)).astype(np.uint8)))] = 40
    (folder / "notes.txt").write_text("not an image: skipped when a folder is expanded")
    npz = write_medmnist_npz(root / "vessel.npz", n_test=3)
    expected.update({f"{npz}#{i}": 28 for i in range(3)})
    bad = root / "corrupt.nii.gz"
    bad.write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    paths = [str(folder), str(npz), str(bad)]
    bad_ids = [str(bad)]
    if has_av:
        data = (folder / "clip.mp4").read_bytes()
        truncated = root / "truncated.mp4"
        truncated.write_bytes(data[: len(data) // 2])
        paths.append(str(truncated))
        bad_ids.append(str(truncated))
    return paths, expected, bad_ids


@pytest.fixture(scope="module")
def run(tmp_path_factory, vessel_checkpoint):
    root = tmp_path_factory.mktemp("predict")
    paths, expected, bad_ids = _make_inputs(root)
    output, montages = root / "out" / "results.csv", root / "montages"
    cmd = [PYTHON, "-m", "monai_das.apps.cli", "predict", "--bundle", str(VESSEL_BUNDLE), "--input", *paths,
           "--output", str(output), "--ckpt", str(vessel_checkpoint), "--montage_dir", str(montages)]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    with open(output, newline="") as f:
        rows = {r["input"]: r for r in csv.DictReader(f)}
    return {"proc": proc, "rows": rows, "expected": expected, "bad": bad_ids, "output": output, "root": root,
            "ckpt": vessel_checkpoint, "montages": montages}


def test_one_row_per_input_and_exit_status(run):
    assert run["proc"].returncode == 0, run["proc"].stderr[-3000:]
    assert set(run["rows"]) == set(run["expected"]) | set(run["bad"])
    with open(run["output"], newline="") as f:
        header = next(csv.reader(f))
    assert header[:4] == ["input", "status", "predicted_class", "predicted_label"]
    assert header[4:] == [f"prob_{c}" for c in CLASSES] + [
        "picked_frames", "source_frames", "source_uids", "num_source_frames", "montage", "error", "warning",
        "domain_warning", "checkpoint_sha256", "bundle_version"]


def test_ok_rows(run):
    for name, num_source in run["expected"].items():
        row = run["rows"][name]
        assert row["status"] == "ok" and row["error"] == "", row
        probs = np.array([float(row[f"prob_{c}"]) for c in CLASSES])
        assert abs(probs.sum() - 1) < 1e-4 and (probs >= 0).all()
        assert int(row["predicted_class"]) == int(probs.argmax()) and row["predicted_label"] == CLASSES[probs.argmax()]
        # k picks, or every frame of a shorter input: distinct source frames, in order
        picked = [int(v) for v in row["picked_frames"].split()]
        assert len(picked) == min(K, num_source), picked
        assert picked[0] >= 0 and all(a < b < T for a, b in zip(picked, picked[1:])), picked
        source = [int(v) for v in row["source_frames"].split()]
        first = 1 if name.endswith("series") else 0  # a DICOM series numbers its slices by InstanceNumber, from 1
        assert len(source) == len(picked) and all(first <= s < first + num_source for s in source), source
        assert source == sorted(set(source))
        assert int(row["num_source_frames"]) == num_source
        assert row["checkpoint_sha256"] == hashlib.sha256(run["ckpt"].read_bytes()).hexdigest()
        assert row["bundle_version"] == json.loads((VESSEL_BUNDLE / "configs/metadata.json").read_text())["version"]
        montage = Path(row["montage"])
        assert montage.parent == run["montages"] and montage.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    npz_rows = [r for n, r in run["rows"].items() if "#" in n]
    assert all(r["picked_frames"] == r["source_frames"] for r in npz_rows)  # 28 frames: nothing resampled
    assert len({r["prob_vessel"] for r in run["rows"].values() if r["status"] == "ok"}) > 1  # depends on the input
    assert len(list(run["montages"].glob("*.png"))) == len(run["expected"])


def test_bad_files_are_error_rows_naming_the_file(run):
    for name in run["bad"]:
        row = run["rows"][name]
        assert row["status"] == "error" and Path(name).name in row["error"], row
        assert row["predicted_class"] == row["picked_frames"] == row["montage"] == ""


def test_existing_output_is_not_overwritten(run, capsys):
    output = run["output"]
    before = output.read_bytes()
    args = ["predict", "--bundle", str(VESSEL_BUNDLE), "--input", str(run["root"] / "corrupt.nii.gz"),
            "--output", str(output), "--ckpt", str(run["ckpt"])]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert str(output) in err and "--overwrite" in err and "--resume" in err
    assert output.read_bytes() == before
    # with --overwrite it is replaced; no input succeeded: exit status 2
    assert cli.main([*args, "--overwrite"]) == 2
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["status"] == "error"


def test_cli_usage_errors(tmp_path, capsys):
    assert cli.main([]) == 2
    assert cli.main(["no_such_command"]) == 2
    assert "predict" in capsys.readouterr().err
    out = tmp_path / "r.csv"
    args = ["predict", "--bundle", str(VESSEL_BUNDLE), "--input", str(tmp_path), "--output", str(out),
            "--ckpt", str(tmp_path / "missing.pt")]
    assert cli.main(args) == 1 and "missing.pt" in capsys.readouterr().err
    assert cli.main([*args[:-2], "--montage-dir", "x"]) == 1  # a typo is not taken for a bundle override
    assert "--montage-dir" in capsys.readouterr().err and not out.exists()


# ------------------------------------------------------------------------------------------- readers, in-process


@needs_dicom
def test_dicom_series_with_modality_lut_and_a_cine_in_one_folder(tmp_path):
    slices = np.stack([np.full((8, 10), 1000 * (i + 1)) for i in range(6)])
    folder = write_dicom_series(tmp_path / "series", slices)  # file names run backwards
    write_dicom(folder / "cine.dcm", np.zeros((3, 8, 10, 3)), "9.9", num_frames=3, rgb=True)
    specs = expand_inputs([folder])
    assert [(s.kind, s.id) for s in specs] == [("dicom_series", str(folder)), ("dicom", str(folder / "cine.dcm"))]
    seq = LoadSequence()(specs[0].source)
    # identity ImageOrientationPatient: rows run to posterior, columns to the left, as the axial frames (SPL) do
    assert seq.frames.shape == (1, 6, 8, 10) and seq.num_source_frames == 6 and seq.source_frames == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(seq.frames[0, :, 0, 0], [1000 * (i + 1) - 100 for i in range(6)])  # intercept -100


@needs_dicom
def test_dicom_folder_with_two_series(tmp_path):
    for i, uid in enumerate(("1.2.3", "1.2.4")):
        write_dicom(tmp_path / f"a{i}.dcm", np.zeros((4, 4)), uid)
        write_dicom(tmp_path / f"b{i}.dcm", np.ones((4, 4)), uid, instance_number=2)
    specs = expand_inputs([tmp_path])
    assert sorted(s.id for s in specs) == [f"{tmp_path}#1.2.3", f"{tmp_path}#1.2.4"]
    assert all(len(s.files) == 2 for s in specs)


@needs_dicom
def test_multiframe_rgb_dicom_becomes_grey_and_is_resampled(tmp_path, vessel_checkpoint):
    rgb = np.zeros((5, 6, 7, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # pure red: luma 0.299 * 200
    rgb[2, ..., 1] = 100  # frame 2 also green
    spec = expand_inputs([write_dicom(tmp_path / "cine.dcm", rgb, "1.2", num_frames=5, rgb=True)])[0]
    predictor = BundlePredictor(VESSEL_BUNDLE, ckpt=vessel_checkpoint, overrides={"frame_size": 7})
    data = predictor.prepare(spec.source)
    image, index = data["image"], data["image_frame_index"].reshape(-1)
    assert image.shape == (1, T, 7, 7) and index.tolist() == uniform_frame_indices(5, T).tolist()
    is_two = index == 2
    torch.testing.assert_close(image[0, ~is_two], torch.full_like(image[0, ~is_two], 0.299 * 200 / 255))
    torch.testing.assert_close(image[0, is_two], torch.full_like(image[0, is_two], (0.299 * 200 + 0.587 * 100) / 255))
    # each read frame first appears once: the mask marks the repeats of a short input
    assert data["image_frame_mask"].sum() == 5


@needs_nifti
@pytest.mark.parametrize("sampler_name", ["das", "das_segments", "dps", "adps", "uniform", "random", "full"])
def test_short_volumes_never_spend_two_picks_on_one_slice(tmp_path, sampler_name):
    """25 and 10 axial slices, resampled to the bundle's 28 by repeating slices: k = 14 picks of distinct slices for
    the first, every slice once for the second (the frame mask of the bundle's preprocessing reaches the sampler)."""
    from monai_das.apps.predict import predict

    ckpt = save_checkpoint(build_network(sampler_name=sampler_name), tmp_path / "model.pt")
    rng = np.random.default_rng(4)
    lengths = (25, 10)
    paths = [write_nifti(tmp_path / f"scan{n}.nii.gz", rng.random((28, 28, n)) * 255) for n in lengths]
    rows = predict(VESSEL_BUNDLE, paths, tmp_path / "out.csv", ckpt=ckpt, overrides={"sampler_name": sampler_name})
    for row, n in zip(rows, lengths):
        assert row["status"] == "ok", row
        source = [int(v) for v in row["source_frames"].split()]
        picked = [int(v) for v in row["picked_frames"].split()]
        expected = n if sampler_name == "full" else min(K, n)
        assert len(picked) == len(source) == expected and source == sorted(set(source)), (n, picked, source)
        if expected == n:
            assert source == list(range(n))


def test_npz_volume_gets_the_training_intensities(tmp_path, vessel_checkpoint):
    """A MedMNIST npz volume through the bundle's inference preprocessing is exactly the training input (the dataset's
    8-bit values through train.json's ``validate#preprocessing``)."""
    from monai.bundle import ConfigParser

    from monai_das.data import MedMNIST3D

    npz = write_medmnist_npz(tmp_path / "vesselmnist3d.npz", n_test=3)
    specs = expand_inputs([npz])
    assert [s.id for s in specs] == [f"{npz}#{i}" for i in range(3)]
    assert [s.id for s in expand_inputs([npz], npz_split="val")] == [f"{npz}#0"]
    predictor = BundlePredictor(VESSEL_BUNDLE, ckpt=vessel_checkpoint)
    parser = ConfigParser()
    parser.read_config(str(VESSEL_BUNDLE / "configs" / "train.json"))
    training = MedMNIST3D(tmp_path, "vesselmnist3d", split="test", check_md5=False,
                          transform=parser.get_parsed_content("validate#preprocessing"))
    for i in range(3):
        torch.testing.assert_close(torch.as_tensor(predictor.prepare(specs[i].source)["image"]),
                                   torch.as_tensor(training[i]["image"]), rtol=0, atol=0)


def test_missing_and_unknown_inputs(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    missing, unknown = expand_inputs([tmp_path / "nope.nii", tmp_path / "x.txt"])
    assert missing.error and "nope.nii" in missing.error
    assert unknown.error and "unsupported file type" in unknown.error and "x.txt" in unknown.error


@needs_nifti
def test_out_of_domain_input_gets_a_domain_warning(tmp_path, vessel_checkpoint):
    """The vessel bundle learned from binary masks (0 / 255, ~2 % foreground): a CT-like volume in Hounsfield units
    is flagged, in the CSV's domain_warning column; a mask like the training ones is not."""
    from monai_das.apps.predict import predict

    rng = np.random.default_rng(3)
    ct = write_nifti(tmp_path / "ct.nii.gz", rng.normal(40, 400, (28, 28, 28)).clip(-1000, 3000))
    mask = np.zeros((28, 28, 28))
    mask[10:14, 12:15, 4:24] = 255  # a tube: 1.2 % foreground
    shape = write_nifti(tmp_path / "mask.nii.gz", mask)
    rows = {Path(r["input"]).name: r for r in predict(VESSEL_BUNDLE, [ct, shape], tmp_path / "r.csv",
                                                      ckpt=vessel_checkpoint)}
    warning = rows["ct.nii.gz"]["domain_warning"]
    assert rows["ct.nii.gz"]["status"] == "ok" and "unlike the training data" in warning
    assert "outside_fraction" in warning and "training: 0-0" in warning
    assert rows["mask.nii.gz"]["domain_warning"] == "" and "unlike" not in rows["mask.nii.gz"]["warning"]


def test_domain_statistics():
    from monai_das.transforms import domain_warning, input_statistics, training_statistics

    masks = np.zeros((3, 10, 10, 10))
    masks[:, :2] = 255
    stats = training_statistics(masks)
    assert stats == {"value_range": [0.0, 255.0], "volumes": 3, "outside_fraction": [0.0, 0.0],
                     "extreme_fraction": [1.0, 1.0], "foreground_fraction": [0.2, 0.2]}
    assert input_statistics(np.array([-1.0, 0.0, 100.0, 255.0]), (0, 255)) == {
        "outside_fraction": 0.25, "extreme_fraction": 0.75, "foreground_fraction": 0.25}
    assert domain_warning(masks[0], stats) == ""
    grey = np.full((10, 10, 10), 128.0)
    assert domain_warning(grey, stats) == ("input unlike the training data (values in 0-255): extreme_fraction 0.000 "
                                           "(training: 1-1), foreground_fraction 1.000 (training: 0.2-0.2)")


def test_a_size_64_checkpoint_needs_only_ckpt(tmp_path):
    """A checkpoint as the bundles save it (``{"model", "network_config"}``) trained at ``--image_size 64``: predict
    rebuilds its network from the checkpoint alone; an override that contradicts it names the key and both values;
    the same weights as a plain state dict (an old checkpoint) need the override again."""
    from monai.bundle import ConfigParser

    from monai_das.apps.predict import predict

    parser = ConfigParser()
    parser.read_config(str(VESSEL_BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(VESSEL_BUNDLE), "image_size": 64, "sampler_name": "uniform"})
    network = parser.get_parsed_content("network_def")
    options = parser.get_parsed_content("network_config").state_dict()
    assert options["num_frames"] == 64 == options["frame_size"] and options["sampler_name"] == "uniform"
    assert options["backbone"] == "monai_das.networks.nets.mobilenet_v3.MobileNetV3Small"
    ckpt = tmp_path / "model64.pt"
    torch.save({"model": network.state_dict(), "network_config": options}, ckpt)
    volume = write_nifti(tmp_path / "v.nii.gz", np.random.default_rng(0).random((64, 64, 64)) * 255)

    (row,) = predict(VESSEL_BUNDLE, [volume], tmp_path / "r.csv", ckpt=ckpt)
    assert row["status"] == "ok", row
    assert len(row["picked_frames"].split()) == 32  # k = 0.5 * 64: the checkpoint's T, not the config's 28
    with pytest.raises(ValueError, match=r"--image_size 28 conflicts with checkpoint .* image_size = 64"):
        predict(VESSEL_BUNDLE, [volume], tmp_path / "r2.csv", ckpt=ckpt, overrides={"image_size": 28})
    old = tmp_path / "old.pt"
    torch.save(network.state_dict(), old)
    with pytest.raises(ValueError, match="does not fit the network"):
        predict(VESSEL_BUNDLE, [volume], tmp_path / "r3.csv", ckpt=old)
    (row,) = predict(VESSEL_BUNDLE, [volume], tmp_path / "r4.csv", ckpt=old,
                     overrides={"image_size": 64, "sampler_name": "uniform"})
    assert row["status"] == "ok" and len(row["picked_frames"].split()) == 32


def test_a_checkpoint_of_another_bundle_is_refused_naming_both(tmp_path):
    """A COVID-BLUES checkpoint (other data, classes and frames) given to the Vessel bundle: refused before any
    input is read, naming the checkpoint, the bundle and the options that differ (it used to answer 'positive')."""
    from monai.bundle import ConfigParser

    from monai_das.apps.predict import predict

    covid = REPO / "bundles" / "covid_blues_das_classification"
    parser = ConfigParser()
    parser.read_config(str(covid / "configs" / "train.json"))
    parser.update({"bundle_root": str(covid), "device": "$torch.device('cpu')"})
    ckpt = tmp_path / "covid.pt"
    torch.save({"model": parser.get_parsed_content("network_def").state_dict(),
                "network_config": parser.get_parsed_content("network_config").state_dict()}, ckpt)
    volume = write_nifti(tmp_path / "v.nii.gz", np.zeros((28, 28, 28)))
    with pytest.raises(ValueError, match=rf"checkpoint '{ckpt}' does not fit bundle '{VESSEL_BUNDLE}': data_name = "
                                         r"'covid_blues' in the checkpoint, 'vesselmnist3d' in the bundle"):
        predict(VESSEL_BUNDLE, [volume], tmp_path / "r.csv", ckpt=ckpt)
    assert not (tmp_path / "r.csv").exists()


def test_the_class_is_decided_at_the_threshold_stored_with_the_checkpoint(tmp_path):
    """A binary checkpoint carries the threshold chosen on validation (``decision_threshold``): predict's class is
    class 1 exactly where its probability is above it, whatever the argmax says; the probabilities are unchanged."""
    from monai.bundle import ConfigParser

    from monai_das.apps.predict import predict

    parser = ConfigParser()
    parser.read_config(str(VESSEL_BUNDLE / "configs" / "train.json"))
    parser.update({"bundle_root": str(VESSEL_BUNDLE), "device": "$torch.device('cpu')", "sampler_name": "uniform"})
    weights = build_network(sampler_name="uniform").state_dict()
    options = parser.get_parsed_content("network_config").state_dict()
    rng = np.random.default_rng(0)
    volumes = [write_nifti(tmp_path / f"v{i}.nii.gz", rng.random((28, 28, 28)) * 255) for i in range(3)]
    rows = {}
    for threshold in (0.0, 1.0, None):
        ckpt = tmp_path / f"model_{threshold}.pt"
        stored = options if threshold is None else {**options, "decision_threshold": threshold}
        torch.save({"model": weights, "network_config": stored}, ckpt)
        rows[threshold] = predict(VESSEL_BUNDLE, volumes, tmp_path / f"r_{threshold}.csv", ckpt=ckpt)
    positive = f"prob_{options['class_names'][1]}"
    for i in range(3):
        p1 = float(rows[None][i][positive])
        assert 0.0 < p1 < 1.0 and float(rows[0.0][i][positive]) == p1 == float(rows[1.0][i][positive])
        assert rows[0.0][i]["predicted_class"] == "1" and rows[1.0][i]["predicted_class"] == "0"
        assert rows[None][i]["predicted_class"] == str(int(p1 > 0.5))  # no stored threshold: the argmax
