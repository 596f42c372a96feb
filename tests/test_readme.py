"""The README's API example runs as written, and the samplers its comment offers run in its place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
SAMPLER_LINE = 'get_sampler("das", num_samples=14)'


def api_example() -> str:
    """The python block under the README's "The API" heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The API") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match is not None, "no python block under the README's API heading"
    return match.group(1)


def run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # the project's own README, not user input
    return namespace


def test_api_example_runs_as_written(capsys):
    namespace = run(api_example())
    assert capsys.readouterr().out.strip() == "(2, 2) (2, 14)"
    logits, picked = namespace["logits"], namespace["picked"]
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert picked.shape == (2, 14) and picked.dtype == torch.long
    for row in picked.tolist():
        assert row == sorted(set(row)), "14 distinct frames in temporal order"
        assert 0 <= row[0] and row[-1] < 28


@pytest.mark.parametrize("name", ["uniform", "random", "full", "dps", "adps"])
def test_samplers_named_in_its_comment(name, capsys):
    code = api_example()
    assert SAMPLER_LINE in code and f'"{name}"' in code, "the example's sampler line or comment changed"
    extra = ", num_frames=28" if name in ("dps", "adps") else ""
    namespace = run(code.replace(SAMPLER_LINE, f'get_sampler("{name}", num_samples=14{extra})'))
    capsys.readouterr()
    assert namespace["logits"].shape == (2, 2)
    assert namespace["picked"].shape == (2, 28 if name == "full" else 14)
