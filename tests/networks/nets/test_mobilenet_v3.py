from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_das.networks.nets.mobilenet_v3 import MobileNetV3Small

REFERENCE_PARAMS = 2_542_856  # MobileNetV3-Small, 3 input channels, 1000 classes


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_param_count_matches_reference():
    assert _n_params(MobileNetV3Small(in_channels=3, num_classes=1000)) == REFERENCE_PARAMS


def test_param_count_in_channels_only_changes_stem():
    diff = _n_params(MobileNetV3Small(in_channels=3)) - _n_params(MobileNetV3Small(in_channels=1))
    assert diff == 16 * 3 * 3 * 2


def test_structure():
    model = MobileNetV3Small()
    assert len(model.features) == 13  # stem + 11 inverted residual blocks + last conv
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bn.eps == 0.001 and bn.momentum == 0.1 for bn in bns)
    reference = [m for m in MobileNetV3Small(bn_momentum=0.01).modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bn.momentum == 0.01 for bn in reference)
    assert model.features[-1][0].out_channels == 576
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 1 and dropouts[0].p == 0.2


@pytest.mark.parametrize("num_classes, expected", [(2, 2), (0, 576), (1000, 1000)])
def test_output_shape(num_classes, expected):
    model = MobileNetV3Small(in_channels=1, num_classes=num_classes)
    assert model.out_features == expected
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, expected)


def test_tiny_and_non_square_inputs():
    model = MobileNetV3Small(in_channels=3, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 5)
        assert model(torch.randn(1, 3, 37, 64)).shape == (1, 5)


def test_width_mult():
    small = MobileNetV3Small(num_classes=10, width_mult=0.5)
    big = MobileNetV3Small(num_classes=10, width_mult=1.0)
    assert _n_params(small) < _n_params(big)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"in_channels": 0}, "in_channels"),
        ({"num_classes": -1}, "num_classes"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": 1.0}, "dropout"),
        ({"width_mult": 0.0}, "width_mult"),
    ],
)
def test_bad_args(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MobileNetV3Small(**kwargs)


def test_bad_input_dim():
    model = MobileNetV3Small(in_channels=1, num_classes=2)
    with pytest.raises(ValueError, match=r"1, 28, 28"):
        model(torch.randn(1, 28, 28))


def test_torchscript_matches_eager():
    torch.manual_seed(0)
    model = MobileNetV3Small(in_channels=1, num_classes=2).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
    features = torch.jit.script(MobileNetV3Small(in_channels=1, num_classes=0).eval())
    with torch.no_grad():
        assert features(x).shape == (2, 576)


def test_gradient_reaches_stem():
    model = MobileNetV3Small(in_channels=1, num_classes=2)
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    grad = model.features[0][0].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_weight_init():
    model = MobileNetV3Small()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        elif isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.1)
