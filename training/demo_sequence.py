"""Generate the bundled demo sequence: synthetic hands of the open hand model moving and
articulating over a procedural background, with their ground truth.

    python -m training.demo_sequence --out smhr_ros/data/demo

writes `frames/000000.jpg ...` (48 frames, 320 x 240) and `labels.json` (format
`smhr-demo-sequence/1`, read by `smhr_ros.demo_sequence`). The output is deterministic: every
random choice comes from a fixed seed, the motion is a closed-form function of the frame index,
and the meshes are rasterised with PyTorch3D's conventions (`training.render.HandRenderer`) on
the CPU. Background, skin tones and light come from `training.synthetic`, as in the training
scenes.

Scene: one to three hands (`TRACKS`: one hand in frames 0-7, two in 8-19, three in 20-39, two
in 40-43, one in 44-47), each following a smooth path across the image with its
own rhythm of opening and closing the fingers, tilting and turning. Hands never leave the image,
so every ground-truth keypoint lies inside it (the generator checks this).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training.render import HandRenderer
from training.synthetic import random_albedo, random_background, random_light, skin_regions

LABELS_FORMAT = "smhr-demo-sequence/1"
WIDTH, HEIGHT = 320, 240
"""Frame size, pixels."""
NUM_FRAMES = 48
RATE_HZ = 10.0
"""Frame rate the motion is designed for (camera_node publishes at its own `rate_hz`)."""
FOCAL_PX = 300.0
"""fx = fy, pixels: a 56-degree horizontal field of view, like a common webcam."""
CAMERA_MATRIX = np.array(
    [[FOCAL_PX, 0.0, WIDTH / 2.0], [0.0, FOCAL_PX, HEIGHT / 2.0], [0.0, 0.0, 1.0]]
)
SUPERSAMPLING = 2
"""Render at this many times the resolution and shrink, for smooth edges."""
JPEG_QUALITY = 90
SEED = 3
MARGIN_PX = 4.0
"""Every keypoint stays at least this far inside the image."""

# Wrist axes -> camera: fingers up (-y), palm towards the camera (-z). In the right model's
# template the fingers point along -x and the palm faces -y (smhr_core.open_hand); the left
# model is its mirror image in x.
_PALM_TO_CAMERA = {
    True: np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
    False: np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
}


@dataclass(frozen=True)
class Track:
    """One hand of the sequence: when it is visible and how it moves (metres, radians)."""

    is_right: bool
    first_frame: int
    last_frame: int
    centre_m: tuple[float, float, float]
    """Mean wrist position, camera frame."""
    sway_m: tuple[float, float, float]
    """Amplitude of the wrist's motion about `centre_m` along x, y, z."""
    periods: tuple[float, float, float]
    """Period in frames of the motion along x, y, z."""
    roll: float
    """Mean turn about the camera's viewing axis (in the image plane)."""
    roll_sway: float
    yaw_sway: float
    """Amplitude of turning the palm away from the camera (about the image's vertical)."""
    pitch_sway: float
    back_facing: bool
    """Show the back of the hand instead of the palm."""
    curl_period: float
    """Frames for one open-close cycle of the fingers."""
    curl_amount: float
    """Largest finger curl, 0 (flat) to 1 (fist)."""
    phase: float


TRACKS = (
    Track(
        is_right=True,
        first_frame=0,
        last_frame=47,
        centre_m=(-0.13, 0.08, 0.5),
        sway_m=(0.05, 0.025, 0.05),
        periods=(48.0, 24.0, 32.0),
        roll=0.25,
        roll_sway=0.3,
        yaw_sway=0.5,
        pitch_sway=0.25,
        back_facing=False,
        curl_period=24.0,
        curl_amount=0.85,
        phase=0.0,
    ),
    Track(
        is_right=False,
        first_frame=8,
        last_frame=43,
        centre_m=(0.15, 0.07, 0.55),
        sway_m=(0.04, 0.03, 0.04),
        periods=(36.0, 18.0, 36.0),
        roll=-0.3,
        roll_sway=0.25,
        yaw_sway=0.45,
        pitch_sway=0.2,
        back_facing=True,
        curl_period=18.0,
        curl_amount=0.7,
        phase=1.3,
    ),
    Track(
        is_right=True,
        first_frame=20,
        last_frame=39,
        centre_m=(-0.01, 0.02, 0.62),
        sway_m=(0.02, 0.02, 0.03),
        periods=(20.0, 20.0, 40.0),
        roll=0.0,
        roll_sway=0.35,
        yaw_sway=0.3,
        pitch_sway=0.3,
        back_facing=False,
        curl_period=20.0,
        curl_amount=0.6,
        phase=2.1,
    ),
)

