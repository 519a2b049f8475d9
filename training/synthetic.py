"""Synthetic multi-hand scenes: posed hand meshes rendered over procedural backgrounds.

A scene is one square image of R x R pixels seen by the network's virtual camera K_v with one to
four hands of a MANO-format hand model (the open hand model by default; left hands use the left
model), each with a random pose inside anatomical limits, a random shape, skin tone and place,
lit by one random spherical-harmonics light per scene. Every label of the batch contract comes
with it: 2D keypoints (the projection of the joints), hand masks from the renderer, handedness,
MANO parameters and 3D joints and vertices.

Scenes are deterministic: scene `seed` always gives the same image and labels
(`SceneGenerator.scene`). `SyntheticScenes` is the torch Dataset (index i uses seed
`base_seed + i`), `write_scenes` / `load_scene` / `SceneFolder` store scenes as PNG images and
JSON labels (a held-out evaluation set, test inputs for the ROS node):

    python -m training.synthetic --out data/synthetic_eval --count 200 --seed 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from smhr_core.camera import project, virtual_intrinsics
from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training import sample as S
from training.joint_limits import left_limits, right_limits
from training.render import LIGHT_DIM, HandRenderer
from training.sharpness import soften

SCENE_FORMAT = "smhr-synthetic-scene/1"
"""`format` field of a scene's JSON labels."""
FOREARM = -2
"""`Scene.hand_index` value of forearm pixels (not part of the hand masks)."""
_FOREARM_PNG = 255
SOFTEN_STREAM = 1
"""Second seed word of a scene's softening generator (`training.sharpness`)."""
"""Forearm pixels in a saved mask image (0 background, k + 1 hand k)."""

# Finger joints of the 45-D pose in MANO order: index, middle, pinky, ring (3 joints each), then
# the thumb. Right-hand axes (training.joint_limits): flexion +z, spread +y (towards the
# thumb), twist x. Left hands mirror x: (x, y, z) -> (x, -y, -z).
_FLEXION_MAX = ((1.45, 1.75, 1.20), (1.50, 1.80, 1.25), (1.55, 1.85, 1.25), (1.50, 1.80, 1.25))
"""Flexion (radians) of each finger's three joints at full curl: index, middle, pinky, ring."""
_SPREAD_OPEN = (0.18, 0.03, -0.28, -0.14)
"""Spread of each finger's knuckle when open (towards the thumb is positive)."""
_SKIN_DARK = np.array([0.20, 0.13, 0.10])
_SKIN_LIGHT = np.array([0.78, 0.62, 0.52])
"""RGB albedo range of skin tones (linear mix between the two)."""


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Sizes are fractions of the image side."""

    resolution: int = 384
    """Square image side, pixels (the virtual camera K_v of this resolution is used)."""
    min_hands: int = 1
    max_hands: int = 4
    hand_size: tuple[float, float] = (0.22, 0.45)
    """Range of the larger side of a hand's projected mesh box."""
    max_overlap: float = 0.15
    """Largest intersection of two hands' boxes, as a fraction of the smaller box."""
    left_probability: float = 0.5
    supersampling: int = 2
    """Render at this many times the resolution and shrink, for smooth edges."""
    forearm_probability: float = 0.9
    """Chance that a hand continues into a forearm (bare skin or a sleeve); forearms are not
    part of the hand masks. Real images show arms, and MANO's open wrist would be a cue."""
    sleeve_probability: float = 0.4
    """Chance that a forearm wears a sleeve from a few centimetres past the wrist."""
    max_tilt_deg: float = 70.0
    """Largest tilt of a hand's palm (or back) away from facing the camera, degrees."""
    any_orientation_probability: float = 0.2
    """Chance that a hand takes a uniformly random orientation instead (edge-on included)."""
    background_scale: tuple[float, float] = (1.0, 1.0)
    """Range (low, high) of the scale at which a scene's background is drawn: at `scale` times
    the image side, then resized to it (log-uniform draw). Above 1 its blur and sensor noise are
    finer-grained, as in a larger image seen shrunk (the predictor's letterbox and second-look
    crops); below 1 coarser, as in a smaller image enlarged. (1, 1) draws no scale, so scenes
    stay exactly as before the option existed."""

    def __post_init__(self) -> None:
        if self.resolution <= 0 or self.resolution % 4:
            raise ValueError(f"resolution must be a positive multiple of 4, got {self.resolution}")
        if not 1 <= self.min_hands <= self.max_hands:
            raise ValueError(
                f"need 1 <= min_hands <= max_hands, got {self.min_hands}, {self.max_hands}"
            )
        low, high = self.hand_size
        if not 0 < low <= high <= 1:
            raise ValueError(f"hand_size must satisfy 0 < low <= high <= 1, got {self.hand_size}")
        if not 0.0 <= self.max_tilt_deg <= 180.0:
            raise ValueError(f"max_tilt_deg must be in [0, 180], got {self.max_tilt_deg}")
        if not 0.0 <= self.any_orientation_probability <= 1.0:
            raise ValueError(
                "any_orientation_probability must be in [0, 1], "
                f"got {self.any_orientation_probability}"
            )
        if self.supersampling < 1:
            raise ValueError(f"supersampling must be >= 1, got {self.supersampling}")
        low, high = self.background_scale
        if not 0.25 <= low <= high <= 4.0:
            raise ValueError(
                "background_scale must satisfy 0.25 <= low <= high <= 4, "
                f"got {self.background_scale}"
            )


