"""Writing a file so that readers only ever see the old complete file or the new complete one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` alone must set a new value)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", overwrite: bool = True, **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit, put it in place of ``path`` atomically.

    The temporary file ``.<name>.<random>.tmp`` is created in the folder of ``path`` (made if missing), flushed to
    disk (``fsync``), given the permissions ``open`` would give (the umask applies; ``mkstemp`` alone makes 0600) and
    renamed over ``path`` with ``os.replace`` (atomic on POSIX and Windows within one file system). On an exception,
    or a process killed at any moment, ``path`` keeps its old content; at worst a stray ``.<name>.*.tmp`` remains.

    Args:
        path: the file to write.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        overwrite: ``False`` refuses to replace a ``path`` that exists when the writing is done (it may have appeared
            meanwhile): ``FileExistsError``, and ``path`` is left alone.
        open_kwargs: passed to ``open`` (e.g. ``newline=""``, ``encoding="utf-8"``).

    Example::

        with atomic_write("predictions.csv", newline="") as f:
            csv.writer(f).writerows(rows)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with open(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        if not overwrite and os.path.exists(path):
            raise FileExistsError(f"'{path}' exists; pass overwrite to replace it.")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
