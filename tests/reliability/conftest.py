"""Fixtures of the reliability tests; the bundle helpers they reuse live in ``tests/bundles`` (put on ``sys.path``
here, as pytest does when it collects that folder)."""

from __future__ import annotations

import sys
from pathlib import Path


BUNDLE_TESTS = Path(__file__).resolve().parents[1] / "bundles"
if str(BUNDLE_TESTS) not in sys.path:
    sys.path.insert(0, str(BUNDLE_TESTS))

