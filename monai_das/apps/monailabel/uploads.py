"""The server's own folder of uploaded files: each upload lives exactly as long as the request that sent it.

MONAI Label 0.8.5 writes an ``/infer`` upload to ``tempfile.NamedTemporaryFile(...).name`` in the shared temporary
folder and removes it in a background task that runs only after a successful answer, so a refused request left its
file (of any type, ``.py`` included) behind, and the app could not tell its own uploads from any other file named
like one. Here an upload is written into a private folder (mode 0700) under a random name, registered while its
request runs, and removed when the request ends, whatever the answer; only a registered path counts as an upload.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["UploadFolder", "upload_suffix"]

_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


def upload_suffix(filename: str | None, default: str = ".nii.gz") -> str:
    """The file type of an uploaded file's name (``.nii.gz``, ``.mp4``...): at most two plain suffixes of at most 8
    letters or digits each; ``default`` when the name has none."""
    suffixes = Path(os.path.basename(filename or "")).suffixes[-2:]
    kept = [s for s in suffixes if _SUFFIX.fullmatch(s)]
    return "".join(kept) if kept and len(kept) == len(suffixes) else default


class UploadFolder:
    """A private folder for the uploads of running requests.

    Args:
        root: where to create the folder (default the system's temporary folder).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="monai_das_uploads_", dir=root))  # mode 0700
        self._live: set[str] = set()
        self._lock = threading.Lock()

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return isinstance(path, str) and path in self._live

    def __len__(self) -> int:
        with self._lock:
            return len(self._live)

    @contextlib.contextmanager
    def saved(self, stream: BinaryIO, filename: str | None) -> Iterator[str]:
        """Copy ``stream`` into the folder (named after ``filename``'s type only) and yield its path; the file is
        removed when the block ends, also when it raises."""
        fd, name = tempfile.mkstemp(suffix=upload_suffix(filename), dir=self.path)
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out)
            with self._lock:
                self._live.add(name)
            yield name
        finally:
            with self._lock:
                self._live.discard(name)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)

    def remove(self) -> None:
        """Remove the folder and whatever is left in it (at server shutdown)."""
        shutil.rmtree(self.path, ignore_errors=True)
