"""From head outputs to hands: heatmap peaks, handedness, the 61 values, the virtual camera."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

HEATMAP_CLAMP = (1e-4, 1.0 - 1e-4)
NMS_KERNEL = 5
OUTPUT_STRIDE = 4
"""Input pixels per map cell."""
VIRTUAL_FOCAL_PX = 512.0
DEPTH_OFFSET_M = 0.8
"""tz = c + 0.8 metres (the release's depth prior)."""
PARAMS_PER_HAND = 61


@dataclass(frozen=True)
class Peaks:
    """Kept heatmap peaks, grouped by image (ascending) and by score (descending) within one.

    All tensors are (N,) on the heatmap's device; `index = ys * W + xs` is the flat cell index.
    """

    batch_index: torch.Tensor
    ys: torch.Tensor
    xs: torch.Tensor
    scores: torch.Tensor
    """Sigmoid of the heatmap, clamped to [1e-4, 1 - 1e-4]."""
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class HandParams:
    """The 61 values of one hand set, split (all (N, k) tensors)."""

    global_orient: torch.Tensor
    """(N, 3) axis-angle of the wrist, radians."""
    hand_pose: torch.Tensor
    """(N, 45) axis-angle of the 15 finger joints relative to the flat hand, radians."""
    betas: torch.Tensor
    """(N, 10) MANO shape."""
    camera: torch.Tensor
    """(N, 3) a, b (input pixels, offsets from the cell corner) and c (metres, depth - 0.8)."""


def heatmap_scores(hm_logits: torch.Tensor) -> torch.Tensor:
    """Sigmoid of the centre heatmap, clamped to [1e-4, 1 - 1e-4] as in the release."""
    return torch.sigmoid(hm_logits).clamp(*HEATMAP_CLAMP)


def find_peaks(hm_logits: torch.Tensor, k: int, threshold: float) -> Peaks:
    """Hand centres: local maxima of the heatmap (5x5 max-pool NMS), top `k` per image, kept if
    their score is >= `threshold`.

    Cells equal to their 5x5 neighbourhood maximum are kept, so equal neighbours (plateaus) all
    survive, as in the release. Ordering is by score, then by flat index for equal scores, so
    the result is deterministic. Unlike the release (which zeroes suppressed cells and may then
    return them when an image has fewer than `k` maxima), suppressed cells are never returned.

    Args:
        hm_logits: (B, 1, H, W) raw `hm` head output.
        k: maximum peaks per image.
        threshold: minimum score in [0, 1].
    """
    if hm_logits.dim() != 4 or hm_logits.shape[1] != 1:
        raise ValueError(f"hm_logits: expected (B, 1, H, W), got {tuple(hm_logits.shape)}")
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    batch, _, height, width = hm_logits.shape
    heat = heatmap_scores(hm_logits.detach())
    pooled = F.max_pool2d(heat, NMS_KERNEL, stride=1, padding=NMS_KERNEL // 2)
    kept = torch.where(pooled == heat, heat, torch.zeros_like(heat)).view(batch, -1)
    k = min(int(k), height * width)
    # Stable descending sort: equal scores keep the lower flat index first.
    scores, index = torch.sort(kept, dim=1, descending=True, stable=True)
    scores, index = scores[:, :k], index[:, :k]
    valid = (scores > 0) & (scores >= threshold)
    batch_index = torch.arange(batch, device=heat.device)[:, None].expand(-1, k)[valid]
    index = index[valid]
    return Peaks(
        batch_index=batch_index,
        ys=torch.div(index, width, rounding_mode="floor"),
        xs=index % width,
        scores=scores[valid],
        index=index,
    )


def choose_side(handmap_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Handedness from the 2-channel `handmap` (channel 0 left, 1 right) at each hand's cell.

    Left only when the left score is strictly greater; a tie goes right (as the release). The
    comparison uses the logits, which orders exactly like the sigmoids but cannot tie by float
    saturation. The handmap is trained with a per-channel sigmoid focal loss, so the two
    channels are independent probabilities; the reported probability of the chosen side is
    p_side / (p_left + p_right) with p = sigmoid(logit).

    Args:
        handmap_logits: (N, 2).

    Returns:
        is_right (N,) bool, probability (N,) float of the chosen side.
    """
    if handmap_logits.dim() != 2 or handmap_logits.shape[1] != 2:
        raise ValueError(f"handmap_logits: expected (N, 2), got {tuple(handmap_logits.shape)}")
    is_right = ~(handmap_logits[:, 0] > handmap_logits[:, 1])
    probs = torch.sigmoid(handmap_logits)
    chosen = torch.where(is_right, probs[:, 1], probs[:, 0])
    return is_right, chosen / probs.sum(dim=1)


def select_params(params: torch.Tensor, is_right: torch.Tensor) -> torch.Tensor:
    """(N, 122) left+right sets -> (N, 61): `params[61:122]` for right hands, `[0:61]` for left."""
    if params.dim() != 2 or params.shape[1] != 2 * PARAMS_PER_HAND:
        raise ValueError(f"params: expected (N, 122), got {tuple(params.shape)}")
    return torch.where(
        is_right.to(torch.bool)[:, None], params[:, PARAMS_PER_HAND:], params[:, :PARAMS_PER_HAND]
    )


def split_params(params61: torch.Tensor) -> HandParams:
    """Split (N, 61) into orientation [0:3], pose [3:48], betas [48:58], camera [58:61]."""
    if params61.dim() != 2 or params61.shape[1] != PARAMS_PER_HAND:
        raise ValueError(f"params61: expected (N, 61), got {tuple(params61.shape)}")
    return HandParams(
        global_orient=params61[:, 0:3],
        hand_pose=params61[:, 3:48],
        betas=params61[:, 48:58],
        camera=params61[:, 58:61],
    )


def virtual_translation(
    camera_abc: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, resolution: int
) -> torch.Tensor:
    """Hand translation (N, 3) in metres in the virtual camera K = [[512, 0, R/2], [0, 512, R/2],
    [0, 0, 1]] of the R x R input.

    With the cell corner cx = 4 * x, cy = 4 * y (input pixels, no +0.5, as trained):
    tz = c + 0.8, tx = tz * (a + cx - R/2) / 512, ty = tz * (b + cy - R/2) / 512.
    """
    a, b, c = camera_abc.unbind(-1)
    cx = xs.to(camera_abc.dtype) * OUTPUT_STRIDE
    cy = ys.to(camera_abc.dtype) * OUTPUT_STRIDE
    half = resolution / 2.0
    tz = c + DEPTH_OFFSET_M
    tx = tz * (a + cx - half) / VIRTUAL_FOCAL_PX
    ty = tz * (b + cy - half) / VIRTUAL_FOCAL_PX
    return torch.stack([tx, ty, tz], dim=-1)
