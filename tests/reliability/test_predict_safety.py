"""``monai-das predict`` as a careless user or a hostile folder would run it: killed mid-batch then resumed, a folder
with symlink loops, a duplicate link and a FIFO, file names that a spreadsheet runs as formulas, and a small .nii.gz
that unpacks to 768^3 voxels (issue 16, items 4, 5, 6 and 8)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

APPS_TESTS = Path(__file__).resolve().parents[1] / "apps"
if str(APPS_TESTS) not in sys.path:
    sys.path.insert(0, str(APPS_TESTS))

from apps_testing import (  # noqa: E402
    PYTHON,
    REPO,
    VESSEL_BUNDLE,
    build_network,
    has_nib,
    save_checkpoint,
    subprocess_env,
    write_medmnist_npz,
    write_nifti,
)

from monai_das.apps.prediction_table import unescape_cell  # noqa: E402
from monai_das.data import expand_inputs  # noqa: E402

needs_nifti = pytest.mark.skipif(not has_nib, reason="nibabel is not installed")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(build_network(), tmp_path_factory.mktemp("ckpt") / "model.pt")


def predict_cmd(ckpt: Path, output: Path, *inputs: str | Path, extra: tuple[str, ...] = ()) -> list[str]:
    return [PYTHON, "-m", "monai_das.apps.cli", "predict", "--bundle", str(VESSEL_BUNDLE), "--ckpt", str(ckpt),
            "--output", str(output), "--input", *map(str, inputs), *extra]


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_killed_mid_batch_then_resumed(tmp_path, ckpt):
    npz = write_medmnist_npz(tmp_path / "vessel.npz", n_test=150)
    output, montages = tmp_path / "out" / "results.csv", tmp_path / "montages"
    partial = output.with_name("results.csv.partial")
    cmd = predict_cmd(ckpt, output, npz, extra=("--montage_dir", str(montages)))
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and len(rows_of(partial)) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"predict ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = rows_of(partial)
    assert 5 <= len(kept) < 150 and not output.exists()  # the finished rows are on disk, the CSV is not claimed
    assert all(r["status"] == "ok" for r in kept)

    # a plain rerun refuses to discard them, and says how to go on
    again = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--resume" in again.stderr and str(partial) in again.stderr
    # --resume keeps them, runs the rest, replaces the killed run's montages, and closes the CSV
    resumed = subprocess.run([*cmd, "--resume"], cwd=REPO, env=subprocess_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: " in resumed.stderr
    rows = rows_of(output)
    assert [r["input"] for r in rows] == [f"{npz}#{i}" for i in range(150)] and not partial.exists()
    assert rows[: len(kept)] == kept
    assert all(r["status"] == "ok" and Path(r["montage"]).is_file() for r in rows)
    # a finished CSV resumes to itself: nothing is run again
    assert subprocess.run([*cmd, "--resume"], cwd=REPO, env=subprocess_env(), capture_output=True,
                          timeout=300).returncode == 0
    assert rows_of(output) == rows


@needs_nifti
def test_folder_walk_with_symlink_loops_a_duplicate_link_and_a_fifo(tmp_path, ckpt):
    root = tmp_path / "scans"
    (root / "sub").mkdir(parents=True)
    volume = np.random.default_rng(0).random((12, 12, 10)) * 255
    scan = write_nifti(root / "sub" / "scan.nii.gz", volume)
    os.symlink(root, root / "sub" / "to_root")  # a loop
    os.symlink(root / "sub", root / "again")  # a second way to the same folder
    os.symlink(scan, root / "link.nii.gz")  # a second name of the same file
    os.mkfifo(root / "pipe.nii.gz")  # opening it blocks until a writer comes
    os.mkfifo(root / "pipe.dcm")
    specs = expand_inputs([root])
    assert [(s.kind, s.id) for s in specs] == [("nifti", str(root / "again" / "scan.nii.gz"))]
    output = tmp_path / "r.csv"
    proc = subprocess.run(predict_cmd(ckpt, output, root, root / "pipe.nii.gz"), cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["input"]: r for r in rows_of(output)}
    assert set(rows) == {str(root / "again" / "scan.nii.gz"), str(root / "pipe.nii.gz")}
    assert rows[str(root / "again" / "scan.nii.gz")]["status"] == "ok"
    fifo = rows[str(root / "pipe.nii.gz")]
    assert fifo["status"] == "error" and "not a regular file" in fifo["error"]


@needs_nifti
def test_formula_like_names_are_escaped(tmp_path, ckpt):
    names = ["+1.nii.gz", "-2.nii.gz", "=HYPERLINK(1).nii.gz", "@sum.nii.gz"]  # in the order a folder lists them
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in names:
        write_nifti(folder / name, rng.random((12, 12, 10)) * 255)
    (folder / "=bad.nii.gz").write_bytes(b"not a nifti")
    names = sorted([*names, "=bad.nii.gz"])
    output = tmp_path / "r.csv"
    proc = subprocess.run(predict_cmd(ckpt, output, "."), cwd=folder, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(output, newline="", encoding="utf-8") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]  # no cell a spreadsheet would evaluate
    rows = rows_of(output)
    assert [r["input"] for r in rows] == ["'" + n for n in names]
    assert [unescape_cell(r["input"]) for r in rows] == names
    assert [r["status"] for r in rows] == ["error" if n == "=bad.nii.gz" else "ok" for n in names]


@needs_nifti
def test_size_limit_refuses_a_small_file_holding_768_cubed_voxels(tmp_path, ckpt):
    import gzip
    import struct

    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((768, 768, 768))
    header.set_data_dtype(np.uint8)
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(header.binaryblock + struct.pack("<i", 0))
        for _ in range(12):
            f.write(bytes(768 * 768 * 64))
    small = write_nifti(tmp_path / "small.nii.gz", np.random.default_rng(2).random((20, 20, 20)) * 255)
    output = tmp_path / "r.csv"
    proc = subprocess.run(predict_cmd(ckpt, output, bomb, small), cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {Path(r["input"]).name: r for r in rows_of(output)}
    assert rows["bomb.nii.gz"]["status"] == "error" and "--max_voxels" in rows["bomb.nii.gz"]["error"]
    assert "452984832 voxels" in rows["bomb.nii.gz"]["error"] and rows["small.nii.gz"]["status"] == "ok"
    # the limit is the user's to set
    proc = subprocess.run(predict_cmd(ckpt, output, small, extra=("--max_voxels", "7999", "--overwrite")), cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "8000 voxels" in rows_of(output)[0]["error"]
