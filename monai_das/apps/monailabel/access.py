"""Who may call which endpoint of the sample app's server: the list of what it serves, and the token that guards it.

MONAI Label 0.8.5 serves about 50 endpoints, among them ``PUT/GET/DELETE /model/<name>`` (replace, download, delete
the served checkpoint), ``DELETE /datastore/*``, ``/scoring``, ``/activelearning``, ``/batch/infer``, ``/session``,
``/proxy/dicom`` and ``/logs``, and all of them are open to anyone who reaches the port unless a Keycloak (OpenID
Connect) server is set up; none of them can be switched off by a setting. The sample app serves only the endpoints
below; every other one is answered 403 (JSON) before it reaches MONAI Label.

Access levels:

- ``open``: ``GET /info/`` (model names, classes, datastore counts: what a client needs to start);
- ``infer``: ``POST /infer/<model>``: open when the administrator starts the server with ``--conf open_infer true``,
  else as ``token``;
- ``token``: the datastore (list, download, upload, image info, delete) and training (start, status, stop): a request
  must carry ``Authorization: Bearer <token>``, the token the administrator wrote in ``--conf token_file PATH``
  (made offline, e.g. ``python -c "import secrets; print(secrets.token_urlsafe(32))" > token``); without a token
  file these endpoints are off.
"""

from __future__ import annotations

import hmac
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OPEN", "INFER", "TOKEN", "ROUTES", "AccessPolicy", "route_level", "served_routes"]

OPEN, INFER, TOKEN = "open", "infer", "token"

#: (method, path pattern, level): everything the server answers; anything else is refused
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", r"/info/?", OPEN),
    ("POST", r"/infer/[^/]+", INFER),
    ("GET", r"/datastore/?", TOKEN),
    ("GET", r"/datastore/image", TOKEN),
    ("HEAD", r"/datastore/image", TOKEN),
    ("PUT", r"/datastore/image", TOKEN),
    ("DELETE", r"/datastore/image", TOKEN),
    ("GET", r"/datastore/image/info", TOKEN),
    ("PUT", r"/datastore/image/info", TOKEN),
    ("POST", r"/train/[^/]+", TOKEN),
    ("GET", r"/train/?", TOKEN),
    ("DELETE", r"/train/?", TOKEN),
)
_COMPILED = [(m, re.compile(p), level) for m, p, level in ROUTES]


def route_level(method: str, path: str) -> str | None:
    """The access level of ``method path``, ``None`` when the server does not serve it."""
    for m, pattern, level in _COMPILED:
        if m == method and pattern.fullmatch(path):
            return level
    return None


def served_routes() -> list[str]:
    """``"METHOD /path (level)"`` for every served endpoint (for messages and documentation)."""
    return [f"{m} {p.replace('[^/]+', '<name>').replace('/?', '/')} ({level})" for m, p, level in ROUTES]


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class AccessPolicy:
    """The administrator's choices: the token (``None``: token endpoints off) and whether inference is open."""

    token: str | None = None
    open_infer: bool = False

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> AccessPolicy:
        """From the app's ``--conf`` values ``token_file`` and ``open_infer``.

        Raises:
            ValueError: for a token file that is missing, empty, shorter than 16 characters, or readable by other
                users (the message names it).
        """
        token = None
        token_file = conf.get("token_file")
        if token_file:
            path = Path(token_file).expanduser()
            if not path.is_file():
                raise ValueError(f"--conf token_file {token_file}: no such file.")
            if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ValueError(f"--conf token_file {token_file}: readable by other users; chmod 600 it.")
            token = path.read_text().strip()
            if len(token) < 16:
                raise ValueError(f"--conf token_file {token_file}: the token must have at least 16 characters.")
        return cls(token=token, open_infer=_truthy(conf.get("open_infer", False)))

    def refusal(self, level: str, authorization: str | None) -> tuple[int, str] | None:
        """``None`` when a request of ``level`` with the ``Authorization`` header value may pass, else
        ``(status, message)``."""
        if level == OPEN or (level == INFER and self.open_infer):
            return None
        if self.token is None:
            return 403, ("this endpoint is off: the server was started without --conf token_file (see the README's "
                         "Security section)" + ("" if level == TOKEN else "; or open inference with --conf "
                                                "open_infer true") + ".")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return 401, "this endpoint needs the header 'Authorization: Bearer <token>' with the server's token."
        return None