@dataclass(frozen=True, eq=False)
class SceneHand:
    """Ground truth of one hand of a scene (metres and pixels of the scene's camera)."""

    is_right: bool
    global_orient: np.ndarray
    """(3,) axis-angle about the wrist, radians."""
    hand_pose: np.ndarray
    """(45,) finger joints, axis-angle, flat-hand relative, radians."""
    betas: np.ndarray
    """(10,) shape."""
    translation_m: np.ndarray
    """(3,) added after the rotation: wrist = rest wrist + translation."""
    joints_m: np.ndarray
    """(21, 3) FreiHAND-order joints, camera frame."""
    vertices_m: np.ndarray
    """(778, 3) mesh vertices, camera frame."""
    keypoints_px: np.ndarray
    """(21, 2) projection of `joints_m`, pixels."""

    def label(self) -> S.HandLabel:
        """This hand as a batch-contract label (all keypoints labelled)."""
        return S.HandLabel(
            is_right=self.is_right,
            keypoints_px=self.keypoints_px,
            mano_pose=np.concatenate([self.global_orient, self.hand_pose]),
            mano_betas=self.betas,
            joints_3d=self.joints_m,
            vertices_3d=self.vertices_m,
        )


@dataclass(frozen=True, eq=False)
class Scene:
    """One synthetic image and its hands."""

    image_bgr: np.ndarray
    """(R, R, 3) uint8."""
    hand_index: np.ndarray
    """(R, R) int8: index into `hands` of the hand seen at each pixel, `FOREARM` where a
    forearm is seen, -1 for background."""
    hands: tuple[SceneHand, ...]
    camera_matrix: np.ndarray
    """(3, 3) float64 intrinsics of the image (K_v of its resolution)."""
    seed: int = -1
    """Seed that generated the scene (-1 if unknown)."""
    light: np.ndarray = field(default_factory=lambda: np.zeros(LIGHT_DIM, dtype=np.float32))
    """(27,) SH lighting the hands were shaded with (colour-major, before the ambient offset)."""

    @property
    def mask(self) -> np.ndarray:
        """(R, R) float32 union of the hand masks (0 or 1)."""
        return (self.hand_index >= 0).astype(np.float32)

    def to_sample(
        self, max_hands: int = S.DEFAULT_MAX_HANDS, centre_mode: str = S.CENTRE_MEAN
    ) -> dict[str, torch.Tensor]:
        """The scene as a batch-contract sample."""
        return S.make_sample(
            self.image_bgr,
            [hand.label() for hand in self.hands],
            mask=self.mask,
            max_hands=max_hands,
            centre_mode=centre_mode,
        )


def _rotation_matrix(axis_angle: np.ndarray) -> np.ndarray:
    rotation, _ = cv2.Rodrigues(np.asarray(axis_angle, dtype=np.float64).reshape(3, 1))
    return rotation


def _axis_angle(rotation: np.ndarray) -> np.ndarray:
    vector, _ = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64))
    return vector.reshape(3)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


_PALM_TO_CAMERA = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
"""Rotation taking MANO's axes (fingers -x, palm -y) to the camera's (x right, y down, z ahead):
fingers up in the image, palm facing the camera."""


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def viewing_rotation(rng: np.random.Generator, max_tilt: float) -> np.ndarray:
    """A 3x3 hand orientation in camera axes as hands are usually seen: palm or back towards the
    camera (even odds), tilted away from facing it by at most `max_tilt` radians (uniform over
    that cap of directions), at any angle in the image plane. Edge-on views, where a hand's side
    and pose are hardly visible, are left out."""
    facing = _PALM_TO_CAMERA
    if rng.random() < 0.5:
        facing = _rotation_about(np.array([0.0, 1.0, 0.0]), math.pi) @ facing
    tilt = math.acos(rng.uniform(math.cos(max_tilt), 1.0))
    direction = rng.uniform(0.0, 2.0 * math.pi)
    tilt_axis = np.array([math.cos(direction), math.sin(direction), 0.0])
    in_plane = _rotation_about(np.array([0.0, 0.0, 1.0]), rng.uniform(-math.pi, math.pi))
    return in_plane @ _rotation_about(tilt_axis, tilt) @ facing


