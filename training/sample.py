"""The training batch contract: one dict of fixed-shape tensors per sample.

Every dataset of `training` yields these dicts (the default DataLoader collate batches them);
losses and the trainer read them by the key constants below. R is the square input resolution,
W = R // 4 the map size, M the number of hand slots (unused slots are zero with valid = 0).

| key | shape, dtype | meaning |
|---|---|---|
| image | (3,R,R) float32 | BGR normalised with the ImageNet RGB mean/std (smhr_core.preprocess) |
| image_rgb | (3,R,R) float32 in [0,1] | the same image, RGB, for the photometric loss |
| mask | (1,R,R) float32 in [0,1] | union of the hand (skin) masks; `has_mask` says if real |
| has_mask | () float32 | 1 if `mask` is labelled |
| hm | (1,W,W) float32 | Gaussian centre targets (CenterNet radius, min overlap 0.7) |
| handmap | (2,W,W) float32 | the same Gaussians on channel 0 (left) / 1 (right) |
| ind | (M,) int64 | flat cell index y*W+x of each hand centre on the W x W map |
| valid | (M,) float32 | 1 for a real hand slot |
| is_right | (M,) float32 | 1 right, 0 left |
| keypoints_px | (M,21,2) float32 | FreiHAND-order 2D keypoints, input pixels |
| keypoints_vis | (M,21) float32 | 1 if labelled |
| mano_pose | (M,48) float32 | global orient + 15 finger joints, axis-angle, flat-hand relative |
| mano_betas | (M,10) float32 | MANO shape |
| has_mano | (M,) float32 | 1 if the MANO parameters are labelled |
| joints_3d | (M,21,3) float32 | metres, in the virtual camera K_v of the input image |
| has_3d | (M,) float32 | 1 if joints_3d and vertices_3d are labelled |
| vertices_3d | (M,778,3) float32 | metres, virtual camera; zero unless has_3d |

Hand centre (SPEC.md): the mean of the labelled keypoints inside the image (multi-hand,
`CENTRE_MEAN`) or the centre of their box (single hand, `CENTRE_BOX`). Its cell is
`floor(centre / 4)`, matching the decoder's cell-corner convention; a hand whose centre falls
outside the image keeps its mask but gets no slot.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from smhr_core.preprocess import normalise

IMAGE = "image"
IMAGE_RGB = "image_rgb"
MASK = "mask"
HAS_MASK = "has_mask"
HM = "hm"
HANDMAP = "handmap"
IND = "ind"
VALID = "valid"
IS_RIGHT = "is_right"
KEYPOINTS_PX = "keypoints_px"
KEYPOINTS_VIS = "keypoints_vis"
MANO_POSE = "mano_pose"
MANO_BETAS = "mano_betas"
HAS_MANO = "has_mano"
JOINTS_3D = "joints_3d"
HAS_3D = "has_3d"
VERTICES_3D = "vertices_3d"

KEYS = (
    IMAGE,
    IMAGE_RGB,
    MASK,
    HAS_MASK,
    HM,
    HANDMAP,
    IND,
    VALID,
    IS_RIGHT,
    KEYPOINTS_PX,
    KEYPOINTS_VIS,
    MANO_POSE,
    MANO_BETAS,
    HAS_MANO,
    JOINTS_3D,
    HAS_3D,
    VERTICES_3D,
)
"""Every key of a sample, in table order."""

DEFAULT_MAX_HANDS = 4
DOWN_RATIO = 4
"""Input pixels per map cell."""
NUM_JOINTS = 21
NUM_VERTICES = 778
POSE_DIM = 48
BETAS_DIM = 10
MIN_OVERLAP = 0.7
"""CenterNet's minimum box overlap that sets the Gaussian radius."""
CENTRE_MEAN = "mean"
CENTRE_BOX = "box"

_BINARY_KEYS = (HAS_MASK, VALID, IS_RIGHT, KEYPOINTS_VIS, HAS_MANO, HAS_3D)


class SampleError(ValueError):
    """A sample does not follow the batch contract."""