# Per finger (MANO order index, middle, pinky, ring): largest flexion of the three joints,
# radians, and a phase lag so the fingers close one after another.
_FLEXION = ((1.3, 1.5, 0.9), (1.35, 1.55, 0.95), (1.4, 1.6, 1.0), (1.35, 1.55, 0.95))
_FINGER_LAG = (0.0, 0.25, 0.75, 0.5)
_SPREAD = (0.18, 0.03, -0.25, -0.12)
"""Spread (about the wrist's y axis, towards the thumb positive) of each finger when open,
radians (right hand)."""


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    return cv2.Rodrigues((np.asarray(axis, dtype=np.float64) * angle).reshape(3, 1))[0]


def _axis_angle(matrix: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(matrix, dtype=np.float64))[0].ravel()


def track_pose(track: Track, frame: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(global_orient (3,), hand_pose (45,), wrist_m (3,)) of `track` at `frame`."""
    t = float(frame) + track.phase * 7.0
    wave = [
        math.sin(2.0 * math.pi * t / p + track.phase * (i + 1)) for i, p in enumerate(track.periods)
    ]
    wrist = np.array(track.centre_m) + np.array(track.sway_m) * np.array(wave)
    roll = track.roll + track.roll_sway * math.sin(2.0 * math.pi * t / 30.0 + track.phase)
    yaw = track.yaw_sway * math.sin(2.0 * math.pi * t / 40.0 + 2.0 * track.phase)
    pitch = track.pitch_sway * math.sin(2.0 * math.pi * t / 26.0 + 3.0 * track.phase)
    base = _PALM_TO_CAMERA[track.is_right]
    if track.back_facing:
        base = _rotation(np.array([0.0, 1.0, 0.0]), math.pi) @ base
    orient = (
        _rotation(np.array([0.0, 0.0, 1.0]), roll)
        @ _rotation(np.array([0.0, 1.0, 0.0]), yaw)
        @ _rotation(np.array([1.0, 0.0, 0.0]), pitch)
        @ base
    )
    # Flexion is about the finger's z axis, positive towards the palm for the right hand; the
    # left model mirrors x, which negates the y and z components (training.joint_limits).
    mirror = np.array([1.0, 1.0, 1.0]) if track.is_right else np.array([1.0, -1.0, -1.0])
    pose = np.zeros((15, 3))
    cycle = 2.0 * math.pi * t / track.curl_period
    for finger in range(4):
        curl = track.curl_amount * 0.5 * (1.0 - math.cos(cycle - _FINGER_LAG[finger]))
        spread = _SPREAD[finger] * (1.0 - curl)
        for joint in range(3):
            pose[finger * 3 + joint] = [
                0.0,
                spread if joint == 0 else 0.0,
                curl * _FLEXION[finger][joint],
            ]
    thumb = track.curl_amount * 0.5 * (1.0 - math.cos(cycle - 0.4))
    pose[12] = [0.0, 0.25 * thumb, 0.45 * thumb]
    pose[13] = [0.0, 0.0, 0.5 * thumb]
    pose[14] = [0.0, 0.0, 0.6 * thumb]
    pose = pose * mirror
    return _axis_angle(orient), pose.ravel(), wrist


def project(points_m: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame metres -> (N, 2) pixels with `CAMERA_MATRIX`."""
    uv = points_m @ CAMERA_MATRIX.T
    return uv[:, :2] / uv[:, 2:3]


def generate(out: Path, only_frames: Sequence[int] | None = None) -> dict:
    """Render the sequence into `out` (frames/ and labels.json); returns the labels.

    `only_frames` renders just those frame indices (labels then list only them), e.g. to check
    a few frames of the committed sequence quickly; they equal the same frames of a full run.
    """
    torch.manual_seed(0)
    rng = np.random.default_rng(SEED)
    hand_model = HandModel.from_directory(open_hand_directory())
    size = WIDTH * SUPERSAMPLING
    renderer = HandRenderer(
        size,
        torch.tensor(hand_model.faces(True)),
        torch.tensor(hand_model.faces(False)),
        focal_px=FOCAL_PX * SUPERSAMPLING,
        principal_point_px=(
            CAMERA_MATRIX[0, 2] * SUPERSAMPLING,
            CAMERA_MATRIX[1, 2] * SUPERSAMPLING,
        ),
    )
    # Background, skin and light are drawn like the training scenes' (training.synthetic).
    backdrop = random_background(rng, WIDTH)[:HEIGHT]
    betas = {i: rng.normal(0.0, 0.6, size=10) for i in range(len(TRACKS))}
    skin = {side: skin_regions(hand_model, side) for side in (False, True)}
    albedos = {i: random_albedo(rng, skin[TRACKS[i].is_right]) for i in range(len(TRACKS))}
    light = torch.tensor(random_light(rng), dtype=torch.float32)[None]
    frames_dir = out / "frames"
    if frames_dir.exists():
        shutil.rmtree(frames_dir)
    frames_dir.mkdir(parents=True)
    frames = []
    for frame in range(NUM_FRAMES) if only_frames is None else sorted(set(only_frames)):
        active = [i for i, t in enumerate(TRACKS) if t.first_frame <= frame <= t.last_frame]
        orients, poses, wrists = zip(*(track_pose(TRACKS[i], frame) for i in active), strict=True)
        is_right = torch.tensor([TRACKS[i].is_right for i in active])
        with torch.no_grad():
            posed = hand_model(
                torch.tensor(np.stack(orients), dtype=torch.float32),
                torch.tensor(np.stack(poses), dtype=torch.float32),
                torch.tensor(np.stack([betas[i] for i in active]), dtype=torch.float32),
                torch.zeros(len(active), 3),
                is_right,
            )
            translation = torch.tensor(np.stack(wrists), dtype=torch.float32) - posed.rest_wrist
            vertices = posed.vertices + translation[:, None]
            joints = posed.joints + translation[:, None]
            albedo = torch.tensor(np.stack([albedos[i] for i in active]), dtype=torch.float32)
            colours = renderer.shade(vertices, albedo, light.expand(len(active), -1))
            rendered = renderer(
                vertices[None], is_right[None], colours=colours[None], silhouette=False
            )
        rgb = rendered.image[0].permute(1, 2, 0).numpy()[: HEIGHT * SUPERSAMPLING]
        mask = rendered.mask[0, 0].numpy()[: HEIGHT * SUPERSAMPLING, :, None]
        hands_bgr = np.clip(rgb[..., ::-1] * 255.0, 0, 255)
        backdrop_big = cv2.resize(backdrop, (size, HEIGHT * SUPERSAMPLING), cv2.INTER_LINEAR)
        composite = hands_bgr * mask + backdrop_big * (1.0 - mask)
        image = cv2.resize(composite, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        noise = np.random.default_rng(SEED + 1 + frame).normal(0.0, 2.0, size=image.shape)
        image = np.clip(np.round(image + noise), 0, 255).astype(np.uint8)
        name = f"frames/{frame:06d}.jpg"
        cv2.imwrite(str(out / name), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        hands = []
        for slot, track_index in enumerate(active):
            joints_m = joints[slot].double().numpy()
            keypoints = project(joints_m)
            inside = (
                (keypoints[:, 0] >= MARGIN_PX)
                & (keypoints[:, 0] <= WIDTH - MARGIN_PX)
                & (keypoints[:, 1] >= MARGIN_PX)
                & (keypoints[:, 1] <= HEIGHT - MARGIN_PX)
            )
            if not inside.all():
                raise RuntimeError(
                    f"frame {frame}: hand of track {track_index} leaves the image "
                    f"(keypoints {np.round(keypoints[~inside], 1).tolist()})"
                )
            hands.append(
                {
                    "track": track_index,
                    "side": "right" if TRACKS[track_index].is_right else "left",
                    "keypoints_px": np.round(keypoints, 3).tolist(),
                    "joints_m": np.round(joints_m, 6).tolist(),
                    "global_orient": np.round(orients[slot], 6).tolist(),
                    "hand_pose": np.round(poses[slot], 6).tolist(),
                    "betas": np.round(betas[track_index], 6).tolist(),
                    "translation_m": np.round(translation[slot].double().numpy(), 6).tolist(),
                }
            )
        frames.append({"file": name, "hands": hands})
    labels = {
        "format": LABELS_FORMAT,
        "generator": "python -m training.demo_sequence --out <dir>",
        "hand_model": hand_model.model_id,
        "image_size": [WIDTH, HEIGHT],
        "camera_matrix": CAMERA_MATRIX.tolist(),
        "rate_hz": RATE_HZ,
        "joint_order": "FreiHAND (wrist; thumb, index, middle, ring, pinky 1-4)",
        "units": "keypoints_px: pixels (origin at the top-left corner of the image); joints_m, "
        "translation_m: metres, camera optical frame (x right, y down, z forward); "
        "global_orient, hand_pose: axis-angle radians (hand_pose relative to the flat hand)",
        "frames": frames,
    }
    (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    return labels


def main(argv: list[str] | None = None) -> int:
    """Command line: `python -m training.demo_sequence --out DIR`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    labels = generate(args.out)
    counts = [len(f["hands"]) for f in labels["frames"]]
    size = sum(p.stat().st_size for p in (args.out / "frames").iterdir())
    print(
        f"wrote {len(counts)} frames ({min(counts)}-{max(counts)} hands, "
        f"{size / 1e6:.2f} MB) and labels.json to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