def random_hand_pose(rng: np.random.Generator, is_right: bool) -> np.ndarray:
    """(45,) finger pose: each finger curls mostly about its flexion axis, by an amount drawn
    around a hand-wide grip, with spread shrinking as it curls; clamped to the joint limits."""
    grip = rng.choice([rng.uniform(0.0, 0.2), rng.uniform(0.2, 0.7), rng.uniform(0.7, 1.0)])
    pose = np.zeros((15, 3))
    for finger in range(4):
        curl = float(np.clip(grip + rng.normal(0.0, 0.22), 0.0, 1.0))
        for joint in range(3):
            flexion = curl * _FLEXION_MAX[finger][joint] * rng.uniform(0.85, 1.1)
            twist = rng.normal(0.0, 0.05)
            spread = 0.0
            if joint == 0:
                spread = _SPREAD_OPEN[finger] * (1.0 - curl) * rng.uniform(0.2, 1.3)
                spread += rng.normal(0.0, 0.04)
                flexion += rng.normal(0.0, 0.1) - 0.1 * (1.0 - curl) * rng.random()
            pose[finger * 3 + joint] = (twist, spread, flexion)
    thumb = float(np.clip(grip + rng.normal(0.0, 0.3), 0.0, 1.0))
    pose[12] = (
        rng.normal(0.0, 0.15),
        rng.uniform(-0.35, 0.25),
        0.5 * thumb + rng.uniform(-0.2, 0.25),
    )
    pose[13] = (rng.normal(0.0, 0.08), rng.normal(0.0, 0.08), 0.55 * thumb + rng.uniform(-0.1, 0.3))
    pose[14] = (rng.normal(0.0, 0.05), rng.normal(0.0, 0.05), 0.75 * thumb + rng.uniform(-0.1, 0.2))
    limits = right_limits().astype(np.float64)
    pose = np.clip(pose.reshape(45), limits[:, 0], limits[:, 1])
    if not is_right:
        pose = (pose.reshape(15, 3) * np.array([1.0, -1.0, -1.0])).reshape(45)
        limits = left_limits()
        pose = np.clip(pose, limits[:, 0], limits[:, 1])
    return pose.astype(np.float32)


def random_light(rng: np.random.Generator) -> np.ndarray:
    """(27,) colour-major SH light: tinted ambient, a random main direction, mild higher bands."""
    light = np.zeros((3, 9))
    ambient = rng.uniform(0.25, 0.8)
    light[:, 0] = ambient + rng.uniform(-0.06, 0.06, size=3)
    direction = rng.uniform(-0.35, 0.35, size=3)
    light[:, 1:4] = direction[None, :] * rng.uniform(0.85, 1.15, size=(3, 1))
    light[:, 4:] = rng.normal(0.0, 0.06, size=(1, 5)) + rng.normal(0.0, 0.01, size=(3, 5))
    return light.reshape(LIGHT_DIM).astype(np.float32)


@dataclass(frozen=True)
class SkinRegions:
    """Per-vertex weights in [0, 1] of a hand model's palmar side and fingernails (one side).

    Real palms are lighter and pinker than the backs of hands, and nails are lighter still; with
    a uniform albedo a hand seen from the palm and its mirror image seen from the back would look
    the same, and the side (left/right) and the facing would be unobservable."""

    palmar: np.ndarray
    """(V,) 1 on the palm side, 0 on the back, smooth in between."""
    nail: np.ndarray
    """(V,) 1 on the nails (dorsal side of the last ~1 cm of each finger)."""


def skin_regions(hand_model: HandModel, is_right: bool) -> SkinRegions:
    """The palmar and nail regions of `hand_model`, from vertex normals of its flat rest pose
    (MANO axes: the palm faces -y)."""
    device = next(iter(hand_model.buffers())).device
    with torch.no_grad():
        rest = hand_model(
            torch.zeros(1, 3, device=device),
            torch.zeros(1, 45, device=device),
            torch.zeros(1, 10, device=device),
            torch.zeros(1, 3, device=device),
            torch.tensor([is_right], device=device),
        )
    vertices = rest.vertices[0].cpu().numpy().astype(np.float64)
    tips = rest.joints[0].cpu().numpy().astype(np.float64)[[4, 8, 12, 16, 20]]
    faces = np.asarray(hand_model.faces(is_right))
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(normals, faces[:, i], face_normals)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(min=1e-12)
    # Face winding differs between models and sides: make the normals point outwards.
    if np.sum(normals * (vertices - vertices.mean(axis=0))) < 0:
        normals = -normals
    palmar = np.clip((-normals[:, 1] + 0.15) / 0.5, 0.0, 1.0)
    tip_distance = np.linalg.norm(vertices[:, None] - tips[None], axis=2).min(axis=1)
    nail = np.clip((normals[:, 1] - 0.35) / 0.3, 0.0, 1.0) * (tip_distance < 0.011)
    return SkinRegions(palmar=palmar.astype(np.float32), nail=nail.astype(np.float32))


_PALM_TINT = np.array([1.18, 1.08, 1.08])
"""Palm albedo relative to the back of the hand (lighter, slightly pinker)."""
_NAIL_COLOUR = np.array([0.86, 0.72, 0.70])


def random_albedo(rng: np.random.Generator, regions: SkinRegions) -> np.ndarray:
    """(V, 3) RGB skin albedo: a tone between dark and light skin, slightly tinted and mottled,
    with a lighter palm and nails."""
    tone = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * rng.uniform(0.0, 1.0)
    tone = tone * rng.uniform(0.92, 1.08, size=3)
    # Darker skin has a relatively lighter palm.
    palm = np.minimum(tone * _PALM_TINT * rng.uniform(1.0, 1.25), np.maximum(tone, 0.85))
    palmar = regions.palmar[:, None]
    colour = tone * (1.0 - palmar) + palm * palmar
    nail = regions.nail[:, None] * rng.uniform(0.6, 0.9)
    colour = colour * (1.0 - nail) + _NAIL_COLOUR * nail
    mottle = rng.normal(0.0, 0.012, size=colour.shape)
    return np.clip(colour + mottle, 0.02, 1.0).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    coarse = rng.uniform(0.0, 1.0, size=(cells, cells, 3))
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _palette(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=(count, 3))


