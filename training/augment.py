"""Single-hand crop augmentation, mirroring, colour noise, and the image records they work on.

A `HandRecord` is one labelled image as a dataset stores it: the image, an optional hand mask,
its hands (`sample.HandLabel` in the image's own pixels, 3D in its camera K) and K. Cropping
(SPEC.md: crop around the keypoint box with the hand 30-60% of the crop, rotation +-40 degrees,
brightness/contrast noise, warp to 224) maps it to a network input in the virtual camera K_v.

Pixel convention: pixel i spans [i, i + 1) (its centre is i + 0.5), as in cv2.resize and
training.render; affine maps here act on such continuous coordinates and are converted for
cv2.warpAffine (which puts centres at integers).

3D under a crop: every point keeps its 2D position exactly (the crop's affine map of its
projection) and its depth relative to the root joint; the root's depth is scaled by
f_virtual / (f_source x crop scale) so the hand keeps its metric size; points are then
back-projected with K_v. The in-plane rotation of the crop turns the MANO global orientation
about the camera's z axis by the same angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from smhr_core.camera import back_project, virtual_intrinsics
from smhr_core.camera import project as project_points
from training import sample as S


@dataclass(frozen=True, eq=False)
class HandRecord:
    """One labelled image before augmentation."""

    image_bgr: np.ndarray
    """(H, W, 3) uint8."""
    hands: tuple[S.HandLabel, ...]
    """Hands in this image's pixels; 3D (if any) in the frame of `camera_matrix`, metres."""
    mask: np.ndarray | None = None
    """(H, W) float32 in [0, 1], union of the hand masks; None if unlabelled."""
    camera_matrix: np.ndarray | None = None
    """(3, 3) intrinsics of the image; None drops 3D labels under cropping."""
    name: str = ""
    """Where the record comes from, for error messages (dataset, index, file)."""


@dataclass(frozen=True)
class CropConfig:
    """Single-hand crop augmentation (SPEC.md defaults)."""

    output_size: int = 224
    hand_fraction: tuple[float, float] = (0.3, 0.6)
    """Range of the keypoint box's larger side as a fraction of the crop side."""
    max_rotation_deg: float = 40.0
    centre_jitter_px: float = 5.0
    """Uniform jitter of the crop centre, source pixels."""
    contrast: float = 0.3
    """Colour gain drawn in [1 - contrast, 1 + contrast] (with probability 1/2)."""
    brightness: float = 0.05
    """Offset drawn in [-brightness, brightness] x 255 (with the gain)."""
    root_joint: int = 9
    """Joint whose depth sets the hand's depth (middle finger knuckle, FreiHAND order)."""


