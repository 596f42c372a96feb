"""DAS picks pinned against a reference: speed work on the sampler must not change what it picks.

``das_reference_picks.json`` holds, for fixed weights, inputs and seeds, the picks, the sampling matrix ``P``, the
logits and the temperature that ``DASampler`` returned before its forward was rewritten for speed (commit 250bb7b,
written by ``python tests/networks/nets/test_das_reference_picks.py --write`` on that commit). The picks must stay
identical; ``P`` equal to the float32 rounding; the logits and temperature within float32 rounding of a reordered sum.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from monai_das.networks.nets import DASampler

REFERENCE = Path(__file__).with_name("das_reference_picks.json")

# name -> (sampler options, (B, C, T, H, W), k, with a frame mask)
CASES = {
    "default_pooled": ({}, (3, 1, 16, 28, 24), 7, False),
    "default_small_frames": ({}, (2, 1, 28, 12, 12), 14, False),
    "segments_mask_rgb": ({"coverage": "segments", "in_channels": 3, "embedding_size": 8}, (3, 3, 12, 20, 20), 5, True),
    "literal": ({"base_score": "variance", "row_queries": False, "temporal_context": "none", "embedding_size": 0},
                (2, 1, 16, 16, 16), 6, False),
    "large_frames": ({}, (2, 1, 32, 64, 64), 16, False),
    "no_pooling_mask": ({"feature_size": 0}, (2, 1, 10, 18, 18), 4, True),
}
# eval without gradient (hard_topk), eval with gradient and training (straight-through; training adds Gumbel noise)
MODES = ("eval_no_grad", "eval_grad", "train")


def build(name: str) -> DASampler:
    """The case's sampler with every parameter drawn from a seeded normal (so the learned parts all act)."""
    options, shape, k, _ = CASES[name]
    sampler = DASampler(k, **options)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, param in sorted(sampler.named_parameters()):
            param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    return sampler


def inputs(name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The case's input (uniform noise of varying contrast per frame, input 0 with two copies of a frame, an exact
    tie) and, where the case has one, a frame mask with fewer real frames in the last input."""
    _, (b, c, t, h, w), k, masked = CASES[name]
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(b, c, t, h, w, generator=gen) * torch.rand(b, 1, t, 1, 1, generator=gen)
    x[0, :, 3] = x[0, :, 1]
    if not masked:
        return x, None
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[-1, k - 2:] = False  # fewer real frames than k: padding picks
    mask[0, ::3] = False
    return x, mask


def run(name: str, mode: str) -> dict:
    sampler = build(name)
    x, mask = inputs(name)
    sampler.train(mode == "train")
    torch.manual_seed(3)  # the Gumbel noise of training
    with torch.set_grad_enabled(mode != "eval_no_grad"):
        out = sampler(x, mask)
    return {"indices": out.indices.tolist(), "weights": float32_list(out.weights),
            "logits": float32_list(out.logits), "temperature": float32_list(out.temperature)}


def float32_list(values: torch.Tensor) -> list:
    """Nested lists of 9 significant digits, the fewest that give back every float32 exactly."""
    return json.loads(json.dumps(values.detach().tolist()), parse_float=lambda v: float(f"{float(v):.9g}"))


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CASES))
def test_picks_equal_the_reference(reference, name, mode):
    want, got = reference[name][mode], run(name, mode)
    assert got["indices"] == want["indices"]
    torch.testing.assert_close(torch.tensor(got["weights"]), torch.tensor(want["weights"]), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.tensor(got["logits"]), torch.tensor(want["logits"]), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(torch.tensor(got["temperature"]), torch.tensor(want["temperature"]))


def test_reference_covers_every_case(reference):
    assert sorted(reference) == sorted(CASES) and all(sorted(reference[n]) == sorted(MODES) for n in CASES)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    REFERENCE.write_text(json.dumps({n: {m: run(n, m) for m in MODES} for n in CASES}) + "\n")
