"""Reading checkpoints safely, with errors that name the file and say what is wrong with it.

Every checkpoint is read with ``torch.load(..., weights_only=True)``: only tensors, numbers, strings and containers of
them are unpickled, so a file cannot run code. torch's own errors for a bad file are unhelpful (an empty file gives a
bare ``EOFError``, a text file a ``KeyError``) or point to the unsafe way out (a pickled object makes torch suggest
``weights_only=False``, which would run whatever the file holds); :func:`load_checkpoint` replaces them with one
``ValueError`` that names the file.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch
from monai.handlers import CheckpointLoader

__all__ = ["load_checkpoint", "SafeCheckpointLoader"]


def _refusal(path: str, error: Exception) -> ValueError:
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in text.lower():
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" (here: {found.group(1)})" if found else ""
        return ValueError(
            f"checkpoint {path} holds Python objects other than tensors, numbers, strings and containers of them"
            f"{what}; it is refused, because unpickling such an object can run any code. A monai_das checkpoint "
            "(model.pt, last.pt) holds tensors only: save the network's state dict (torch.save(net.state_dict(), "
            "path)) from a copy you trust."
        )
    detail = f"{type(error).__name__}: {text[:200]}" if text and "weights_only" not in text else type(error).__name__
    return ValueError(f"{path} is not a readable PyTorch checkpoint ({detail}): it is truncated, corrupted or of "
                      "another format.")


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, map_location, weights_only=True)`` with clear errors.

    Raises:
        FileNotFoundError: when ``path`` is not a file.
        ValueError: naming ``path``, when it is empty, not a PyTorch checkpoint (truncated, corrupted, text...), or
            holds pickled Python objects other than tensors and plain data (refused, never loaded).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file {path}.")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path} is empty (0 bytes): its writing was interrupted or the copy is "
                         "incomplete.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - torch raises EOFError, KeyError, RuntimeError, UnpicklingError...
        raise _refusal(path, e) from None  # torch's message would suggest weights_only=False


class SafeCheckpointLoader(CheckpointLoader):
    """MONAI's :py:class:`monai.handlers.CheckpointLoader` (same arguments), which first reads ``load_path`` with
    :func:`load_checkpoint`, so that an empty, corrupted or unsafe checkpoint stops the run with an error naming the
    file instead of torch's traceback."""

    def __call__(self, engine: Any) -> None:
        load_checkpoint(self.load_path, map_location="cpu")
        super().__call__(engine)