def _rotation_2d(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def crop_affine(
    centre_px: np.ndarray, crop_side_px: float, angle_rad: float, output_size: int
) -> np.ndarray:
    """(2, 3) map from source to output pixels (continuous, centres at +0.5): the square of
    side `crop_side_px` around `centre_px`, turned by `angle_rad` (positive turns the image
    content clockwise on screen, i.e. from +x towards +y), onto an output_size square."""
    scale = output_size / crop_side_px
    linear = scale * _rotation_2d(angle_rad)
    offset = np.array([output_size / 2.0, output_size / 2.0]) - linear @ np.asarray(centre_px)
    return np.concatenate([linear, offset[:, None]], axis=1)


def apply_affine(affine: np.ndarray, points_px: np.ndarray) -> np.ndarray:
    """Map (..., 2) pixel coordinates with a (2, 3) affine."""
    points = np.asarray(points_px, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def warp_image(
    image: np.ndarray, affine: np.ndarray, output_size: int, interpolation: int = cv2.INTER_LINEAR
) -> np.ndarray:
    """cv2.warpAffine with the continuous-coordinate `affine` (zero border)."""
    linear = affine[:, :2]
    # Continuous u = p + 0.5 for OpenCV's integer pixel centres p.
    offset = affine[:, 2] + linear @ np.array([0.5, 0.5]) - 0.5
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    return cv2.warpAffine(
        image,
        matrix,
        (output_size, output_size),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def rotate_about_camera_z(axis_angle: np.ndarray, angle_rad: float) -> np.ndarray:
    """Axis-angle (3,) of Rz(angle) @ R(axis_angle): the same rotation seen by a camera
    turned about its optical axis (positive from +x towards +y)."""
    rotation, _ = cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    vector, _ = cv2.Rodrigues(turn @ rotation)
    return vector.reshape(3).astype(np.float32)


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror an axis-angle pose (..., 3k) in x: each (x, y, z) becomes (x, -y, -z)."""
    pose = np.asarray(pose, dtype=np.float32)
    return (pose.reshape(-1, 3) * np.array([1.0, -1.0, -1.0], dtype=np.float32)).reshape(pose.shape)


def warp_label(
    label: S.HandLabel,
    affine: np.ndarray,
    camera_matrix: np.ndarray | None,
    output_size: int,
    root_joint: int = 9,
) -> S.HandLabel:
    """A hand's labels after the crop `affine`: keypoints mapped; 3D moved from the source
    camera into K_v of the output (see the module docstring); MANO global orientation turned
    with the crop. Without `camera_matrix`, 3D labels are dropped."""
    keypoints = apply_affine(affine, label.keypoints_px).astype(np.float32)
    linear = affine[:, :2]
    scale = math.sqrt(abs(np.linalg.det(linear)))
    angle = math.atan2(linear[1, 0], linear[0, 0])
    pose = label.mano_pose
    if pose is not None:
        pose = pose.copy()
        pose[:3] = rotate_about_camera_z(pose[:3], angle)
    joints = vertices = None
    if label.joints_3d is not None and camera_matrix is not None:
        k_src = np.asarray(camera_matrix, dtype=np.float64)
        k_dst = virtual_intrinsics(output_size)
        f_src = math.sqrt(k_src[0, 0] * k_src[1, 1])
        root_depth = float(label.joints_3d[root_joint, 2])
        new_root_depth = root_depth * k_dst[0, 0] / (f_src * scale)

        def move(points: np.ndarray) -> np.ndarray:
            uv = apply_affine(affine, project_points(points, k_src))
            depth = new_root_depth + (points[:, 2] - root_depth)
            return back_project(uv, depth, k_dst).astype(np.float32)

        joints = move(label.joints_3d)
        if label.vertices_3d is not None:
            vertices = move(label.vertices_3d)
    return S.HandLabel(
        is_right=label.is_right,
        keypoints_px=keypoints,
        keypoints_vis=label.keypoints_vis,
        mano_pose=pose,
        mano_betas=label.mano_betas,
        joints_3d=joints,
        vertices_3d=vertices,
    )


def flip_record(record: HandRecord) -> HandRecord:
    """Mirror a record left-right: the image, mask and keypoints (u -> W - u), each hand's side,
    MANO pose (y, z of every axis-angle negated), 3D (x negated) and K (cx -> W - cx)."""
    width = record.image_bgr.shape[1]
    camera = None
    if record.camera_matrix is not None:
        camera = np.asarray(record.camera_matrix, dtype=np.float64).copy()
        camera[0, 2] = width - camera[0, 2]
        camera[0, 1] = -camera[0, 1]
    hands = []
    for hand in record.hands:
        keypoints = hand.keypoints_px.copy()
        keypoints[:, 0] = width - keypoints[:, 0]
        flip = np.array([-1.0, 1.0, 1.0], dtype=np.float32)
        hands.append(
            S.HandLabel(
                is_right=not hand.is_right,
                keypoints_px=keypoints,
                keypoints_vis=hand.keypoints_vis,
                mano_pose=None if hand.mano_pose is None else mirror_pose(hand.mano_pose),
                mano_betas=hand.mano_betas,
                joints_3d=None if hand.joints_3d is None else hand.joints_3d * flip,
                vertices_3d=None if hand.vertices_3d is None else hand.vertices_3d * flip,
            )
        )
    return replace(
        record,
        image_bgr=np.ascontiguousarray(record.image_bgr[:, ::-1]),
        mask=None if record.mask is None else np.ascontiguousarray(record.mask[:, ::-1]),
        hands=tuple(hands),
        camera_matrix=camera,
    )


def jitter_contrast(
    image: np.ndarray, rng: np.random.Generator, contrast: float, brightness: float
) -> np.ndarray:
    """Colour gain in [1 - contrast, 1 + contrast] and offset in +-brightness x 255."""
    gain = 1.0 + rng.uniform(-contrast, contrast)
    offset = rng.uniform(-brightness, brightness) * 255.0
    return np.clip(image.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def jitter_brightness(
    image: np.ndarray, rng: np.random.Generator, low: float = 0.4, high: float = 1.6
) -> np.ndarray:
    """Scale all channels by one factor in [low, high]."""
    factor = rng.uniform(low, high)
    return np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def keypoint_box(label: S.HandLabel) -> np.ndarray:
    """(u0, v0, u1, v1) of the labelled keypoints, pixels."""
    points = label.keypoints_px[label.visibility > 0]
    if len(points) == 0:
        raise ValueError("hand has no labelled keypoint")
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def crop_single_hand(
    record: HandRecord,
    rng: np.random.Generator | None,
    config: CropConfig | None = None,
    hand: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, S.HandLabel]:
    """Crop hand `hand` of `record` into an output_size square: (image, mask, label).

    With `rng` the crop is augmented (hand 30-60% of the crop, rotation, centre jitter,
    colour noise); with None it is the centred crop with the hand at the middle of the range.
    """
    config = config or CropConfig()
    if not record.hands:
        raise ValueError(f"{record.name or 'record'}: no hand to crop")
    label = record.hands[hand]
    try:
        box = keypoint_box(label)
    except ValueError as error:
        raise ValueError(f"{record.name or 'record'}: {error}") from error
    centre = (box[:2] + box[2:]) / 2.0
    side = max(float(np.max(box[2:] - box[:2])), 1.0)
    low, high = config.hand_fraction
    if rng is None:
        fraction, angle = (low + high) / 2.0, 0.0
    else:
        fraction = rng.uniform(low, high)
        angle = math.radians(rng.uniform(-config.max_rotation_deg, config.max_rotation_deg))
        centre = centre + rng.uniform(-config.centre_jitter_px, config.centre_jitter_px, size=2)
    size = config.output_size
    affine = crop_affine(centre, side / fraction, angle, size)
    image = warp_image(record.image_bgr, affine, size)
    mask = None
    if record.mask is not None:
        mask = (warp_image(record.mask.astype(np.float32), affine, size) >= 0.5).astype(np.float32)
    if rng is not None and rng.random() < 0.5:
        image = jitter_contrast(image, rng, config.contrast, config.brightness)
    warped = warp_label(label, affine, record.camera_matrix, size, config.root_joint)
    return image, mask, warped


def single_hand_sample(
    record: HandRecord,
    rng: np.random.Generator | None,
    config: CropConfig | None = None,
    max_hands: int = S.DEFAULT_MAX_HANDS,
) -> dict[str, torch.Tensor]:
    """Batch-contract sample of the first hand of `record`, cropped by `crop_single_hand`
    (centre = keypoint box centre, the single-hand rule of SPEC.md)."""
    image, mask, label = crop_single_hand(record, rng, config)
    return S.make_sample(image, [label], mask=mask, max_hands=max_hands, centre_mode=S.CENTRE_BOX)


def sample_rng(deterministic_seed: int | None = None) -> np.random.Generator:
    """A numpy generator for one sample's augmentation: seeded by `deterministic_seed` if given,
    else drawn from torch's generator (seeded per DataLoader worker and epoch)."""
    if deterministic_seed is not None:
        return np.random.default_rng(deterministic_seed)
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
