"""``inference.json`` on a hospital folder: a bad file is an error row (the others still run), every row is traceable
(source frames, domain warning, checkpoint sha256), and a checkpoint trained for another bundle is refused."""

from __future__ import annotations

import csv
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

monai_bundle = pytest.importorskip("monai.bundle")
nib = pytest.importorskip("nibabel")

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
VESSEL = BUNDLES_DIR / "vesselmnist3d_das_classification"


def save_checkpoint(name: str, path: Path, **overrides) -> Path:
    """A checkpoint as the bundles save it (``{"model", "network_config"}``), of a network built from ``train.json``."""
    parser = monai_bundle.ConfigParser()
    parser.read_config(str(BUNDLES_DIR / f"{name}_das_classification" / "configs" / "train.json"))
    parser.update({"device": "$torch.device('cpu')", **overrides})
    network = parser.get_parsed_content("network_def")
    torch.save({"model": network.state_dict(), "network_config": parser.get_parsed_content("network_config").state_dict()},
               path)
    return path


def run_inference(**overrides) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
        workflow = monai_bundle.scripts.create_workflow(config_file=str(VESSEL / "configs" / "inference.json"),
                                                        logging_file=False, **overrides)
        workflow.run()
        workflow.finalize()


def write_nifti(path: Path, volume: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), str(path))
    return str(path)


def test_a_bad_file_is_an_error_row_and_rows_are_traceable(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    mask = np.zeros((28, 28, 40))
    mask[10:14, 12:15, 4:36] = 255  # like the training masks, 40 slices: 28 of them are kept
    write_nifti(folder / "a_mask.nii.gz", mask)
    write_nifti(folder / "b_ct.nii.gz", rng.normal(40, 400, (28, 28, 28)))  # unlike them: a domain warning
    bad = write_nifti(folder / "c_4d.nii.gz", rng.random((28, 28, 28, 2)) * 255)
    ckpt = save_checkpoint("vesselmnist3d", tmp_path / "model.pt")
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="b_ct.nii.gz: input unlike the training data"):
        run_inference(input_paths=[str(folder)], ckpt_path=str(ckpt), output_dir=str(out))
    with open(out / "predictions.csv", newline="") as f:
        rows = {Path(r["id"]).name: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["a_mask.nii.gz", "b_ct.nii.gz", "c_4d.nii.gz"]
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert {r["checkpoint_sha256"] for r in rows.values()} == {sha}

    error = rows["c_4d.nii.gz"]
    assert error["status"] == "error" and error["predicted_class"] == "" and error["prob_vessel"] == ""
    assert error["error"].startswith("ValueError: NIfTI file") and bad in error["error"], error["error"]
    assert "4-D" in error["error"] or "(28, 28, 28, 2)" in error["error"], error["error"]
    for name in ("a_mask.nii.gz", "b_ct.nii.gz"):
        row = rows[name]
        assert row["status"] == "ok" and row["error"] == "", row
        probs = [float(row["prob_vessel"]), float(row["prob_aneurysm"])]
        assert abs(sum(probs) - 1) < 1e-4 and row["predicted_label"] in ("vessel", "aneurysm")
        picked = [int(i) for i in row["picked_frames"].split()]
        source = [int(i) for i in row["source_frames"].split()]
        assert len(picked) == len(source) == 14
    assert rows["a_mask.nii.gz"]["domain_warning"] == ""
    assert rows["b_ct.nii.gz"]["domain_warning"].startswith("input unlike the training data")
    # 40 slices read evenly down to 28: the source numbers span the file's slices, not the network's 0..27
    assert max(int(i) for i in rows["a_mask.nii.gz"]["source_frames"].split()) > 27


@pytest.mark.parametrize("name, overrides, named", [
    ("covid_blues", {}, ["data_name = 'covid_blues' in the checkpoint, 'vesselmnist3d' in the bundle",
                         "class_names = ['negative', 'positive'] in the checkpoint, ['vessel', 'aneurysm']"]),
    ("vesselmnist3d", {"image_size": 64}, ["num_frames = 64 in the checkpoint, 28 in the bundle"]),
])
def test_a_checkpoint_of_another_bundle_is_refused(name, overrides, named, tmp_path):
    ckpt = save_checkpoint(name, tmp_path / "other.pt", **overrides)
    volume = write_nifti(tmp_path / "v.nii.gz", np.zeros((28, 28, 28)))
    with pytest.raises(Exception) as raised:
        run_inference(input_paths=[volume], ckpt_path=str(ckpt), output_dir=str(tmp_path / "out"))
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__
    text = "\n".join(chain)
    bundle_name = json.loads((VESSEL / "configs" / "metadata.json").read_text())["name"]
    assert f"checkpoint '{ckpt}' does not fit bundle '{bundle_name}'" in text, text
    for needle in named:
        assert needle in text, text
    assert not (tmp_path / "out" / "predictions.csv").exists()


@pytest.mark.parametrize("threshold, decided", [(0.0, "1"), (1.0, "0")])
def test_the_class_is_decided_at_the_threshold_stored_with_the_checkpoint(threshold, decided, tmp_path):
    """predictions.csv's class follows the threshold the checkpoint stores (chosen on validation), not the argmax."""
    ckpt = save_checkpoint("vesselmnist3d", tmp_path / "model.pt")
    state = torch.load(ckpt, weights_only=True)
    state["network_config"]["decision_threshold"] = threshold
    torch.save(state, ckpt)
    rng = np.random.default_rng(0)
    volumes = [write_nifti(tmp_path / f"v{i}.nii.gz", rng.random((28, 28, 28)) * 255) for i in range(2)]
    run_inference(input_paths=volumes, ckpt_path=str(ckpt), output_dir=str(tmp_path / "out"))
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["predicted_class"] for r in rows} == {decided}
    assert all(0.0 < float(r["prob_aneurysm"]) < 1.0 for r in rows)
