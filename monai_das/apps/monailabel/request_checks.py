"""Checks of what a MONAI Label request may ask for: typed options only, and images confined to the datastore.

A request to a MONAI Label server is untrusted: MONAI Label's authentication is off by default, and the JSON body of
``POST /train`` or the ``params`` of ``POST /infer`` is whatever the caller wrote. Nothing from a request may reach a
MONAI bundle config, whose ``$`` expressions are Python code and whose ``%`` macros read files. So a request passes
only typed options (an int within bounds, a device name matching ``cpu`` / ``cuda`` / ``cuda:N``, a boolean), each
checked here, and images named by datastore id or by a path that stays inside the datastore folder; everything else
is refused with a :class:`RequestError`, which the sample app answers with its HTTP status and a JSON message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.utils import optional_import

HTTPException, _ = optional_import("fastapi", name="HTTPException")
MONAILabelException, _ = optional_import("monailabel.interfaces.exception", name="MONAILabelException")

__all__ = [
    "RequestError",
    "MAX_EPOCHS",
    "MAX_FOLDER_FILES",
    "check_device",
    "check_int",
    "check_bool",
    "check_keys",
    "check_name",
    "confine",
    "available_devices",
    "resolve_image",
    "http_errors",
]

logger = logging.getLogger(__name__)

#: the most epochs one training request may ask for
MAX_EPOCHS = 1000
#: the most entries a folder input (one DICOM series) may hold
MAX_FOLDER_FILES = 5000
#: the longest image id, label tag or file name a request may give
MAX_NAME_LENGTH = 128
_DEVICE = re.compile(r"cpu|cuda(:[0-9]{1,2})?")


class RequestError(ValueError):
    """A request that asks for something the server does not allow; ``status_code`` is the HTTP answer (4xx)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = int(status_code)