def sample_shapes(resolution: int, max_hands: int = DEFAULT_MAX_HANDS) -> dict[str, tuple]:
    """Shape and dtype of every key: {key: (shape, dtype)}."""
    if resolution <= 0 or resolution % DOWN_RATIO:
        raise SampleError(f"resolution must be a positive multiple of 4, got {resolution}")
    if max_hands <= 0:
        raise SampleError(f"max_hands must be positive, got {max_hands}")
    r, w, m = resolution, resolution // DOWN_RATIO, max_hands
    f32, i64 = torch.float32, torch.int64
    return {
        IMAGE: ((3, r, r), f32),
        IMAGE_RGB: ((3, r, r), f32),
        MASK: ((1, r, r), f32),
        HAS_MASK: ((), f32),
        HM: ((1, w, w), f32),
        HANDMAP: ((2, w, w), f32),
        IND: ((m,), i64),
        VALID: ((m,), f32),
        IS_RIGHT: ((m,), f32),
        KEYPOINTS_PX: ((m, NUM_JOINTS, 2), f32),
        KEYPOINTS_VIS: ((m, NUM_JOINTS), f32),
        MANO_POSE: ((m, POSE_DIM), f32),
        MANO_BETAS: ((m, BETAS_DIM), f32),
        HAS_MANO: ((m,), f32),
        JOINTS_3D: ((m, NUM_JOINTS, 3), f32),
        HAS_3D: ((m,), f32),
        VERTICES_3D: ((m, NUM_VERTICES, 3), f32),
    }


def empty_sample(resolution: int, max_hands: int = DEFAULT_MAX_HANDS) -> dict[str, torch.Tensor]:
    """A sample of zeros (no hands, black image as zeros, nothing labelled)."""
    return {
        key: torch.zeros(shape, dtype=dtype)
        for key, (shape, dtype) in sample_shapes(resolution, max_hands).items()
    }


