"""Index checking shared by the map-style datasets."""

from __future__ import annotations

__all__ = ["resolve_index"]


def resolve_index(index: int, length: int, what: str) -> int:
    """``index`` as a position in ``[0, length)`` (negative indices count from the end).

    Raises:
        IndexError: naming ``what`` (e.g. ``"12 videos from manifest.csv"``) when ``index`` is out of range.
    """
    i = int(index)
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"index {index} out of range for {what}.")
    return i
