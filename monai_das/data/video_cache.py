"""Decoded videos kept on disk: each decode is saved once as uint8 frames (keyed on the file's path, size, mtime
and the decoding options), so a training decodes every video once over all its epochs and runs."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from monai_das.utils.atomic_file import atomic_write

__all__ = ["VideoDecodeCache"]

#: part of every cache key: a change of the cached format invalidates the old files
CACHE_VERSION = 1


class VideoDecodeCache:
    """Decodes videos with :class:`monai_das.transforms.LoadVideo` (8-bit values, 0-255), through a disk cache.

    Args:
        cache_dir: folder of the cached decodes (``None``: decode every time).
        load_options: ``max_frames`` / ``frame_stride`` / ``grayscale`` of ``LoadVideo``.
    """

    def __init__(self, cache_dir: str | os.PathLike | None, load_options: Mapping[str, Any]) -> None:
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.load_options = dict(load_options)
        self._loader = None
        if self.cache_dir is not None:
            os.makedirs(self.cache_dir, exist_ok=True)

    def _cache_file(self, path: str) -> str:
        st = os.stat(path)
        key = json.dumps(
            [os.path.realpath(path), st.st_size, st.st_mtime_ns, self.load_options, CACHE_VERSION], sort_keys=True
        )
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(str(self.cache_dir), f"{stem}-{digest}.dascache.npy")

    def _decode(self, path: str) -> torch.Tensor:
        if self._loader is None:
            from monai_das.transforms import LoadVideo  # lazy: keeps this module free of the transforms import

            self._loader = LoadVideo(**self.load_options)
        img = self._loader(path)
        if hasattr(img, "as_tensor"):
            img = img.as_tensor()
        return torch.as_tensor(img, dtype=torch.float32)

    def load(self, path: str) -> torch.Tensor:
        """Decoded video ``(C, T, H, W)`` float32, 8-bit values (0-255), from the cache when there is one."""
        if self.cache_dir is None:
            return self._decode(path)
        cache = self._cache_file(path)
        if os.path.isfile(cache):
            try:
                arr = np.load(cache, allow_pickle=False)
                return torch.from_numpy(arr.astype(np.float32))
            except (OSError, ValueError):
                pass  # unreadable cache entry (e.g. interrupted write): decode again and replace it
        img = self._decode(path)
        quant = torch.round(img).clamp_(0, 255).to(torch.uint8)
        with atomic_write(cache, "wb") as f:
            np.save(f, quant.numpy(), allow_pickle=False)
        return img
