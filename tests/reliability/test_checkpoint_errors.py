"""Bad checkpoint and data files get one clear error that names the file: an empty checkpoint (not a bare EOFError),
a text file, a truncated file, a pickled object (refused without running it, and never a hint to pass
``weights_only=False``), as ``load_checkpoint``, on resume and in a bundle's evaluation; a damaged npz read without
its md5 check (not a bare ``zlib.error``)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from test_bundles import run_workflow

from monai_das.data.npz_dataset import NpzSequenceDataset
from monai_das.handlers import load_checkpoint, read_training_state

pytest.importorskip("ignite")


class _Payload:
    """Unpickling this runs a command (what a malicious checkpoint does)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def bad_files(folder) -> dict[str, tuple[object, str]]:
    """``{case: (path, what the message must say)}``."""
    good = folder / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    cases = {
        "empty": (b"", r"is empty \(0 bytes\)"),
        "text": (b"hello, this is not a checkpoint\n", "is not a readable PyTorch checkpoint"),
        "truncated": (good.read_bytes()[:200], "is not a readable PyTorch checkpoint"),
    }
    out = {}
    for name, (data, words) in cases.items():
        (folder / f"{name}.pt").write_bytes(data)
        out[name] = (folder / f"{name}.pt", words)
    torch.save({"model": _Payload(str(folder / "pwned"))}, folder / "malicious.pt")
    out["malicious"] = (folder / "malicious.pt", r"holds Python objects other than tensors.*\(here: posix.system\).*"
                                                 "refused")
    return out


def messages(error: BaseException) -> str:
    """What the traceback of ``error`` shows: its message and those of the exceptions it prints as its causes."""
    text = []
    while error is not None:
        text.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return "\n".join(text)


def test_load_checkpoint_errors(tmp_path):
    for case, (path, words) in bad_files(tmp_path).items():
        with pytest.raises(ValueError) as info:
            load_checkpoint(path)
        text = messages(info.value)
        assert str(path) in str(info.value) and re.search(words, str(info.value)), (case, text)
        assert "weights_only=False" not in text and "weights_only` set to `False" not in text, (case, text)
        assert info.value.__cause__ is None, case
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    assert torch.equal(load_checkpoint(tmp_path / "good.pt")["w"], torch.ones(3))


def test_resume_from_a_bad_training_state(tmp_path):
    path, words = bad_files(tmp_path)["empty"]
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is empty"):
        read_training_state(path)


@pytest.mark.parametrize("case", ["empty", "malicious"])
def test_bundle_evaluation_of_a_bad_model(tmp_path, case, restore_torch_state):
    path, words = bad_files(tmp_path)[case]
    out = tmp_path / "outputs"
    out.mkdir()
    os.replace(path, out / "model.pt")
    tiny = {"num_test": 4, "num_frames": 8, "frame_size": 16, "batch_size": 4, "output_dir": str(out)}
    with pytest.raises(Exception) as info:
        run_workflow("synthetic", ["train.json", "evaluate.json"], **tiny)
    text = messages(info.value)
    assert re.search(rf"{re.escape(str(out / 'model.pt'))}.*{words}", text), text
    assert "weights_only` set to `False" not in text and not (tmp_path / "pwned").exists()


def test_damaged_npz_names_the_file(tmp_path):
    path = tmp_path / "vesselmnist3d.npz"
    rng = np.random.default_rng(0)
    np.savez_compressed(path, train_images=rng.integers(0, 256, (4, 8, 8, 8), dtype=np.uint8),
                        train_labels=np.zeros((4, 1), np.uint8))
    data = bytearray(path.read_bytes())
    data[200:260] = bytes(60)  # inside the first compressed member
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"cannot read the 'train' arrays of {re.escape(str(path))}: the file is "
                                         "damaged"):
        NpzSequenceDataset(path, "train")