def available_devices() -> list[str]:
    """The devices of this machine: ``cpu``, and ``cuda``, ``cuda:0``... when torch sees GPUs."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(count)] if count else [])


def check_device(value: Any, name: str = "device") -> str:
    """``value`` if it is ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` and this machine has it.

    Raises:
        RequestError: for anything else (400), naming the devices the machine has.
    """
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise RequestError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {str(value)[:80]!r}.")
    devices = available_devices()
    if value not in devices:
        raise RequestError(f"{name} '{value}' is not available on this server; it has {devices}.")
    return value


def check_int(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``: an int, or a string of decimal digits (query parameters are strings).

    Raises:
        RequestError: for a bool, a float, another string or a value out of range (400).
    """
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{name} must be an integer in [{low}, {high}], got {str(value)[:80]!r}.")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool: ``true`` / ``false`` (JSON), or the strings ``"true"`` / ``"false"`` / ``"1"`` / ``"0"``.

    Raises:
        RequestError: for anything else (400).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise RequestError(f"{name} must be true or false, got {str(value)[:80]!r}.")


def check_keys(request: Mapping[str, Any], allowed: Iterable[str], what: str) -> None:
    """Refuse a request with a key outside ``allowed`` (400); the message lists the allowed keys."""
    allowed = set(allowed)
    unknown = sorted(str(k)[:40] for k in request if k not in allowed)
    if unknown:
        raise RequestError(f"{what} does not accept {unknown}; allowed: {sorted(allowed)}. Bundle overrides are set "
                           "by the server's administrator (--conf overrides), never by a request.")


def check_name(value: Any, what: str) -> str:
    """``value`` if it can name a file inside a folder: a non-empty printable string of at most
    ``MAX_NAME_LENGTH`` characters without a path separator that does not start with a dot (so neither ``..`` nor a
    hidden file).

    Raises:
        RequestError: for anything else (400).
    """
    if (not isinstance(value, str) or not value or value.startswith(".") or "/" in value or "\\" in value
            or len(value) > MAX_NAME_LENGTH or not value.isprintable()):
        raise RequestError(f"{what} must be a plain printable name of at most {MAX_NAME_LENGTH} characters (no '/', "
                           f"'\\', no leading '.'), got {str(value)[:80]!r}.")
    return value


def confine(path: str | os.PathLike, roots: Sequence[str | os.PathLike], what: str) -> Path:
    """``path`` resolved (links followed), if it lies inside one of ``roots``.

    Raises:
        RequestError: 400 when it cannot be resolved (a link loop), 403 when it leads outside the roots.
    """
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError) as e:  # a link loop
        raise RequestError(f"{what} cannot be resolved: {e}.") from e
    if not any(_inside(real, Path(root).resolve()) for root in roots):
        raise RequestError(f"{what} is outside the datastore: only datastore images (by id, or by a path inside the "
                           "studies folder, links included, that stays inside it) and uploaded files are read.", 403)
    return real


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _check_folder(folder: Path) -> None:
    """A folder input is one DICOM series: files only (no sub-folder, so no link can loop), at most
    ``MAX_FOLDER_FILES`` entries. The scan stops at the first entry over the bound."""
    with os.scandir(folder) as entries:
        for count, entry in enumerate(entries, start=1):
            if count > MAX_FOLDER_FILES:
                raise RequestError(f"folder '{folder.name}' holds more than {MAX_FOLDER_FILES} entries; one DICOM "
                                   "series per request.", 413)
            if entry.is_dir():  # follows links: a link to a folder is refused too
                raise RequestError(f"folder '{folder.name}' holds the folder '{entry.name}': a folder input must be "
                                   "one DICOM series, files only.")


def resolve_image(
    image: Any,
    image_ids: Sequence[str],
    image_uri: Any,
    roots: Sequence[str | os.PathLike],
    uploads: Container[str] = (),
) -> str:
    """The file or folder a request's ``image`` may read, or a :class:`RequestError`.

    Allowed: a datastore image id (``image_ids``, turned into its file by ``image_uri(id)``) and a path (absolute, or
    relative to the first root), each only when it resolves, links followed, inside one of ``roots`` (the datastore
    folder); and a file the server itself wrote for this request's upload (``uploads``: the live uploads, see
    :class:`~monai_das.apps.monailabel.uploads.UploadFolder`), never another file that merely looks like one. A folder
    must hold files only, at most ``MAX_FOLDER_FILES``.

    Args:
        image: the request's ``image``.
        image_ids: the datastore's image ids.
        image_uri: ``datastore.get_image_uri``.
        roots: folders whose contents may be read by id or by path.
        uploads: the paths of the uploads being served.

    Raises:
        RequestError: 400 for a missing or non-string image, 403 for a file outside the roots (a link out included),
            404 for an unknown id or a missing file, 413 for a folder over the bound.
    """
    if not isinstance(image, str) or not image.strip():
        raise RequestError(f"image must be a datastore image id, got {str(image)[:80]!r}.")
    if image in uploads:
        return image
    if image in image_ids:
        uri = image_uri(image) or ""
        candidate = confine(uri, roots, f"datastore image '{image[:80]}'") if uri and roots else Path(uri)
        if not uri or not candidate.exists():
            raise RequestError(f"the file of datastore image '{image[:80]}' is missing.", 404)
    else:
        path = Path(image)
        if not path.is_absolute() and "/" not in image and os.sep not in image:
            raise RequestError(f"unknown image id '{image[:80]}'.", 404)
        if not roots:
            raise RequestError(f"image '{image[:80]}' is outside the datastore.", 403)
        candidate = confine(path if path.is_absolute() else Path(roots[0]).resolve() / path, roots,
                            f"image '{image[:80]}'")
        if not candidate.exists():
            raise RequestError(f"no such file in the datastore: '{image[:80]}'.", 404)
    if candidate.is_dir():
        _check_folder(candidate)
    return str(candidate)


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """Answer a refused request or an unusable input with a 4xx HTTP error and a JSON ``detail`` message, instead of
    MONAI Label's bare ``500 Internal Server Error``.

    A :class:`RequestError` keeps its status code; an input that cannot be read or used (``ValueError``,
    ``TypeError``, ``OSError``, ``EOFError``, ``MONAILabelException``) is 422. Other exceptions (a fault of the
    server) pass unchanged.
    """
    try:
        yield
    except RequestError as e:
        logger.warning("refused request (%d): %s", e.status_code, e)
        raise HTTPException(status_code=e.status_code, detail=str(e)) from e
    except (ValueError, TypeError, OSError, EOFError, MONAILabelException) as e:
        logger.warning("unusable input (422): %s: %s", type(e).__name__, e)
        raise HTTPException(status_code=422, detail=f"{type(e).__name__}: {e}") from e
