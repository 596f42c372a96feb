from __future__ import annotations

import pytest
import torch
from parameterized import parameterized
from torch import nn

from monai_das.networks.nets import (
    ADPSampler,
    DASampler,
    DPSampler,
    FullSequence,
    MobileNetV3Small,
    RandomSampler,
    SamplerOutput,
    SubsampledClassifier,
    UniformSampler,
    get_sampler,
)

NAMES = ["das", "dps", "adps", "uniform", "random", "full"]


def tiny_backbone(c: int, dim: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, dim, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def tiny_backbone_3d(c: int, dim: int = 8) -> nn.Module:
    return nn.Sequential(nn.Conv3d(c, dim, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten())


def data(b: int, c: int, t: int, hw: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, t, hw, hw, generator=torch.Generator().manual_seed(seed))


def model(name: str = "das", c: int = 1, t: int = 10, k: int = 4, num_classes: int = 3, **kwargs) -> nn.Module:
    kwargs_s = {"in_channels": c, "hidden_size": 16} if name in ("das", "adps") else {}
    sampler = get_sampler(name, k, num_frames=t, **kwargs_s)
    return SubsampledClassifier(sampler, tiny_backbone(c), num_classes, feature_dim=8, **kwargs)


# ---- output -------------------------------------------------------------------------------------------------------


@parameterized.expand([(n, p, c) for n in NAMES for p in ("mean", "attention") for c in (1, 3)])
def test_output_shape_and_recorded_picks(name, pooling, c):
    torch.manual_seed(0)
    net = model(name, c=c, pooling=pooling)
    assert net.last_sampler_output is None
    x = data(2, c, 10)
    for mode in (True, False):
        net.train(mode)
        logits = net(x)
        assert isinstance(logits, torch.Tensor)
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        rec = net.last_sampler_output
        assert isinstance(rec, SamplerOutput)
        k = 10 if name == "full" else 4
        assert rec.indices.shape == (2, k)
        assert rec.weights.shape == (2, k, 10)
        assert rec.frames.shape == (2, c, k, 12, 12)


def test_attention_pooling_differs_from_mean():
    torch.manual_seed(0)
    mean_net = model("uniform", pooling="mean").eval()
    att_net = model("uniform", pooling="attention").eval()
    att_net.load_state_dict(mean_net.state_dict(), strict=False)  # same backbone and head, only the pooling differs
    assert att_net.attention is not None and mean_net.attention is None
    x = data(2, 1, 10)
    with torch.no_grad():
        feats = mean_net.backbone(mean_net.sampler(x).frames.transpose(1, 2).reshape(8, 1, 12, 12)).reshape(2, 4, 8)
        torch.testing.assert_close(mean_net(x), mean_net.head(feats.mean(1)))
        weights = torch.softmax(att_net.attention(feats), dim=1)
        torch.testing.assert_close(att_net(x), att_net.head((weights * feats).sum(1)))


def test_mobilenet_backbone():
    torch.manual_seed(0)
    net = SubsampledClassifier(DASampler(3, in_channels=2), MobileNetV3Small(2, num_classes=0), 5, feature_dim=576)
    assert net(data(2, 2, 8, hw=28)).shape == (2, 5)


def test_backbone_dims_3():
    torch.manual_seed(0)
    net = SubsampledClassifier(DASampler(4, in_channels=2), tiny_backbone_3d(2, 6), 2, feature_dim=6, backbone_dims=3)
    out = net(data(3, 2, 9))
    assert out.shape == (3, 2)
    out.sum().backward()
    assert net.sampler.attention.base.weight.grad.abs().sum() > 0  # the 3D path also trains the sampler
    # the backbone sees the picked frames as one (B, C, k, H, W) volume
    seen = []
    net.backbone[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    net(data(3, 2, 9))
    assert seen == [torch.Size([3, 2, 4, 12, 12])]


def test_eval_is_deterministic():
    torch.manual_seed(0)
    net = model("das").eval()
    x = data(3, 1, 10)
    with torch.no_grad():
        torch.manual_seed(1)
        a, ia = net(x), net.last_sampler_output.indices
        torch.manual_seed(2)
        b, ib = net(x), net.last_sampler_output.indices
    assert torch.equal(a, b) and torch.equal(ia, ib)


# ---- gradients ----------------------------------------------------------------------------------------------------


@parameterized.expand([("das",), ("dps",), ("adps",)])
def test_gradient_reaches_every_sampler_parameter(name):
    """A loss on the classifier's logits trains every parameter of the sampler (default config), through the
    straight-through sampling matrix and a real MobileNetV3-Small backbone."""
    torch.manual_seed(0)
    c, t, k = 2, 10, 4
    sampler = get_sampler(name, k, num_frames=t, in_channels=c)
    net = SubsampledClassifier(sampler, MobileNetV3Small(c, num_classes=0), 3, feature_dim=576, dropout=0.0).train()
    logits = net(data(3, c, t, hw=16))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    params = dict(sampler.named_parameters())
    assert params, "the sampler has no parameters"
    for pname, p in params.items():
        assert p.grad is not None, f"{name}: {pname} has no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has a zero gradient"
    for pname, p in net.head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_das_parameter_groups_are_all_covered():
    # the groups the project issue names: attention MLPs, scales, temperature MLP, base, queries, embedding
    names = {n for n, _ in DASampler(4).named_parameters()}
    for prefix in ("attention.embed.", "attention.context.", "attention.scales.", "attention.temperature.",
                   "attention.base.", "attention.keys.", "attention.queries", "embedding.", "norm."):
        assert any(n.startswith(prefix) for n in names), prefix


@parameterized.expand(
    [
        # the literal form: no learned base, no context conv, no queries (documented dead branches)
        (
            {"base_score": "variance", "row_queries": False, "temporal_context": "none", "embedding_size": 0},
            {"attention.base.weight", "attention.base.bias", "attention.context.weight", "attention.context.bias",
             "attention.keys.weight", "attention.keys.bias", "attention.queries"},
        ),
        ({"temporal_context": "none"}, {"attention.context.weight", "attention.context.bias"}),
        ({"row_queries": False}, {"attention.keys.weight", "attention.keys.bias", "attention.queries"}),
        ({"base_score": "variance"}, {"attention.base.weight", "attention.base.bias"}),
        ({"embedding_size": 0, "num_heads": 1}, set()),
    ]
)
def test_das_parameters_without_gradient_are_exactly_the_disabled_branches(kwargs, expected_dead):
    torch.manual_seed(0)
    sampler = DASampler(4, hidden_size=16, **kwargs)
    net = SubsampledClassifier(sampler, tiny_backbone(1), 2, feature_dim=8)
    net(data(3, 1, 10)).logsumexp(-1).sum().backward()
    dead = {n for n, p in sampler.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
    assert dead == expected_dead


def test_load_state_dict_takes_a_bundle_checkpoint():
    source, target = model("das"), model("das")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    target.load_state_dict({"model": source.state_dict(), "network_config": {"sampler_name": "das"}})
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    with pytest.raises(RuntimeError, match="Unexpected key.*junk"):  # a plain state dict stays strict
        target.load_state_dict({**source.state_dict(), "junk": torch.zeros(1)})


# ---- TorchScript --------------------------------------------------------------------------------------------------


def test_trace_das_classifier_matches_eager_and_keeps_picks_dynamic():
    torch.manual_seed(0)
    net = SubsampledClassifier(DASampler(4, hidden_size=16), tiny_backbone(1), 2, feature_dim=8).eval()
    x1, x2 = data(2, 1, 10, seed=1), data(2, 1, 10, seed=2) ** 3
    with torch.no_grad():  # as monai.networks.utils.convert_to_torchscript (ckpt_export) traces
        traced = torch.jit.trace(net, x1)
        picks = []
        for x in (x1, x2):
            eager = net(x)
            picks.append(net.last_sampler_output.indices)
            torch.testing.assert_close(traced(x), eager)
    assert not torch.equal(picks[0], picks[1]), "the two inputs should pick differently"
    # a traced graph with frozen picks would return the x1 picks for x2: compare against a sampler-only trace too
    sampler = net.sampler
    with torch.no_grad():
        traced_sampler = torch.jit.trace(sampler, x1, strict=False)
        for x, expected in zip((x1, x2), picks):
            assert torch.equal(traced_sampler(x)[2], expected)


@parameterized.expand([(UniformSampler(3),), (FullSequence(),)])
def test_script_classifier_with_fixed_sampler(sampler):
    net = SubsampledClassifier(sampler, tiny_backbone(1), 2, feature_dim=8).eval()
    scripted = torch.jit.script(net)
    x = data(2, 1, 6)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


@pytest.mark.parametrize("name", ["das", "dps", "adps"])
def test_script_classifier_with_learned_sampler(name):
    torch.manual_seed(0)
    net = model(name).eval()
    scripted = torch.jit.script(net)
    with torch.no_grad():
        for seed in (1, 2):
            x = data(2, 1, 10, seed=seed) ** seed
            torch.testing.assert_close(scripted(x), net(x))
            assert torch.equal(scripted.sampler(x)[2], net.sampler(x).indices)


def test_script_das_sampler_gives_the_eager_picks_with_and_without_gradient():
    torch.manual_seed(0)
    sampler = DASampler(5, hidden_size=16, coverage="segments").eval()
    scripted = torch.jit.script(sampler)
    picks = []
    for seed in range(4):
        x = data(3, 1, 16, seed=seed) ** (seed + 1)
        with torch.no_grad():  # the eager inference path (hard_topk)
            expected = sampler(x)
            out = scripted(x)
        assert torch.equal(out[2], expected.indices)
        assert torch.equal(out[1], expected.weights)
        torch.testing.assert_close(out[0], expected.frames)
        assert torch.equal(scripted(x)[2], expected.indices)  # gradient enabled: the straight-through path
        picks.append(expected.indices)
    assert any(not torch.equal(picks[0], p) for p in picks[1:]), "the inputs should pick differently"


# RandomSampler does not script (it re-types an Optional[Generator] local); export it with torch.jit.trace.


# ---- bad arguments ------------------------------------------------------------------------------------------------


def test_unknown_pooling():
    with pytest.raises(ValueError, match="median"):
        SubsampledClassifier(UniformSampler(2), tiny_backbone(1), 2, feature_dim=8, pooling="median")


@parameterized.expand(
    [
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"feature_dim": 0}, ValueError, "feature_dim"),
        ({"dropout": 1.0}, ValueError, "dropout"),
        ({"dropout": -0.1}, ValueError, "dropout"),
        ({"backbone_dims": 1}, ValueError, "backbone_dims"),
        ({"backbone_dims": 4}, ValueError, "backbone_dims"),
        ({"sampler": nn.Identity()}, TypeError, "sampler"),
    ]
)
def test_bad_args(kwargs, error, match):
    args = {"sampler": UniformSampler(2), "backbone": tiny_backbone(1), "num_classes": 2, "feature_dim": 8, **kwargs}
    with pytest.raises(error, match=match):
        SubsampledClassifier(**args)


def test_bad_input_is_reported_by_the_sampler():
    net = model("uniform", k=4)
    with pytest.raises(ValueError, match="num_samples"):
        net(data(1, 1, 3))
    with pytest.raises(ValueError, match=r"^x "):
        net(torch.full((1, 1, 10, 12, 12), float("nan")))


def test_samplers_of_every_kind_are_accepted():
    for sampler in (DASampler(2), DPSampler(2, 6), ADPSampler(2, 6), UniformSampler(2), RandomSampler(2),
                    FullSequence()):
        assert SubsampledClassifier(sampler, tiny_backbone(1), 2, feature_dim=8).sampler is sampler


# ---- API traps ------------------------------------------------------------------------------------------------------


@parameterized.expand([(n,) for n in NAMES + ["das_segments"]])
def test_module_apply_initialises_every_sampler_and_the_classifier(name):
    """``nn.Module.apply(fn)`` is not shadowed: an initialiser reaches every Linear of the sampler and the classifier."""

    def zero_linears(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.weight)

    kwargs = {"in_channels": 1, "hidden_size": 16} if name in ("das", "das_segments", "adps") else {}
    sampler = get_sampler(name, 3, num_frames=8, **kwargs)
    assert sampler.apply(zero_linears) is sampler
    net = SubsampledClassifier(get_sampler(name, 3, num_frames=8, **kwargs), tiny_backbone(1), 2, pooling="attention")
    assert net.apply(zero_linears) is net
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(linears) >= 3  # attention pooling (2) + head
    assert all(m.weight.abs().sum() == 0 for m in linears)


def test_feature_dim_is_read_from_the_backbone():
    # out_features attribute (MobileNetV3Small), a dry run of a 2D backbone and of a 3D backbone
    assert SubsampledClassifier(UniformSampler(2), MobileNetV3Small(1, num_classes=0), 2).head[1].in_features == 576
    backbone = tiny_backbone(2, dim=5).train()
    net = SubsampledClassifier(UniformSampler(2), backbone, 3)
    assert net.feature_dim == 5 and net.head[1].in_features == 5
    assert backbone.training  # the dry run restores the mode
    assert net(data(2, 2, 6)).shape == (2, 3)
    net3d = SubsampledClassifier(UniformSampler(4), tiny_backbone_3d(1, dim=7), 2, backbone_dims=3)
    assert net3d.feature_dim == 7 and net3d(data(2, 1, 6)).shape == (2, 2)


def test_feature_dim_mismatch_names_both_widths():
    with pytest.raises(ValueError, match=r"feature_dim=8 .*returns 576 features"):
        SubsampledClassifier(UniformSampler(2), MobileNetV3Small(1, num_classes=0), 2, feature_dim=8)
    # a backbone without out_features: the first forward reports both widths, not a matmul shape error
    net = SubsampledClassifier(UniformSampler(2), tiny_backbone(1, dim=8), 2, feature_dim=5)
    with pytest.raises(ValueError, match=r"width 8 .*feature_dim=5"):
        net(data(1, 1, 6))
    net3d = SubsampledClassifier(UniformSampler(2), tiny_backbone_3d(1, dim=6), 2, feature_dim=4, backbone_dims=3)
    with pytest.raises(ValueError, match=r"width 6 .*feature_dim=4"):
        net3d(data(1, 1, 6))


def test_feature_dim_cannot_be_inferred_without_a_convolution():
    with pytest.raises(TypeError, match="feature_dim"):
        SubsampledClassifier(UniformSampler(2), nn.Flatten(), 2)


def test_attention_pooling_is_rejected_with_a_3d_backbone():
    with pytest.raises(ValueError, match="attention.*backbone_dims=2"):
        SubsampledClassifier(UniformSampler(2), tiny_backbone_3d(1), 2, pooling="attention", backbone_dims=3)
