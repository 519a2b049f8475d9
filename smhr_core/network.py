"""SMHRNet: backbone + CSP neck (output stride 4) + per-cell heads.

Two ways to read the heads:
- `forward(x)`: every head over the whole map (what training needs);
- `features(x)` then `heads_at(...)`: the heads' 3x3 + 1x1 convolutions evaluated only at chosen
  cells (what inference needs: the texture head alone is 2334 channels per cell).

With `ModelConfig.keypoint_skip` (ours) the `keypoints` head reads the neck's features plus a
small conv of the backbone's stride-4 features, and with `ModelConfig.keypoint_context` (ours)
plus a wide, dilated view of the neck's features; the sum of these extras is `detail`, and
`features_and_detail(x)` gives the features and it. With `ModelConfig.keypoint_refine` (ours) a
second stage reads the `keypoints` head's input and its joint heatmaps and adds a correction to
that head's output; `ModelConfig.keypoint_refine_wide` (ours) adds a third, wider one after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smhr_core.backbones import build_backbone
from smhr_core.config import ModelConfig

KEYPOINT_JOINTS = 21
"""Joint heatmap channels of the `keypoints` head (FreiHAND order); two offset channels follow."""
HEAD_CHANNELS = {
    "hm": 1,
    "params": 122,
    "texture": 2334,
    "light": 27,
    "handmap": 2,
    "keypoints": KEYPOINT_JOINTS + 2,
}
"""Output channels of each head (see SPEC: params = left 61 + right 61). `keypoints` is ours, not
the release's: a heatmap per joint, then the sub-cell (x, y) offset of a joint at its cell."""

NECK_CHANNELS = 256
"""The release's neck width (also its heads' hidden width); `ModelConfig.neck_channels`."""
L2NORM_INIT = 10.0
L2NORM_EPS = 1e-10
HEATMAP_BIAS = -4.59
"""Initial bias of the `hm` and `handmap` output layers: sigmoid(-4.59) ~ 0.01, few positives."""
# Released ResNet keys sit at the network's top level; these heads' names must not collide.
_HEATMAP_HEADS = ("hm", "handmap")


class L2Norm(nn.Module):
    """x / (sqrt(sum over channels of x^2) + 1e-10), times a learned per-channel scale."""

    def __init__(self, channels: int, scale: float = L2NORM_INIT) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + L2NORM_EPS
        return x / norm * self.weight.view(1, -1, 1, 1)


def _make_head(name: str, width: int, hidden: int) -> nn.Sequential:
    head = nn.Sequential(
        nn.Conv2d(width, hidden, kernel_size=3, padding=1, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, HEAD_CHANNELS[name], kernel_size=1),
    )
    if name in _HEATMAP_HEADS:
        nn.init.constant_(head[2].bias, HEATMAP_BIAS)
    elif name == "keypoints":
        # Heatmap channels start like `hm` (few positives); the offsets start at zero.
        nn.init.constant_(head[2].bias[:KEYPOINT_JOINTS], HEATMAP_BIAS)
        nn.init.zeros_(head[2].bias[KEYPOINT_JOINTS:])
    else:
        # Regression heads start near zero so early training is driven by the data terms.
        for conv in (head[0], head[2]):
            nn.init.normal_(conv.weight, std=1e-3)
            nn.init.zeros_(conv.bias)
    return head


def _make_keypoint_skip(in_channels: int, width: int) -> nn.Sequential:
    skip = nn.Sequential(
        nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, kernel_size=1),
    )
    # Zero output at first: added to a trained model, it starts as that model exactly.
    nn.init.zeros_(skip[2].weight)
    nn.init.zeros_(skip[2].bias)
    return skip


def _make_keypoint_context(width: int) -> nn.Sequential:
    hidden = width // 2  # Half width: at full width it would cost a quarter of the network.
    context = nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(width, hidden, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, kernel_size=3, padding=2, dilation=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, kernel_size=3, padding=4, dilation=4),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, width, kernel_size=1),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
    )
    # Zero output at first, as the skip.
    nn.init.zeros_(context[7].weight)
    nn.init.zeros_(context[7].bias)
    return context


