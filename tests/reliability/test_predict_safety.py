"""``monai-das predict`` as a careless user or a hostile folder would run it: killed mid-batch then resumed, a folder
with symlink loops, a duplicate link and a FIFO, file names that a spreadsheet runs as formulas, and a small .nii.gz
that unpacks to 768^3 voxels (issue 16, items 4, 5, 6 and 8); a folder link out of the folder given, a device the
machine lacks, an output that is an input or under a file, NaN and zero-spacing affines, and library notices in the
per-file warnings (issue 27)."""

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
    write_dicom_series,
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


def test_walk_stays_inside_the_folder_given(tmp_path):
    """``sub/up2 -> ../..`` ran every input above the folder; links out are now error rows that name them."""
    rng = np.random.default_rng(3)
    for name in ("a", "b"):
        write_nifti(tmp_path / f"{name}.nii.gz", rng.random((12, 12, 10)))  # outside the folder given
    root = tmp_path / "scans"
    (root / "sub").mkdir(parents=True)
    inside = write_nifti(root / "sub" / "scan.nii.gz", rng.random((12, 12, 10)))
    os.symlink("../..", root / "sub" / "up2")
    os.symlink(tmp_path / "a.nii.gz", root / "a_link.nii.gz")
    specs = expand_inputs([root])
    ok = [s.id for s in specs if s.error is None]
    assert ok == [str(inside)]
    refused = {s.id: s.error for s in specs if s.error is not None}
    assert set(refused) == {str(root / "a_link.nii.gz"), str(root / "sub" / "up2")}
    assert all("outside the folder given" in e for e in refused.values()), refused


def test_cuda_on_a_machine_without_it_is_a_clear_error(tmp_path, ckpt):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    scan = write_nifti(tmp_path / "scan.nii.gz", np.random.default_rng(4).random((12, 12, 10)))
    proc = subprocess.run(predict_cmd(ckpt, tmp_path / "r.csv", scan, extra=("--device", "cuda:0")), cwd=REPO,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "--device cuda:0: this machine has no CUDA device" in proc.stderr
    assert "Traceback" not in proc.stderr and "AssertionError" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()


@needs_nifti
def test_output_that_is_an_input_or_under_a_file(tmp_path, ckpt):
    scan = write_nifti(tmp_path / "scan.nii.gz", np.random.default_rng(5).random((12, 12, 10)))
    before = scan.read_bytes()
    proc = subprocess.run(predict_cmd(ckpt, scan, scan, extra=("--overwrite",)), cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "is also an input" in proc.stderr, proc.stderr[-3000:]
    assert scan.read_bytes() == before
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run(predict_cmd(ckpt, tmp_path / "afile" / "r.csv", scan), cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"'{tmp_path / 'afile'}' is a file, not a folder" in proc.stderr and "Errno 17" not in proc.stderr


@needs_nifti
def test_nan_and_zero_spacing_affines(tmp_path, ckpt):
    import nibabel as nib

    from monai_das.apps.predict import predict

    volume = (np.random.default_rng(6).random((12, 12, 10)) * 255).astype(np.float32)

    def patched(name: str, offsets: tuple[int, ...], value: float) -> None:
        """nibabel refuses to write a NaN or singular affine, and rewrites pixdim from the affine: write a good
        file, then patch the header's bytes."""
        img = nib.Nifti1Image(volume, np.eye(4))
        img.set_qform(None, code=0)  # the affine comes from the sform alone
        nib.save(img, str(tmp_path / name))
        data = bytearray((tmp_path / name).read_bytes())
        for offset in offsets:
            data[offset:offset + 4] = np.float32(value).tobytes()
        (tmp_path / name).write_bytes(bytes(data))

    patched("nan.nii", (280,), np.nan)  # srow_x[0]
    patched("flat.nii", (320,), 0.0)  # srow_z[2]: a zero spacing along z
    patched("zero_pixdim.nii", (80, 84, 88), 0.0)  # pixdim[1:4]; the sform stays usable
    rows = {Path(r["input"]).name: r for r in predict(VESSEL_BUNDLE, sorted(tmp_path.glob("*.nii*")),
                                                      tmp_path / "r.csv", ckpt=ckpt)}
    assert rows["nan.nii"]["status"] == "error" and "non-finite affine" in rows["nan.nii"]["error"], rows["nan.nii"]
    assert str(tmp_path / "nan.nii") in rows["nan.nii"]["error"]
    assert rows["flat.nii"]["status"] == "error" and "singular affine" in rows["flat.nii"]["error"], rows["flat.nii"]
    zero = rows["zero_pixdim.nii"]
    assert zero["status"] == "ok" and "zero_pixdim.nii" in zero["warning"] and "pixdim" in zero["warning"], zero


@needs_nifti
def test_library_notices_stay_out_of_the_rows(tmp_path, ckpt):
    """MONAI's DICOM reader warns 'nvImageCodec decoder plugin did not register' whenever it is built: a notice about
    the library, logged once, not a warning about each file."""
    pytest.importorskip("pydicom")
    from monai_das.apps.predict import predict

    rng = np.random.default_rng(7)
    series = write_dicom_series(tmp_path / "series", (rng.random((6, 16, 16)) * 255).astype(np.uint16))
    scans = [write_nifti(tmp_path / f"s{i}.nii.gz", rng.random((12, 12, 10)) * 255) for i in range(2)]
    rows = predict(VESSEL_BUNDLE, [series, *scans], tmp_path / "r.csv", ckpt=ckpt)
    assert [r["status"] for r in rows] == ["ok"] * 3, rows
    assert not [r["warning"] for r in rows if "nvImageCodec" in r["warning"] or "did not register" in r["warning"]]
