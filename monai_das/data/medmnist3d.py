"""MedMNIST v2/v3 3D datasets read from a local folder (no download by default).

Reference: Yang et al., "MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D biomedical
image classification", Scientific Data 10:41, 2023 (data licence CC BY 4.0).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

from monai.utils import optional_import

from .npz_dataset import NPZ_SPLITS, NpzSequenceDataset, _option

__all__ = [
    "MEDMNIST3D_FLAGS",
    "MEDMNIST3D_SIZES",
    "medmnist3d_info",
    "medmnist3d_filename",
    "class_names",
    "MedMNIST3D",
]

#: The six MedMNIST 3D datasets.
MEDMNIST3D_FLAGS: tuple[str, ...] = (
    "organmnist3d",
    "nodulemnist3d",
    "adrenalmnist3d",
    "fracturemnist3d",
    "vesselmnist3d",
    "synapsemnist3d",
)
#: Volume edge lengths published for the 3D sets (28 = MedMNIST v2, 64 = MedMNIST+).
MEDMNIST3D_SIZES: tuple[int, ...] = (28, 64)

_INFO: dict[str, Any] | None = None


def _load_info() -> dict[str, Any]:
    """``medmnist.info.INFO``, read from the package's ``info.py`` alone.

    Importing ``medmnist`` itself needs its dependencies (pandas among them), which ``pip install medmnist --no-deps``
    leaves out, and prints "Please install the required packages first" without them; its INFO table is a plain
    module that needs none of them.
    """
    global _INFO
    if _INFO is not None:
        return _INFO
    spec = importlib.util.find_spec("medmnist")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = os.path.join(loc, "info.py")
        if os.path.isfile(path):
            sub = importlib.util.spec_from_file_location("_monai_das_medmnist_info", path)
            if sub is not None and sub.loader is not None:
                module = importlib.util.module_from_spec(sub)
                sub.loader.exec_module(module)
                _INFO = dict(module.INFO)
                return _INFO
    raise ImportError(
        "the 'medmnist' package is needed for the MedMNIST dataset facts (md5, class names, urls); install it "
        "with `pip install medmnist --no-deps`, or pass check_md5=False to read a local file without it."
    )


def medmnist3d_info(flag: str) -> dict[str, Any]:
    """The ``medmnist.info.INFO`` entry of a 3D flag (url, MD5, labels, split sizes, licence...).

    Args:
        flag: one of :data:`MEDMNIST3D_FLAGS`.

    Raises:
        ValueError: for an unknown flag (the message lists the valid ones).
        ImportError: if medmnist is not installed.
    """
    flag = _option("flag", flag, MEDMNIST3D_FLAGS)
    return dict(_load_info()[flag])


def medmnist3d_filename(flag: str, size: int = 28) -> str:
    """File name of a MedMNIST 3D set: ``<flag>.npz`` for 28, ``<flag>_64.npz`` for 64.

    Raises:
        ValueError: for an unknown flag or size.
    """
    flag = _option("flag", flag, MEDMNIST3D_FLAGS)
    size = _option("size", size, MEDMNIST3D_SIZES)
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def class_names(flag: str) -> list[str]:
    """Class names of a MedMNIST 3D set in label order, from ``INFO[flag]["label"]``.

    Example: ``class_names("adrenalmnist3d") == ["normal", "hyperplasia"]``.
    """
    labels = medmnist3d_info(flag)["label"]
    return [labels[k] for k in sorted(labels, key=int)]


class MedMNIST3D(NpzSequenceDataset):
    """One split of a MedMNIST 3D dataset, read from ``root/<flag>.npz`` or ``root/<flag>_64.npz``.

    Works offline: the file must be in ``root`` unless ``download=True``. Its md5 is checked once
    per file per process against ``medmnist.info.INFO[flag]["MD5"]`` (``"MD5_64"`` for size 64).

    Items are dicts ``{"image": float32 tensor (1, T, H, W), the file's uint8 values (0-255), "label": int64
    0-d tensor}`` with T = H = W = ``size`` (T is the volume's first axis), passed through
    ``transform`` when given.

    Args:
        root: folder holding the npz files.
        flag: one of :data:`MEDMNIST3D_FLAGS`.
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: 28 or 64.
        transform: callable applied to each item dict (e.g. a MONAI ``Compose`` of dictionary transforms).
        download: fetch the file from Zenodo with MONAI's ``download_url`` (md5 verified) when it is
            missing. Default False; most machines here cannot reach the internet.
        check_md5: verify the file's md5 (turn off for files you generated in the same format).

    Attributes:
        flag, size, root, path: as given / resolved.
        labels: int64 numpy array ``(N,)`` (for class weights or a balanced sampler).
        num_classes: number of classes (from INFO, else from the labels).
        class_names: class names in label order (from INFO, else ``"0", "1", ...``).

    Raises:
        FileNotFoundError: if the file is missing (the message names the path, the expected md5 and
            the Zenodo URL to get it from).
        ValueError: for an unknown flag/size/split, a wrong md5 (expected and actual), missing npz keys,
            or images whose edge length is not ``size``.
        RuntimeError: if ``download=True`` and the download fails.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        flag: str,
        split: str = "train",
        size: int = 28,
        transform: Callable | None = None,
        download: bool = False,
        check_md5: bool = True,
    ) -> None:
        self.flag = _option("flag", flag, MEDMNIST3D_FLAGS)
        self.size = int(_option("size", size, MEDMNIST3D_SIZES))
        _option("split", split, NPZ_SPLITS)
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, medmnist3d_filename(self.flag, self.size))
        info: dict[str, Any] | None = None
        if check_md5 or download:
            info = medmnist3d_info(self.flag)
        else:
            try:
                info = medmnist3d_info(self.flag)
            except ImportError:
                info = None
        suffix = "" if self.size == 28 else f"_{self.size}"
        md5 = info.get(f"MD5{suffix}") if info else None
        url = info.get(f"url{suffix}") if info else None

        if not os.path.isfile(self.path):
            if download:
                self._download(url, md5)
            else:
                zenodo = "the MedMNIST Zenodo record (https://zenodo.org/records/10519652)"
                where = f"from {url} " if url else f"from {zenodo} "
                raise FileNotFoundError(
                    f"MedMNIST file {self.path} not found. Download {os.path.basename(self.path)} {where}"
                    f"(expected md5 {md5 or 'see medmnist.info.INFO'}) and put it in the folder {self.root}, "
                    "or pass download=True where the internet can be reached."
                )

        names = None
        if info is not None and "label" in info:
            labels = info["label"]
            names = [labels[k] for k in sorted(labels, key=int)]
        super().__init__(
            self.path,
            split=split,
            transform=transform,
            expected_md5=md5 if check_md5 else None,
            class_names=names,
        )
        shape = self.images.shape[-3:]
        if tuple(shape) != (self.size,) * 3:
            raise ValueError(f"{self.path}: expected {self.size}^3 volumes for size={self.size}, got {tuple(shape)}.")

    def _download(self, url: str | None, md5: str | None) -> None:
        if not url:
            raise RuntimeError(f"no download URL known for {self.flag} at size {self.size}.")
        download_url, ok = optional_import("monai.apps.utils", name="download_url")
        if not ok:
            raise RuntimeError(f"cannot download {url}: monai.apps.utils.download_url is not available.")
        os.makedirs(self.root, exist_ok=True)
        try:
            download_url(url=url, filepath=self.path, hash_val=md5, hash_type="md5")
        except Exception as e:
            raise RuntimeError(
                f"downloading {url} to {self.path} failed ({type(e).__name__}: {e}). Download it by hand, check "
                f"that its md5 is {md5}, and put it in {self.root}."
            ) from e
        if not os.path.isfile(self.path):
            raise RuntimeError(f"downloading {url} did not produce {self.path}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(flag={self.flag!r}, split={self.split!r}, size={self.size}, n={len(self)})"