def _make_keypoint_refine(width: int, dilations: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = width + KEYPOINT_JOINTS
    for dilation in dilations:
        layers += [
            nn.Conv2d(channels, width, kernel_size=3, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
        channels = width
    layers.append(nn.Conv2d(width, HEAD_CHANNELS["keypoints"], kernel_size=1))
    refine = nn.Sequential(*layers)
    # Zero output at first, as the skip: added to a trained model, it starts as that model.
    nn.init.zeros_(refine[-1].weight)
    nn.init.zeros_(refine[-1].bias)
    return refine


class SMHRNet(nn.Module):
    """The SMHR network for one `ModelConfig`.

    State-dict keys are those of the released checkpoints: the backbone's layers are registered
    directly on this module (`conv1.*`, `bn1.*`, `layer1.*` ... for ResNets; `stem.*`, `blocks.*`
    for EfficientNet-Lite0), then `p3`, `p4`, `p5`, `p3_l2`..`p5_l2`, `feat`, `feat_bn` and one
    `Sequential` per head in `config.heads` (and `keypoint_skip`, `keypoint_context`,
    `keypoint_refine`, `keypoint_refine_wide`, ours, with those options).
    Input: (B, 3, R, R) normalised BGR (see `smhr_core.preprocess.normalise`); maps are
    (R/4, R/4).
    """

    def __init__(self, config: ModelConfig, pretrained_backbone: bool = False) -> None:
        super().__init__()
        self.config = config
        backbone = build_backbone(config.backbone, pretrained=pretrained_backbone)
        for name, module in backbone.named_children():
            self.add_module(name, module)
        # The backbone's forward runs on the children registered above (same module objects);
        # the tuple keeps the wrapper itself out of the module tree and out of the state dict.
        self._backbone = (backbone,)
        self.backbone_channels: tuple[int, int, int] = tuple(backbone.channels)
        c3, c4, c5 = self.backbone_channels
        width = config.neck_channels
        self.p3 = nn.ConvTranspose2d(c3, width, kernel_size=4, stride=2, padding=1)
        self.p4 = nn.ConvTranspose2d(c4, width, kernel_size=4, stride=4, padding=0)
        self.p5 = nn.ConvTranspose2d(c5, width, kernel_size=8, stride=8, padding=0)
        for deconv in (self.p3, self.p4, self.p5):
            nn.init.xavier_normal_(deconv.weight)
            nn.init.zeros_(deconv.bias)
        self.p3_l2 = L2Norm(width)
        self.p4_l2 = L2Norm(width)
        self.p5_l2 = L2Norm(width)
        self.feat = nn.Conv2d(3 * width, width, 3, padding=1, bias=False)
        self.feat_bn = nn.BatchNorm2d(width, momentum=0.01)
        self.feat_act = nn.ReLU(inplace=True)
        self.head_names: tuple[str, ...] = tuple(config.heads)
        for name in self.head_names:
            self.add_module(name, _make_head(name, width, config.head_hidden_channels(name)))
        self.keypoint_skip: nn.Sequential | None = None
        if config.keypoint_skip:
            self.keypoint_skip = _make_keypoint_skip(backbone.stride4_channels, width)
        self.keypoint_context: nn.Sequential | None = None
        if config.keypoint_context:
            self.keypoint_context = _make_keypoint_context(width)
        self.keypoint_refine: nn.Sequential | None = None
        if config.keypoint_refine:
            self.keypoint_refine = _make_keypoint_refine(width, (1, 2, 4))
        self.keypoint_refine_wide: nn.Sequential | None = None
        if config.keypoint_refine_wide:
            self.keypoint_refine_wide = _make_keypoint_refine(width, (1, 2, 4, 8))

    @property
    def backbone(self) -> nn.Module:
        """The backbone (its layers are this network's top-level children)."""
        return self._backbone[0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shared stride-4 features (B, neck_channels, R/4, R/4) of normalised images."""
        return self.features_and_detail(x, with_detail=False)[0]

    def features_and_detail(
        self, x: torch.Tensor, with_detail: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The shared features and, with `keypoint_skip` or `keypoint_context` and `with_detail`,
        the `keypoints` head's extra input (B, neck_channels, R/4, R/4); else None
        (`with_detail` False spares its cost when the keypoints head will not run)."""
        c2, c3, c4, c5 = self._backbone[0].pyramid(x)
        cat = torch.cat(
            [self.p3_l2(self.p3(c3)), self.p4_l2(self.p4(c4)), self.p5_l2(self.p5(c5))], dim=1
        )
        feat = self.feat_act(self.feat_bn(self.feat(cat)))
        detail = None
        if with_detail and self.keypoint_skip is not None:
            detail = self.keypoint_skip(c2)
        if with_detail and self.keypoint_context is not None:
            context = self.keypoint_context(feat)
            detail = context if detail is None else detail + context
        return feat, detail

    @property
    def keypoints_need_detail(self) -> bool:
        """Whether the `keypoints` head reads `detail` (a skip or a context module)."""
        return self.keypoint_skip is not None or self.keypoint_context is not None

    def _head_input(
        self, name: str, feat: torch.Tensor, detail: torch.Tensor | None
    ) -> torch.Tensor:
        if name != "keypoints" or not self.keypoints_need_detail:
            return feat
        if detail is None:
            raise ValueError(
                "the keypoints head of this model (keypoint_skip or keypoint_context) needs "
                "`detail` from features_and_detail"
            )
        return feat + detail

    def _check_names(self, names: tuple[str, ...] | list[str]) -> None:
        unknown = [n for n in names if n not in self.head_names]
        if unknown:
            raise KeyError(
                f"heads {unknown} are not in this model (it has {list(self.head_names)})"
            )

    def head_maps(
        self,
        feat: torch.Tensor,
        names: tuple[str, ...] | list[str] | None = None,
        detail: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Full (B, C, R/4, R/4) maps of the named heads (all heads when `names` is None).

        `detail` is the second output of `features_and_detail`, needed by the `keypoints` head
        of a model with `keypoint_skip` or `keypoint_context`."""
        names = self.head_names if names is None else tuple(names)
        self._check_names(names)
        return {name: self._head_map(name, feat, detail) for name in names}

    def _head_map(self, name: str, feat: torch.Tensor, detail: torch.Tensor | None) -> torch.Tensor:
        source = self._head_input(name, feat, detail)
        out = getattr(self, name)(source)
        if name == "keypoints" and self.keypoint_refine is not None:
            for stage in (self.keypoint_refine, self.keypoint_refine_wide):
                if stage is not None:
                    heat = torch.sigmoid(out[:, :KEYPOINT_JOINTS])
                    out = out + stage(torch.cat([source, heat], dim=1))
        return out

    def forward(
        self,
        x: torch.Tensor,
        centres: torch.Tensor | None = None,
        centre_heads: tuple[str, ...] = (),
    ) -> dict[str, torch.Tensor]:
        """Every head in the config, keyed by head name: full (B, C, R/4, R/4) maps.

        With `centres`, (B, M) flat cell indices (row * R/4 + column), the heads named in
        `centre_heads` are evaluated only at those cells and come back as (B, M, C) (training
        reads `params`, `texture` and `light` only there; `heads_at` gives the same values).
        """
        feat, detail = self.features_and_detail(x)
        at = tuple(name for name in centre_heads if name in self.head_names)
        if centres is None or not at:
            return self.head_maps(feat, detail=detail)
        outputs = self.head_maps(feat, [n for n in self.head_names if n not in at], detail)
        batch, slots = centres.shape
        width = feat.shape[-1]
        flat = centres.reshape(-1).long()
        batch_index = torch.arange(batch, device=feat.device).repeat_interleave(slots)
        values = self.heads_at(feat, batch_index, flat // width, flat % width, at, detail)
        outputs.update({name: v.reshape(batch, slots, -1) for name, v in values.items()})
        return outputs

    def heads_at(
        self,
        feat: torch.Tensor,
        batch_index: torch.Tensor,
        ys: torch.Tensor,
        xs: torch.Tensor,
        names: tuple[str, ...] | list[str],
        detail: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The named heads evaluated only at N cells: {name: (N, C)}.

        Equal (to float rounding) to `head_maps(feat)[name][batch_index, :, ys, xs]`: the 3x3
        conv reads the cell's 3x3 neighbourhood from the zero-padded map, as the full conv does
        at borders and corners.

        Args:
            feat: (B, neck_channels, H, W) output of `features`.
            batch_index, ys, xs: (N,) integer tensors, image index, row and column of each cell.
            names: heads to evaluate.
            detail: as for `head_maps`.
        """
        names = tuple(names)
        self._check_names(names)
        if "keypoints" in names and self.keypoint_refine is not None:
            raise ValueError(
                "heads_at: the keypoints head of a model with keypoint_refine reads 15 cells "
                "around each cell; use head_maps"
            )
        n = int(batch_index.shape[0])
        if n == 0:
            return {name: feat.new_zeros((0, HEAD_CHANNELS[name])) for name in names}
        offsets = torch.arange(3, device=feat.device)
        rows = ys.to(feat.device).long()[:, None] + offsets  # padded row of the window's top
        cols = xs.to(feat.device).long()[:, None] + offsets
        b = batch_index.to(feat.device).long()

        def windows_of(source: torch.Tensor) -> torch.Tensor:
            padded = F.pad(source, (1, 1, 1, 1))
            # Advanced indices around a slice put the indexed dims first: (N, 3, 3, C).
            windows = padded[b[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            return windows.permute(0, 3, 1, 2).reshape(n, -1)  # (N, C*3*3), conv weight order

        shared = windows_of(feat)
        out = {}
        for name in names:
            source = self._head_input(name, feat, detail)
            windows = shared if source is feat else windows_of(source)
            conv3, _, conv1 = getattr(self, name)
            hidden = torch.relu(
                F.linear(windows, conv3.weight.reshape(conv3.out_channels, -1), conv3.bias)
            )
            out[name] = F.linear(hidden, conv1.weight.reshape(conv1.out_channels, -1), conv1.bias)
        return out
