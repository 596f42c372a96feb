"""2D MobileNetV3-Small (Howard et al., "Searching for MobileNetV3", ICCV 2019)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MobileNetV3Small"]

_BN_EPS = 0.001
_BN_MOMENTUM = 0.01

# Block table of MobileNetV3-Small (Table 2 of the paper):
# (kernel size, expansion channels, output channels, use squeeze-excitation, activation, stride)
# activation: "RE" = ReLU, "HS" = hard-swish.
_SMALL_BLOCKS: tuple[tuple[int, int, int, bool, str, int], ...] = (
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)
_STEM_CHANNELS = 16
_LAST_CONV_FACTOR = 6  # last 1x1 conv widens the final block output by this factor (96 -> 576)
_HIDDEN_CHANNELS = 1024  # width of the first fully-connected layer of the classifier


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` without dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def _activation(name: str) -> nn.Module:
    if name == "RE":
        return nn.ReLU(inplace=True)
    if name == "HS":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}.")


def _conv_bn_act(in_ch: int, out_ch: int, kernel_size: int, stride: int, groups: int, act: str | None) -> nn.Sequential:
    """Bias-free 2D convolution with 'same' padding, BatchNorm and an optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=_BN_EPS, momentum=_BN_MOMENTUM),
    ]
    if act is not None:
        layers.append(_activation(act))
    return nn.Sequential(*layers)


class _SqueezeExcitation(nn.Module):
    """Channel attention: global average pool -> 1x1 conv -> ReLU -> 1x1 conv -> hard-sigmoid -> rescale."""

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))
        return x * scale


class _InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: optional 1x1 expansion, depthwise conv, optional SE, linear 1x1 projection."""

    def __init__(
        self, in_ch: int, kernel_size: int, exp_ch: int, out_ch: int, use_se: bool, act: str, stride: int
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if exp_ch != in_ch:
            layers.append(_conv_bn_act(in_ch, exp_ch, 1, 1, 1, act))
        layers.append(_conv_bn_act(exp_ch, exp_ch, kernel_size, stride, exp_ch, act))
        if use_se:
            layers.append(_SqueezeExcitation(exp_ch, _make_divisible(exp_ch // 4, 8)))
        layers.append(_conv_bn_act(exp_ch, out_ch, 1, 1, 1, None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = out + x
        return out


class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small for 2D image classification or feature extraction.

    Layout: 3x3 stride-2 stem (16 channels, BatchNorm, hard-swish), eleven inverted-residual blocks
    (with squeeze-excitation and ReLU / hard-swish as in Howard et al. 2019), a 1x1 convolution to 576
    channels (BatchNorm, hard-swish), global average pooling and the classifier
    ``Linear(576, 1024) -> Hardswish -> Dropout -> Linear(1024, num_classes)``.
    The overall spatial stride is 32; any input size works (the last feature map may be 1x1).

    Args:
        in_channels: number of input image channels. Must be >= 1. Defaults to 3.
        num_classes: number of output logits. If 0, the classifier is omitted and the pooled
            features (576 channels at ``width_mult=1``) are returned. Defaults to 1000.
        dropout: dropout probability before the last linear layer, in ``[0, 1)``. Defaults to 0.2.
        width_mult: channel width multiplier (> 0); channel counts are rounded to multiples of 8.
            Defaults to 1.0.
        bn_momentum: momentum of every BatchNorm's running statistics. The reference uses 0.01, which leaves the
            running statistics far from the data after a short training (every input then gets the same class in
            eval mode); the default 0.1 is PyTorch's.

    Shapes:
        - input: ``(N, in_channels, H, W)``
        - output: ``(N, num_classes)``, or ``(N, out_features)`` with ``out_features`` the width of the
          last convolution (576 at ``width_mult=1``) when ``num_classes == 0``.

    Attributes:
        out_features: size of the last dimension of the output.

    Raises:
        ValueError: on invalid arguments, or in ``forward`` when the input is not 4-D.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1000,
        dropout: float = 0.2,
        width_mult: float = 1.0,
        bn_momentum: float = 0.1,
    ):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not width_mult > 0.0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}.")
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum}.")

        def adjust(channels: int) -> int:
            return _make_divisible(channels * width_mult, 8)

        stem_ch = adjust(_STEM_CHANNELS)
        layers: list[nn.Module] = [_conv_bn_act(in_channels, stem_ch, 3, 2, 1, "HS")]
        ch = stem_ch
        for kernel_size, exp_ch, out_ch, use_se, act, stride in _SMALL_BLOCKS:
            out_adj = adjust(out_ch)
            layers.append(_InvertedResidual(ch, kernel_size, adjust(exp_ch), out_adj, use_se, act, stride))
            ch = out_adj
        last_conv_ch = _LAST_CONV_FACTOR * ch
        layers.append(_conv_bn_act(ch, last_conv_ch, 1, 1, 1, "HS"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

        self.classifier: nn.Module
        if num_classes > 0:
            hidden = adjust(_HIDDEN_CHANNELS)
            self.classifier = nn.Sequential(
                nn.Linear(last_conv_ch, hidden),
                nn.Hardswish(inplace=True),
                nn.Dropout(p=dropout, inplace=True),
                nn.Linear(hidden, num_classes),
            )
            self.out_features = num_classes
        else:
            self.classifier = nn.Identity()
            self.out_features = last_conv_ch

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, out_features)`` logits / features."""
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {list(x.shape)}.")
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)
