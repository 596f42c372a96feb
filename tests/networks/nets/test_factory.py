from __future__ import annotations

import pytest
import torch
from parameterized import parameterized

from monai_das.networks.nets import (
    SAMPLER_NAMES,
    ADPSampler,
    DASampler,
    DPSampler,
    FullSequence,
    RandomSampler,
    UniformSampler,
    get_sampler,
    samples_for_ratio,
)

CLASSES = {
    "das": DASampler,
    "dps": DPSampler,
    "adps": ADPSampler,
    "uniform": UniformSampler,
    "random": RandomSampler,
    "full": FullSequence,
}


def test_sampler_names():
    assert SAMPLER_NAMES == ("das", "das_segments", "dps", "adps", "uniform", "random", "full")


def test_das_segments_is_das_with_segment_coverage():
    sampler = get_sampler("das_segments", 3, num_frames=9)
    assert type(sampler) is DASampler and sampler.coverage == "segments"
    assert get_sampler("das", 3).coverage == "none"


@parameterized.expand([(n,) for n in CLASSES] + [(n.upper(),) for n in CLASSES])
def test_builds_each_sampler(name):
    sampler = get_sampler(name, 3, num_frames=8, in_channels=2)
    assert type(sampler) is CLASSES[name.lower()]
    out = sampler(torch.rand(2, 2, 8, 8, 8))
    assert out.indices.shape == (2, 8 if name.lower() == "full" else 3)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_sampler("foo", 4)
    message = str(err.value)
    assert "foo" in message
    for name in SAMPLER_NAMES:
        assert f"'{name}'" in message


@parameterized.expand([("dps",), ("adps",)])
def test_fixed_length_samplers_need_num_frames(name):
    with pytest.raises(ValueError, match="num_frames"):
        get_sampler(name, 4)


def test_arguments_are_passed_on():
    das = get_sampler("das", 4, in_channels=3, num_heads=2, hidden_size=8, tau0=2.0, embedding_size=0)
    assert das.num_samples == 4 and das.embedding is None
    assert das.attention.num_heads == 2 and das.attention.tau0 == 2.0
    assert das.attention.embed[0].in_features == 3  # 3 hand-made features, no embedding
    das_emb = get_sampler("das", 4, in_channels=3, embedding_size=5)
    assert das_emb.embedding.in_channels == 3 and das_emb.attention.embed[0].in_features == 8
    dps = get_sampler("dps", 2, num_frames=6, temperature=0.5)
    assert dps.num_frames == 6 and dps.temperature == 0.5 and dps.logits.shape == (6,)
    adps = get_sampler("adps", 2, num_frames=6, in_channels=2, hidden_size=12, measurement_size=4)
    assert adps.num_frames == 6 and adps.cell.hidden_size == 12 and adps.encode[0].in_features == 2 * 16
    assert get_sampler("random", 2, seed=5).seed == 5
    assert get_sampler("random", 2, seed=None).seed is None
    assert get_sampler("random", 2).seed == 0


def test_full_ignores_num_samples():
    sampler = get_sampler("full", 100)
    assert sampler(torch.rand(1, 1, 4, 6, 6)).indices.tolist() == [[0, 1, 2, 3]]


def test_full_sequence_num_samples_is_deprecated():
    with pytest.warns(DeprecationWarning, match="num_samples is ignored"):
        sampler = FullSequence(num_samples=4)
    assert sampler(torch.rand(1, 1, 5, 6, 6)).indices.tolist() == [[0, 1, 2, 3, 4]]


@parameterized.expand([("das",), ("das_segments",), ("uniform",), ("random",)])
def test_num_frames_is_checked_against_num_samples(name):
    assert get_sampler(name, 8, num_frames=8).num_samples == 8
    with pytest.raises(ValueError, match=r"num_samples \(9\) must be <= num_frames \(8\)"):
        get_sampler(name, 9, num_frames=8)
    assert get_sampler("full", 9, num_frames=8)(torch.rand(1, 1, 8, 6, 6)).indices.shape == (1, 8)


def test_unknown_keyword_argument():
    with pytest.raises(TypeError):
        get_sampler("uniform", 2, hidden_size=3)


def test_bad_num_samples_is_named():
    with pytest.raises(ValueError, match="num_samples"):
        get_sampler("das", 0)
    with pytest.raises(ValueError, match="num_samples"):
        get_sampler("dps", 9, num_frames=8)


@parameterized.expand([(28, 0.25, 7), (28, 1.0, 28), (10, 0.01, 1), (64, 0.125, 8), (20, 0.33, 7)])
def test_samples_for_ratio(t, ratio, expected):
    assert samples_for_ratio(t, ratio) == expected


@parameterized.expand([(0.0,), (-0.5,), (1.5,)])
def test_samples_for_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match="ratio"):
        samples_for_ratio(10, ratio)
