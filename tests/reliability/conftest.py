"""Fixtures of the reliability tests; the bundle and app helpers they reuse live in ``tests/bundles`` and
``tests/apps`` (put on ``sys.path`` here, as pytest does when it collects those folders)."""

from __future__ import annotations

import sys
from pathlib import Path


for folder in ("bundles", "apps"):
    helpers = str(Path(__file__).resolve().parents[1] / folder)
    if helpers not in sys.path:
        sys.path.insert(0, helpers)