@dataclass(frozen=True)
class HandLabel:
    """Labels of one hand in input-image pixels and the virtual camera of the input image."""

    is_right: bool
    keypoints_px: np.ndarray
    """(21, 2) FreiHAND-order keypoints, input pixels."""
    keypoints_vis: np.ndarray | None = None
    """(21,) 1 where labelled; None means all labelled."""
    mano_pose: np.ndarray | None = None
    """(48,) axis-angle, flat-hand relative, radians."""
    mano_betas: np.ndarray | None = None
    """(10,) MANO shape; labelled together with `mano_pose`."""
    joints_3d: np.ndarray | None = None
    """(21, 3) metres, virtual camera K_v."""
    vertices_3d: np.ndarray | None = None
    """(778, 3) metres, virtual camera K_v; 3D counts as labelled only with `joints_3d`."""

    def __post_init__(self) -> None:
        checks = {
            "keypoints_px": (self.keypoints_px, (NUM_JOINTS, 2)),
            "keypoints_vis": (self.keypoints_vis, (NUM_JOINTS,)),
            "mano_pose": (self.mano_pose, (POSE_DIM,)),
            "mano_betas": (self.mano_betas, (BETAS_DIM,)),
            "joints_3d": (self.joints_3d, (NUM_JOINTS, 3)),
            "vertices_3d": (self.vertices_3d, (NUM_VERTICES, 3)),
        }
        for name, (value, shape) in checks.items():
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float32)
            if array.shape != shape:
                raise SampleError(f"HandLabel.{name}: expected shape {shape}, got {array.shape}")
            if not np.all(np.isfinite(array)):
                raise SampleError(f"HandLabel.{name}: contains NaN or infinite values")
            object.__setattr__(self, name, array)
        if (self.mano_pose is None) != (self.mano_betas is None):
            raise SampleError("HandLabel: mano_pose and mano_betas must be given together")

    @property
    def visibility(self) -> np.ndarray:
        """(21,) float32 labelled flags."""
        if self.keypoints_vis is None:
            return np.ones(NUM_JOINTS, dtype=np.float32)
        return self.keypoints_vis


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's Gaussian radius (cells) for a box of height x width cells.

    The largest corner displacement such that a box with displaced corners still overlaps the
    true box by at least `min_overlap` (IoU), over CenterNet's three cases.
    """
    a1 = 1.0
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2 = 4.0
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, centre: tuple[int, int], radius: int) -> None:
    """Draw a peak-1 Gaussian of `radius` cells (sigma = diameter / 6) at integer `centre`
    (x, y) into `heatmap` (H, W) in place, keeping the maximum where Gaussians overlap."""
    radius = max(0, int(radius))
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(np.float64).eps * kernel.max()] = 0
    x, y = int(centre[0]), int(centre[1])
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = kernel[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch.astype(heatmap.dtype), out=region)


def hand_centre(
    keypoints_px: np.ndarray, labelled: np.ndarray, resolution: int, mode: str = CENTRE_MEAN
) -> tuple[np.ndarray, np.ndarray] | None:
    """Training centre (2,) and keypoint box (4,) = (u0, v0, u1, v1) of one hand, input pixels.

    Uses the labelled keypoints inside the R x R image; None if there are none.
    """
    if mode not in (CENTRE_MEAN, CENTRE_BOX):
        raise SampleError(f"centre mode must be {CENTRE_MEAN!r} or {CENTRE_BOX!r}, got {mode!r}")
    kp = np.asarray(keypoints_px, dtype=np.float64)
    inside = (
        (np.asarray(labelled) > 0)
        & (kp[:, 0] >= 0)
        & (kp[:, 1] >= 0)
        & (kp[:, 0] < resolution)
        & (kp[:, 1] < resolution)
    )
    if not inside.any():
        return None
    points = kp[inside]
    box = np.concatenate([points.min(axis=0), points.max(axis=0)])
    centre = points.mean(axis=0) if mode == CENTRE_MEAN else (box[:2] + box[2:]) / 2.0
    return centre, box


def make_sample(
    image_bgr: np.ndarray,
    hands: Sequence[HandLabel],
    mask: np.ndarray | None = None,
    max_hands: int = DEFAULT_MAX_HANDS,
    centre_mode: str = CENTRE_MEAN,
) -> dict[str, torch.Tensor]:
    """Build a contract sample from an (R, R, 3) uint8 BGR input image, its hands and an
    optional (R, R) hand mask in [0, 1] (None: unlabelled).

    Slots follow the order of `hands`; hands beyond `max_hands`, and hands without a labelled
    keypoint inside the image, get no slot (their pixels stay in the mask).
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise SampleError(f"image_bgr: expected (R, R, 3) uint8, got {image.shape} {image.dtype}")
    resolution = image.shape[0]
    if image.shape[1] != resolution:
        raise SampleError(f"image_bgr: must be square, got {image.shape[:2]}")
    sample = empty_sample(resolution, max_hands)
    sample[IMAGE] = normalise(image[None])[0]
    rgb = np.ascontiguousarray(image[..., ::-1]).astype(np.float32) / 255.0
    sample[IMAGE_RGB] = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    if mask is not None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (resolution, resolution):
            raise SampleError(f"mask: expected shape {(resolution, resolution)}, got {mask.shape}")
        if not np.all((mask >= 0) & (mask <= 1)):
            raise SampleError("mask: values must lie in [0, 1]")
        sample[MASK] = torch.from_numpy(mask)[None].clone()
        sample[HAS_MASK] = torch.tensor(1.0)
    width = resolution // DOWN_RATIO
    hm = np.zeros((width, width), dtype=np.float32)
    handmap = np.zeros((2, width, width), dtype=np.float32)
    slot = 0
    for hand in hands:
        if slot == max_hands:
            break
        found = hand_centre(hand.keypoints_px, hand.visibility, resolution, centre_mode)
        if found is None:
            continue
        centre, box = found
        cell = np.floor(centre / DOWN_RATIO).astype(int)
        box_cells = (box[2:] - box[:2]) / DOWN_RATIO
        radius = int(gaussian_radius(math.ceil(box_cells[1]), math.ceil(box_cells[0])))
        draw_gaussian(hm, (cell[0], cell[1]), radius)
        draw_gaussian(handmap[int(hand.is_right)], (cell[0], cell[1]), radius)
        sample[IND][slot] = int(cell[1] * width + cell[0])
        sample[VALID][slot] = 1.0
        sample[IS_RIGHT][slot] = float(hand.is_right)
        sample[KEYPOINTS_PX][slot] = torch.from_numpy(np.asarray(hand.keypoints_px, np.float32))
        sample[KEYPOINTS_VIS][slot] = torch.from_numpy(hand.visibility)
        if hand.mano_pose is not None:
            sample[MANO_POSE][slot] = torch.from_numpy(hand.mano_pose)
            sample[MANO_BETAS][slot] = torch.from_numpy(hand.mano_betas)
            sample[HAS_MANO][slot] = 1.0
        if hand.joints_3d is not None:
            sample[JOINTS_3D][slot] = torch.from_numpy(hand.joints_3d)
            if hand.vertices_3d is not None:
                sample[VERTICES_3D][slot] = torch.from_numpy(hand.vertices_3d)
                sample[HAS_3D][slot] = 1.0
        slot += 1
    sample[HM] = torch.from_numpy(hm)[None]
    sample[HANDMAP] = torch.from_numpy(handmap)
    return sample


