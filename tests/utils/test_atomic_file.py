from __future__ import annotations

import os
import stat

import pytest

from monai_das.utils import atomic_write


def test_text_and_binary_files_are_written(tmp_path):
    path = tmp_path / "sub" / "a.csv"
    with atomic_write(path, newline="") as f:
        f.write("x,y\n1,2\n")
    assert path.read_text() == "x,y\n1,2\n"
    with atomic_write(str(path), "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["a.csv"]  # no temporary file left
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # what open() gives, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path, "wb") as f:
            f.write(b"half of the new")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.pt"]


def test_overwrite_false_refuses_an_existing_file(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("finished work")
    with pytest.raises(FileExistsError, match="predictions.csv"):
        with atomic_write(path, overwrite=False) as f:
            f.write("new")
    assert path.read_text() == "finished work" and os.listdir(tmp_path) == ["predictions.csv"]


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        with atomic_write("x", "a"):
            pass