def random_background(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """(size, size, 3) uint8 BGR procedural background: a gradient, noise, stripes, a
    checkerboard or blobs as the base, up to two more of them blended on top, then blur and
    sensor noise, all drawn at round(`scale` * size) pixels and resized to `size` (area
    averaging when shrinking, bilinear when enlarging)."""
    drawn = max(4, round(scale * size))
    if drawn == size:
        return _background(rng, size)
    interpolation = cv2.INTER_AREA if drawn > size else cv2.INTER_LINEAR
    return cv2.resize(_background(rng, drawn), (size, size), interpolation=interpolation)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) / size

    def gradient() -> np.ndarray:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        t = np.cos(angle) * cols + np.sin(angle) * rows
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        a, b = _palette(rng, 2)
        return a * (1.0 - t[..., None]) + b * t[..., None]

    def noise() -> np.ndarray:
        octaves = [_value_noise(rng, size, int(c)) * w for c, w in ((4, 0.5), (12, 0.3), (40, 0.2))]
        base = sum(octaves)
        a, b = _palette(rng, 2)
        return a + (b - a) * base

    def stripes() -> np.ndarray:
        angle = rng.uniform(0.0, math.pi)
        period = rng.uniform(0.03, 0.25)
        t = (np.cos(angle) * cols + np.sin(angle) * rows) / period
        wave = 0.5 + 0.5 * np.sin(2.0 * math.pi * t)
        if rng.random() < 0.5:
            wave = np.round(wave)
        a, b = _palette(rng, 2)
        return a + (b - a) * wave[..., None]

    def checkerboard() -> np.ndarray:
        angle = rng.uniform(0.0, math.pi)
        period = rng.uniform(0.04, 0.2)
        u = (np.cos(angle) * cols + np.sin(angle) * rows) / period
        v = (-np.sin(angle) * cols + np.cos(angle) * rows) / period
        board = (np.floor(u) + np.floor(v)) % 2
        a, b = _palette(rng, 2)
        return a + (b - a) * board[..., None]

    def blobs() -> np.ndarray:
        image = np.zeros((size, size, 3)) + _palette(rng, 1)
        for _ in range(int(rng.integers(3, 12))):
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (
                int(rng.integers(size // 20, size // 3)),
                int(rng.integers(size // 20, size // 3)),
            )
            colour = tuple(float(c) for c in _palette(rng, 1)[0])
            if rng.random() < 0.3:
                tone = _SKIN_DARK + (_SKIN_LIGHT - _SKIN_DARK) * rng.uniform(0.0, 1.0)
                colour = tuple(float(c) for c in tone[::-1] * 255.0)
            if rng.random() < 0.5:
                cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
            else:
                corner = (centre[0] + axes[0], centre[1] + axes[1])
                cv2.rectangle(image, centre, corner, colour, -1)
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 3.0))

    kinds = (gradient, noise, stripes, checkerboard, blobs)
    image = kinds[int(rng.integers(len(kinds)))]()
    for _ in range(int(rng.integers(0, 3))):
        layer = kinds[int(rng.integers(len(kinds)))]()
        alpha = rng.uniform(0.15, 0.6)
        if rng.random() < 0.5:
            image = image * (1.0 - alpha) + layer * alpha
        else:
            region = _value_noise(rng, size, int(rng.integers(2, 6)))[..., :1] > 0.5
            image = np.where(region, image * (1.0 - alpha) + layer * alpha, image)
    blur = rng.uniform(0.0, 1.5)
    if blur > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    image = image + rng.normal(0.0, rng.uniform(0.0, 5.0), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


FOREARM_RINGS = 6
"""Rings of vertices along a forearm after the wrist ring."""


def wrist_loop(faces: np.ndarray) -> np.ndarray:
    """Vertex indices of the mesh's longest boundary loop (MANO's wrist opening), ordered
    along the faces' directed boundary edges."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected, counts = np.unique(np.sort(edges, axis=1), axis=0, return_counts=True)
    boundary = {tuple(edge) for edge in undirected[counts == 1]}
    following = {int(a): int(b) for a, b in edges if tuple(sorted((a, b))) in boundary}
    loops, seen = [], set()
    for start in following:
        if start in seen:
            continue
        loop, vertex = [], start
        while vertex not in seen and vertex in following:
            seen.add(vertex)
            loop.append(vertex)
            vertex = following[vertex]
        loops.append(loop)
    if not loops:
        raise ValueError("the hand mesh is closed: no wrist opening to attach a forearm to")
    return np.array(max(loops, key=len), dtype=np.int64)


def forearm_faces(loop_length: int, rings: int = FOREARM_RINGS) -> np.ndarray:
    """Triangles of a forearm tube of `rings` + 1 rings of `loop_length` vertices, closed at
    the far end by a fan around one last vertex; ring 0 is the wrist loop, wound like the hand
    mesh around it."""
    faces = []
    for ring in range(rings):
        for i in range(loop_length):
            a = ring * loop_length + i
            b = ring * loop_length + (i + 1) % loop_length
            # The hand's faces use the loop edge a -> b; the tube continues with b -> a.
            faces.append((b, a, a + loop_length))
            faces.append((b, a + loop_length, b + loop_length))
    end = (rings + 1) * loop_length
    for i in range(loop_length):
        faces.append((end - loop_length + (i + 1) % loop_length, end - loop_length + i, end))
    return np.array(faces, dtype=np.int64)


def forearm_vertices(
    vertices: np.ndarray,
    joints: np.ndarray,
    loop: np.ndarray,
    length_m: float,
    flare: float,
    rings: int = FOREARM_RINGS,
) -> np.ndarray:
    """((rings + 1) * L + 1, 3) forearm vertices: the wrist loop swept `length_m` away from the
    hand along the loop's normal, widening by `flare` (fraction) towards the elbow, and the
    centre of the far end."""
    ring = vertices[loop].astype(np.float64)
    centre = ring.mean(axis=0)
    _, _, axes = np.linalg.svd(ring - centre)
    normal = axes[2]
    if np.dot(normal, centre - joints[9]) < 0:
        normal = -normal
    steps = np.linspace(0.0, 1.0, rings + 1)
    tube = [centre + (ring - centre) * (1.0 + flare * t) + normal * length_m * t for t in steps]
    return np.concatenate([*tube, (centre + normal * length_m)[None]])


class SceneGenerator:
    """Draws scenes from a seed. Holds the hand model and the renderer (CPU by default)."""

    def __init__(
        self,
        config: SceneConfig | None = None,
        hand_model: HandModel | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config or SceneConfig()
        self.device = torch.device(device)
        self.hand_model = hand_model or HandModel.from_directory(open_hand_directory())
        self.hand_model = self.hand_model.to(self.device)
        r, ss = self.config.resolution, self.config.supersampling
        self.camera_matrix = virtual_intrinsics(r)
        self.renderer = HandRenderer(
            r * ss,
            torch.from_numpy(np.array(self.hand_model.faces(True))),
            torch.from_numpy(np.array(self.hand_model.faces(False))),
            focal_px=float(self.camera_matrix[0, 0]) * ss,
            principal_point_px=(r / 2.0 * ss, r / 2.0 * ss),
        ).to(self.device)
        # Forearms follow the right faces' wrist loop on both sides, so their normals match
        # the hands' (training.render shades both hands with the right model's faces).
        self.skin = {side: skin_regions(self.hand_model, side) for side in (False, True)}
        self.wrist_loop = wrist_loop(np.array(self.hand_model.faces(True)))
        arm_faces = torch.from_numpy(forearm_faces(len(self.wrist_loop)))
        self.forearm_renderer = HandRenderer(
            r * ss,
            arm_faces,
            arm_faces,
            focal_px=float(self.camera_matrix[0, 0]) * ss,
            principal_point_px=(r / 2.0 * ss, r / 2.0 * ss),
        ).to(self.device)

    def scene(self, seed: int) -> Scene:
        """The scene of `seed` (the same seed always gives the same scene)."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        scale = 1.0
        low, high = cfg.background_scale
        if low != 1.0 or high != 1.0:
            scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        background = random_background(rng, cfg.resolution, scale)
        count = int(rng.integers(cfg.min_hands, cfg.max_hands + 1))
        hands: list[SceneHand] = []
        boxes: list[np.ndarray] = []
        for _ in range(count):
            placed = self._place_hand(rng, boxes)
            if placed is None:
                break
            hand, box = placed
            hands.append(hand)
            boxes.append(box)
        light = random_light(rng)
        albedos = [random_albedo(rng, self.skin[hand.is_right]) for hand in hands]
        arms = [
            self._forearm(rng, hand, albedo) for hand, albedo in zip(hands, albedos, strict=True)
        ]
        image, hand_index = self._render(background, hands, albedos, arms, light, rng)
        return Scene(
            image_bgr=image,
            hand_index=hand_index,
            hands=tuple(hands),
            camera_matrix=self.camera_matrix.copy(),
            seed=int(seed),
            light=light,
        )

    def _pose(self, rng: np.random.Generator, is_right: bool) -> tuple[np.ndarray, ...]:
        cfg = self.config
        if rng.random() < cfg.any_orientation_probability:
            rotation = random_rotation(rng)
        else:
            rotation = viewing_rotation(rng, math.radians(cfg.max_tilt_deg))
        orient = _axis_angle(rotation).astype(np.float32)
        pose = random_hand_pose(rng, is_right)
        betas = np.clip(rng.normal(0.0, 0.7, size=10), -2.0, 2.0).astype(np.float32)
        return orient, pose, betas

    def _place_hand(
        self, rng: np.random.Generator, boxes: Sequence[np.ndarray], attempts: int = 30
    ) -> tuple[SceneHand, np.ndarray] | None:
        """A random hand whose mesh box fits the image and overlaps no box in `boxes` by more
        than `max_overlap`; None if no placement was found in `attempts` tries."""
        cfg = self.config
        r = cfg.resolution
        k = self.camera_matrix
        is_right = bool(rng.random() >= cfg.left_probability)
        orient, pose, betas = self._pose(rng, is_right)
        with torch.no_grad():
            posed = self.hand_model(
                torch.from_numpy(orient)[None],
                torch.from_numpy(pose)[None],
                torch.from_numpy(betas)[None],
                torch.zeros(1, 3),
                torch.tensor([is_right]),
            )
        vertices = posed.vertices[0].cpu().numpy().astype(np.float64)
        joints = posed.joints[0].cpu().numpy().astype(np.float64)
        centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2.0
        extent = float(np.max(vertices.max(axis=0)[:2] - vertices.min(axis=0)[:2]))
        for _ in range(attempts):
            size_px = rng.uniform(*cfg.hand_size) * r
            depth = k[0, 0] * extent / size_px
            half = size_px / 2.0
            target = rng.uniform(half, r - half, size=2)
            ray = np.linalg.solve(k, np.array([target[0], target[1], 1.0]))
            translation = ray * depth - centre
            if (vertices[:, 2] + translation[2]).min() < 0.05:
                continue
            uv_vertices = project(vertices + translation, k)
            box = np.concatenate([uv_vertices.min(axis=0), uv_vertices.max(axis=0)])
            keypoints = project(joints + translation, k)
            if (keypoints < 1.0).any() or (keypoints > r - 1.0).any():
                continue
            if any(_overlap(box, other) > cfg.max_overlap for other in boxes):
                continue
            hand = SceneHand(
                is_right=is_right,
                global_orient=orient,
                hand_pose=pose,
                betas=betas,
                translation_m=translation.astype(np.float32),
                joints_m=(joints + translation).astype(np.float32),
                vertices_m=(vertices + translation).astype(np.float32),
                keypoints_px=keypoints.astype(np.float32),
            )
            return hand, box
        return None

    def _forearm(
        self, rng: np.random.Generator, hand: SceneHand, albedo: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(vertices, albedo) of the hand's forearm, or None without one."""
        cfg = self.config
        if rng.random() >= cfg.forearm_probability:
            return None
        length = rng.uniform(0.2, 0.3)
        vertices = forearm_vertices(
            hand.vertices_m, hand.joints_m, self.wrist_loop, length, rng.uniform(0.05, 0.3)
        )
        loop = len(self.wrist_loop)
        colour = np.tile(albedo[self.wrist_loop].mean(axis=0), (len(vertices), 1))
        colour[:loop] = albedo[self.wrist_loop]  # no seam at the wrist
        if rng.random() < cfg.sleeve_probability:
            start = int(rng.integers(1, FOREARM_RINGS))
            colour[start * loop :] = rng.uniform(0.03, 0.9, size=3)
        return vertices.astype(np.float32), colour.astype(np.float32)

    def _render(
        self,
        background: np.ndarray,
        hands: Sequence[SceneHand],
        albedos: Sequence[np.ndarray],
        arms: Sequence[tuple[np.ndarray, np.ndarray] | None],
        light: np.ndarray,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Composite hands and forearms over the background; (image, hand index map)."""
        r, ss = self.config.resolution, self.config.supersampling
        if not hands:
            return background, np.full((r, r), -1, dtype=np.int8)
        with torch.no_grad():
            vertices = torch.from_numpy(np.stack([h.vertices_m for h in hands])).to(self.device)
            albedo = torch.from_numpy(np.stack(albedos)).to(self.device)
            lights = torch.from_numpy(light).to(self.device).expand(len(hands), -1)
            colours = self.renderer.shade(vertices, albedo, lights).clamp(0.0, 1.0)
            is_right = torch.tensor([h.is_right for h in hands], device=self.device)
            out = self.renderer(
                vertices[None], is_right[None], colours=colours[None], silhouette=False
            )
        rgb = out.image[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
        covered = out.mask[0, 0].cpu().numpy() > 0
        index = out.hand_index[0, 0].cpu().numpy()
        rgb, covered, index = self._add_forearms(
            rgb, covered, index, out.depth[0, 0].cpu().numpy(), arms, light
        )
        coverage = covered.astype(np.float64)
        hand_coverage = (index >= 0).astype(np.float64)
        arm_coverage = (index == FOREARM).astype(np.float64)
        if ss > 1:
            rgb = cv2.resize(rgb, (r, r), interpolation=cv2.INTER_AREA)
            coverage = cv2.resize(coverage, (r, r), interpolation=cv2.INTER_AREA)
            hand_coverage = cv2.resize(hand_coverage, (r, r), interpolation=cv2.INTER_AREA)
            arm_coverage = cv2.resize(arm_coverage, (r, r), interpolation=cv2.INTER_AREA)
            index = _majority_index(index, ss, len(hands))
        # Premultiplied colour over the background gives anti-aliased edges.
        hands_bgr = rgb[..., ::-1] * 255.0
        image = hands_bgr + background.astype(np.float64) * (1.0 - coverage[..., None])
        image = image + rng.normal(0.0, rng.uniform(0.0, 3.0), size=image.shape) * (
            coverage[..., None] > 0
        )
        index = np.where(hand_coverage >= 0.5, index, np.where(arm_coverage >= 0.5, FOREARM, -1))
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), index

    def _add_forearms(
        self,
        rgb: np.ndarray,
        covered: np.ndarray,
        index: np.ndarray,
        depth: np.ndarray,
        arms: Sequence[tuple[np.ndarray, np.ndarray] | None],
        light: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw the forearms over the rendered hands where they are nearer. A forearm that
        would hide more than a quarter of any hand's visible pixels is left out."""
        present = [i for i, arm in enumerate(arms) if arm is not None]
        if not present:
            return rgb, covered, index
        with torch.no_grad():
            vertices = torch.from_numpy(np.stack([arms[i][0] for i in present])).to(self.device)
            albedo = torch.from_numpy(np.stack([arms[i][1] for i in present])).to(self.device)
            lights = torch.from_numpy(light).to(self.device).expand(len(present), -1)
            colours = self.forearm_renderer.shade(vertices, albedo, lights).clamp(0.0, 1.0)
            sides = torch.ones(1, len(present), dtype=torch.bool, device=self.device)
            out = self.forearm_renderer(
                vertices[None], sides, colours=colours[None], silhouette=False
            )
        arm_rgb = out.image[0].permute(1, 2, 0).cpu().numpy().astype(np.float64)
        arm_index = out.hand_index[0, 0].cpu().numpy()
        arm_depth = out.depth[0, 0].cpu().numpy()
        wins = (arm_index >= 0) & (~covered | (arm_depth < depth))
        hand_pixels = np.bincount(index[index >= 0], minlength=len(arms))
        for slot in range(len(present)):
            hidden = np.bincount(
                index[wins & (arm_index == slot) & (index >= 0)], minlength=len(arms)
            )
            if (hidden > 0.25 * hand_pixels).any():
                wins &= arm_index != slot
        rgb = np.where(wins[..., None], arm_rgb, rgb)
        return rgb, covered | wins, np.where(wins, FOREARM, index)


def _majority_index(index: np.ndarray, factor: int, count: int) -> np.ndarray:
    """Shrink a hand-index map by `factor`: each output pixel takes its most frequent hand."""
    size = index.shape[0] // factor
    blocks = index.reshape(size, factor, size, factor).transpose(0, 2, 1, 3).reshape(size, size, -1)
    votes = np.stack([(blocks == h).sum(-1) for h in range(count)], axis=-1)
    best = votes.argmax(-1)
    return np.where(votes.max(-1) > 0, best, -1)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of boxes (u0, v0, u1, v1) as a fraction of the smaller one's area."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(width * height / max(smaller, 1e-9))


class SyntheticScenes(Dataset):
    """`length` synthetic scenes as batch-contract samples; index i is seed base_seed + i."""

    def __init__(
        self,
        length: int,
        base_seed: int = 0,
        config: SceneConfig | None = None,
        hand_model: HandModel | None = None,
        max_hands: int = S.DEFAULT_MAX_HANDS,
        centre_mode: str = S.CENTRE_MEAN,
        soften_probability: float = 0.0,
    ) -> None:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if not 0.0 <= soften_probability <= 1.0:
            raise ValueError(f"soften_probability must be in [0, 1], got {soften_probability}")
        self.length = int(length)
        self.base_seed = int(base_seed)
        self.generator = SceneGenerator(config, hand_model)
        self.max_hands = max_hands
        self.centre_mode = centre_mode
        self.soften_probability = float(soften_probability)

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        """The scene behind sample `index`."""
        if not 0 <= index < self.length:
            raise IndexError(f"scene index {index} out of range [0, {self.length})")
        return self.generator.scene(self.base_seed + index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene = self.scene(index)
        if self.soften_probability > 0.0:
            # A stream of its own, so the scene itself is the same with or without softening.
            rng = np.random.default_rng([scene.seed, SOFTEN_STREAM])
            image, _ = soften(scene.image_bgr, rng, self.soften_probability)
            scene = replace(scene, image_bgr=image)
        return scene.to_sample(self.max_hands, self.centre_mode)


def _scene_json(scene: Scene) -> dict:
    return {
        "format": SCENE_FORMAT,
        "seed": scene.seed,
        "resolution": int(scene.image_bgr.shape[0]),
        "camera_matrix": scene.camera_matrix.tolist(),
        "light": scene.light.tolist(),
        "hands": [
            {
                "is_right": hand.is_right,
                "global_orient": hand.global_orient.tolist(),
                "hand_pose": hand.hand_pose.tolist(),
                "betas": hand.betas.tolist(),
                "translation_m": hand.translation_m.tolist(),
                "joints_m": hand.joints_m.tolist(),
                "keypoints_px": hand.keypoints_px.tolist(),
                "vertices_m": hand.vertices_m.tolist(),
            }
            for hand in scene.hands
        ],
    }


def scene_paths(directory: str | Path, index: int) -> tuple[Path, Path, Path]:
    """(image, hand-index mask, labels) paths of scene `index` in a scene folder."""
    directory = Path(directory)
    name = f"{index:06d}"
    return (
        directory / "images" / f"{name}.png",
        directory / "masks" / f"{name}.png",
        directory / "labels" / f"{name}.json",
    )


def save_scene(scene: Scene, directory: str | Path, index: int) -> None:
    """Write one scene: images/NNNNNN.png (BGR), masks/NNNNNN.png (0 background, k + 1 for
    hand k, 255 forearms) and labels/NNNNNN.json (format `SCENE_FORMAT`)."""
    image_path, mask_path, label_path = scene_paths(directory, index)
    for path in (image_path, mask_path, label_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(image_path), scene.image_bgr):
        raise OSError(f"could not write {image_path}")
    mask = np.where(
        scene.hand_index == FOREARM, _FOREARM_PNG, scene.hand_index.astype(np.int16) + 1
    )
    if not cv2.imwrite(str(mask_path), mask.astype(np.uint8)):
        raise OSError(f"could not write {mask_path}")
    label_path.write_text(json.dumps(_scene_json(scene)))


def write_scenes(
    directory: str | Path,
    count: int,
    base_seed: int = 0,
    config: SceneConfig | None = None,
    hand_model: HandModel | None = None,
) -> Path:
    """Generate scenes base_seed .. base_seed + count - 1 into `directory`; returns it."""
    directory = Path(directory)
    generator = SceneGenerator(config, hand_model)
    for index in range(count):
        save_scene(generator.scene(base_seed + index), directory, index)
    return directory


def _array(data: dict, key: str, shape: tuple[int, ...], where: Path) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{where}: missing '{key}'")
    value = np.asarray(data[key], dtype=np.float32)
    if value.shape != shape:
        raise ValueError(f"{where}: '{key}' has shape {value.shape}, expected {shape}")
    return value


def load_scene(directory: str | Path, index: int) -> Scene:
    """Read scene `index` written by `save_scene`; errors name the file at fault."""
    image_path, mask_path, label_path = scene_paths(directory, index)
    for path in (image_path, mask_path, label_path):
        if not path.is_file():
            raise FileNotFoundError(f"scene {index}: missing {path}")
    try:
        data = json.loads(label_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{label_path}: not valid JSON ({error})") from error
    if data.get("format") != SCENE_FORMAT:
        raise ValueError(f"{label_path}: format {data.get('format')!r}, expected {SCENE_FORMAT!r}")
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    if image is None or mask is None:
        raise ValueError(f"scene {index}: unreadable image {image_path} or mask {mask_path}")
    size = int(data.get("resolution", -1))
    if image.shape[:2] != (size, size) or mask.shape != (size, size):
        raise ValueError(
            f"scene {index}: image {image.shape[:2]} / mask {mask.shape} do not match the "
            f"resolution {size} in {label_path}"
        )
    hands = []
    for number, hand in enumerate(data.get("hands", [])):
        where = Path(f"{label_path} hand {number}")
        hands.append(
            SceneHand(
                is_right=bool(hand.get("is_right", True)),
                global_orient=_array(hand, "global_orient", (3,), where),
                hand_pose=_array(hand, "hand_pose", (45,), where),
                betas=_array(hand, "betas", (10,), where),
                translation_m=_array(hand, "translation_m", (3,), where),
                joints_m=_array(hand, "joints_m", (21, 3), where),
                vertices_m=_array(hand, "vertices_m", (778, 3), where),
                keypoints_px=_array(hand, "keypoints_px", (21, 2), where),
            )
        )
    hand_index = np.where(mask == _FOREARM_PNG, FOREARM, mask.astype(np.int16) - 1)
    if hand_index.max() >= len(hands):
        raise ValueError(f"{mask_path}: labels hand {hand_index.max()} of only {len(hands)}")
    return Scene(
        image_bgr=image,
        hand_index=hand_index.astype(np.int8),
        hands=tuple(hands),
        camera_matrix=np.asarray(data["camera_matrix"], dtype=np.float64),
        seed=int(data.get("seed", -1)),
        light=_array(data, "light", (LIGHT_DIM,), label_path),
    )


class SceneFolder(Dataset):
    """Scenes written by `write_scenes`, as batch-contract samples."""

    def __init__(
        self,
        directory: str | Path,
        max_hands: int = S.DEFAULT_MAX_HANDS,
        centre_mode: str = S.CENTRE_MEAN,
    ) -> None:
        self.directory = Path(directory)
        labels = sorted((self.directory / "labels").glob("*.json"))
        if not labels:
            raise FileNotFoundError(f"no scenes in {self.directory} (expected labels/*.json)")
        self.indices = [int(path.stem) for path in labels]
        self.max_hands = max_hands
        self.centre_mode = centre_mode

    def __len__(self) -> int:
        return len(self.indices)

    def scene(self, position: int) -> Scene:
        return load_scene(self.directory, self.indices[position])

    def __getitem__(self, position: int) -> dict[str, torch.Tensor]:
        return self.scene(position).to_sample(self.max_hands, self.centre_mode)


def main(argv: Sequence[str] | None = None) -> int:
    """Write synthetic scenes to a folder (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.synthetic", description="Write synthetic multi-hand scenes."
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--count", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first scene")
    parser.add_argument("--resolution", type=int, default=384, help="image side, pixels")
    parser.add_argument("--max-hands", type=int, default=4, help="at most this many hands")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        config = SceneConfig(resolution=args.resolution, max_hands=args.max_hands)
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    write_scenes(args.out, args.count, args.seed, config)
    seconds = time.perf_counter() - start
    print(f"wrote {args.count} scenes to {args.out} ({seconds / args.count:.2f} s per scene)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