def validate_sample(
    sample: Mapping[str, torch.Tensor],
    resolution: int | None = None,
    max_hands: int | None = None,
) -> None:
    """Raise SampleError naming the key if `sample` breaks the contract.

    R and M are read from `image` and `ind` unless given. Checks the key set, shapes, dtypes,
    finiteness, 0/1 flags, mask range, cell indices inside the map, and that vertices are zero
    in slots without 3D labels.
    """
    missing = [k for k in KEYS if k not in sample]
    extra = sorted(set(sample) - set(KEYS))
    if missing or extra:
        raise SampleError(f"sample keys: missing {missing}, unexpected {extra}")
    for key in KEYS:
        if not isinstance(sample[key], torch.Tensor):
            raise SampleError(f"{key}: expected a torch.Tensor, got {type(sample[key]).__name__}")
    if resolution is None:
        resolution = int(sample[IMAGE].shape[-1])
    if max_hands is None:
        max_hands = int(sample[IND].shape[0]) if sample[IND].dim() == 1 else 0
    for key, (shape, dtype) in sample_shapes(resolution, max_hands).items():
        value = sample[key]
        if tuple(value.shape) != shape:
            raise SampleError(f"{key}: expected shape {shape}, got {tuple(value.shape)}")
        if value.dtype != dtype:
            raise SampleError(f"{key}: expected dtype {dtype}, got {value.dtype}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise SampleError(f"{key}: contains NaN or infinite values")
    for key in _BINARY_KEYS:
        value = sample[key]
        if not ((value == 0) | (value == 1)).all():
            raise SampleError(f"{key}: values must be 0 or 1")
    for key in (MASK, IMAGE_RGB, HM, HANDMAP):
        value = sample[key]
        if (value < 0).any() or (value > 1).any():
            raise SampleError(f"{key}: values must lie in [0, 1]")
    cells = (resolution // DOWN_RATIO) ** 2
    ind = sample[IND]
    if (ind < 0).any() or (ind >= cells).any():
        raise SampleError(f"{IND}: cell indices must lie in [0, {cells}), got {ind.tolist()}")
    empty = sample[HAS_3D] == 0
    if sample[VERTICES_3D][empty].abs().sum() > 0:
        raise SampleError(f"{VERTICES_3D}: must be zero in slots with {HAS_3D} = 0")
    unused = sample[VALID] == 0
    for key in (IS_RIGHT, HAS_MANO, HAS_3D):
        if (sample[key][unused] != 0).any():
            raise SampleError(f"{key}: must be 0 in slots with {VALID} = 0")
