"""Images in, hands out: the one object the node, the CLI and evaluation use for inference."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from smhr_core.camera import assumed_intrinsics, input_cameras, project, to_camera_frame
from smhr_core.checkpoint import CheckpointError, load_checkpoint
from smhr_core.config import ConfigError, DecodeConfig, ModelConfig
from smhr_core.decode import (
    choose_side,
    find_peaks,
    select_params,
    split_params,
    virtual_translation,
)
from smhr_core.fit_2d import fit_hands, start_in_camera
from smhr_core.fit_2d import project as project_virtual
from smhr_core.hand_model import HandModel, HandModelError
from smhr_core.keypoint_heatmap import read_keypoints
from smhr_core.mirror_reading import average_hands, average_keypoint_maps
from smhr_core.network import SMHRNet
from smhr_core.open_hand import open_hand_directory
from smhr_core.precision import autocast, prefers_channels_last, resolve_precision
from smhr_core.preprocess import Letterbox, as_bgr, hand_crop, letterbox, normalise
from smhr_core.results import Hand, Handedness, ImageHands

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "data" / "default_model.pth"
"""The embedded default checkpoint, trained by us on synthetic scenes of the open hand model."""

COLOR_ORDERS = ("bgr", "rgb")


class PredictorError(RuntimeError):
    """The predictor cannot be built or cannot use its input; the message says why in one line."""


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else must be a valid torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise PredictorError(f"device {device!r} is not a torch device ({error})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError(f"device {device!r} was asked for but CUDA is not available")
    return resolved


def _resolve_precision(precision: str, device: torch.device) -> str:
    try:
        return resolve_precision(precision, device)
    except ValueError as error:
        raise PredictorError(str(error)) from None


class Predictor:
    """SMHR inference: letterbox, one batched forward, peak decoding, MANO, camera mapping.

    Only what the result needs is computed: the `params` and `handmap` heads are evaluated at the
    selected peaks only, and `texture`/`light` never run.
    """

    def __init__(
        self,
        checkpoint: str | Path | None,
        hand_model_dir: str | Path | None = None,
        device: str = "auto",
        decode: DecodeConfig | None = None,
        with_vertices: bool = True,
        input_resolution: int | None = None,
        precision: str = "auto",
    ) -> None:
        """Load the network and the hand model.

        `checkpoint` None means the embedded default. `input_resolution` (pixels) overrides the
        checkpoint's (a release file records none: 384 is assumed for the multi-hand model, 224
        for the single-hand one); the network is fully convolutional. `precision` is the
        network's floating-point type (`smhr_core.precision.PRECISIONS`). Raises
        `PredictorError`.
        """
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        self.decode = decode or DecodeConfig()
        self.with_vertices = with_vertices
        path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
        if not path.is_file():
            what = "the embedded default checkpoint" if checkpoint is None else "checkpoint"
            raise PredictorError(f"{what} {path} does not exist")
        try:
            loaded = load_checkpoint(path, map_location="cpu")
            config = loaded.config
            if input_resolution is not None:
                config = dataclasses.replace(config, input_resolution=input_resolution)
        except (CheckpointError, ConfigError) as error:
            raise PredictorError(str(error)) from None
        self.checkpoint_path = path
        self.meta = loaded.meta
        self.load_report = loaded.report
        self._setup_network(loaded.model, config)
        hand_dir = Path(hand_model_dir) if hand_model_dir else open_hand_directory()
        try:
            self.hand_model = HandModel.from_directory(hand_dir, device=self.device)
        except HandModelError as error:
            raise PredictorError(str(error)) from None

    @classmethod
    def from_network(
        cls,
        network: SMHRNet,
        hand_model: HandModel,
        decode: DecodeConfig | None = None,
        with_vertices: bool = True,
        name: str = "in-memory network",
        precision: str = "auto",
    ) -> Predictor:
        """A predictor around a network already in memory (training evaluation, random weights)."""
        predictor = cls.__new__(cls)
        predictor.device = next(network.parameters()).device
        predictor.precision = _resolve_precision(precision, predictor.device)
        predictor.decode = decode or DecodeConfig()
        predictor.with_vertices = with_vertices
        predictor.checkpoint_path = Path(name)
        predictor.meta = {}
        predictor.load_report = None
        predictor._setup_network(network, network.config)
        predictor.hand_model = hand_model
        return predictor

    def _setup_network(self, network: SMHRNet, config: ModelConfig) -> None:
        self.config = config
        self.network = network.to(self.device).eval()
        self._channels_last = prefers_channels_last(self.precision, self.device)
        if self._channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)

    @property
    def fits_keypoints(self) -> bool:
        """Whether hands are fitted to the `keypoints` head's joints (`DecodeConfig`)."""
        return self.decode.fit_keypoints and "keypoints" in self.config.heads

    @property
    def looks_twice(self) -> bool:
        """Whether each hand is found again in a crop around it (`DecodeConfig.second_look`;
        only with the keypoint fit, for which the crop's scale was chosen)."""
        return self.fits_keypoints and self.decode.second_look

    @property
    def model_description(self) -> str:
        """Backbone, input resolution (pixels), precision, checkpoint file name, and
        `+keypoint-fit` when hands are fitted to the keypoints head's joints (`+second-look`
        when they are found again in a crop around each, `+mirror` when each hand is also
        read from the mirror image of the input)."""
        c = self.config
        fit = " +keypoint-fit" if self.fits_keypoints else ""
        fit += " +second-look" if self.looks_twice else ""
        fit += " +mirror" if self.fits_keypoints and self.decode.mirror_reading else ""
        return (
            f"{c.backbone}@{c.input_resolution} {self.precision} {self.checkpoint_path.name}{fit}"
        )

    @property
    def hand_model_id(self) -> str:
        """Identifies the hand model (and so the mesh topology) behind the vertices."""
        return self.hand_model.model_id

    def faces(self, is_right: bool) -> np.ndarray:
        """(1538, 3) triangle indices of the right or left hand mesh."""
        return self.hand_model.faces(is_right)

    def _check_image(self, image: np.ndarray, index: int) -> None:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            kind = type(image).__name__ if not isinstance(image, np.ndarray) else image.dtype
            raise PredictorError(f"image {index}: expected a uint8 numpy array, got {kind}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise PredictorError(f"image {index}: expected shape (H, W, 3), got {image.shape}")
        if image.shape[0] < 2 or image.shape[1] < 2:
            raise PredictorError(f"image {index}: {image.shape[1]}x{image.shape[0]} is too small")

    def predict(
        self,
        images: Sequence[np.ndarray] | np.ndarray,
        color_order: str = "bgr",
        camera_matrices: Sequence[np.ndarray | None] | None = None,
    ) -> list[ImageHands]:
        """Find and reconstruct every hand in each image; all images go through one forward.

        `camera_matrices[i]` is image i's real 3x3 intrinsics (pixels) or None to assume the
        network's virtual camera. Raises `PredictorError` for unusable input.
        """
        if color_order not in COLOR_ORDERS:
            raise PredictorError(f"color_order {color_order!r} is not one of {list(COLOR_ORDERS)}")
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        images = list(images)
        if not images:
            return []
        if camera_matrices is None:
            camera_matrices = [None] * len(images)
        if len(camera_matrices) != len(images):
            raise PredictorError(
                f"{len(camera_matrices)} camera matrices given for {len(images)} images"
            )
        resolution = self.config.input_resolution
        boxes: list[Letterbox] = []
        inputs = []
        for index, image in enumerate(images):
            self._check_image(image, index)
            square, box = letterbox(image, resolution, color_order)
            inputs.append(square)
            boxes.append(box)
        hands_per_image, dropped = self._find_hands(
            inputs, boxes, camera_matrices, fit=self.fits_keypoints and not self.looks_twice
        )
        cameras = [
            np.asarray(matrix, dtype=np.float64)
            if matrix is not None
            else assumed_intrinsics(boxes[index])
            for index, matrix in enumerate(camera_matrices)
        ]
        if self.looks_twice and any(hands_per_image):
            bgr = [as_bgr(image, color_order) for image in images]
            hands_per_image = self._look_again(bgr, cameras, hands_per_image)
        return [
            ImageHands(
                hands=tuple(hands_per_image[index]),
                image_size=(int(image.shape[1]), int(image.shape[0])),
                camera_matrix=cameras[index],
                intrinsics_assumed=camera_matrices[index] is None,
                non_finite_hands=dropped[index],
            )
            for index, image in enumerate(images)
        ]

    def _find_hands(
        self,
        inputs: list[np.ndarray],
        boxes: list[Letterbox],
        camera_matrices: Sequence[np.ndarray | None],
        fit: bool,
    ) -> tuple[list[list[Hand]], list[int]]:
        """One forward over the BGR network inputs; each input's hands (in its original image's
        pixels and camera) and how many of its peaks were dropped as non-finite."""
        resolution = int(inputs[0].shape[0])
        batch = normalise(np.stack(inputs), device=self.device)
        if self._channels_last:
            batch = batch.to(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.precision, self.device):
            features, detail = self.network.features_and_detail(batch, with_detail=fit)
        with torch.inference_mode():
            # The centre heatmap always in float32: rounded to bfloat16 or float16, neighbouring
            # cells tie, and the release's NMS keeps both cells of a plateau (two hands).
            heatmap = self.network.head_maps(features.float(), ["hm"])["hm"]
            peaks = find_peaks(heatmap, self.decode.top_k(resolution), self.decode.threshold())
        with torch.inference_mode(), autocast(self.precision, self.device):
            names = [n for n in ("params", "handmap") if n in self.config.heads]
            at_peaks = self.network.heads_at(features, peaks.batch_index, peaks.ys, peaks.xs, names)
            keypoint_maps = None
            if fit and len(peaks):
                keypoint_maps = self.network.head_maps(features, ["keypoints"], detail)
                keypoint_maps = keypoint_maps["keypoints"].float()
        params = at_peaks["params"].float()
        handmap = at_peaks["handmap"].float() if "handmap" in at_peaks else None
        if keypoint_maps is not None and self.decode.mirror_reading:
            params, handmap, keypoint_maps = self._read_mirror(
                batch, peaks, names, params, handmap, keypoint_maps
            )
        if handmap is not None:
            is_right, side_probability = choose_side(handmap)
        else:
            is_right = torch.ones(params.shape[0], dtype=torch.bool, device=params.device)
            side_probability = torch.ones(params.shape[0], device=params.device)
        finite = torch.isfinite(params).all(dim=1) & torch.isfinite(peaks.scores)
        hands_per_image: list[list[Hand]] = [[] for _ in inputs]
        dropped = [0] * len(inputs)
        for b in peaks.batch_index[~finite].tolist():
            dropped[b] += 1
        if bool(finite.any()):
            self._reconstruct(
                peaks,
                params,
                is_right,
                side_probability,
                finite,
                boxes,
                camera_matrices,
                hands_per_image,
                keypoint_maps,
                resolution,
            )
        return hands_per_image, dropped

    def _read_mirror(
        self,
        batch: torch.Tensor,
        peaks,
        names: list[str],
        params: torch.Tensor,
        handmap: torch.Tensor | None,
        keypoint_maps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The hands' parameters, side logits and `keypoints` maps averaged with what the
        network reads at their mirrored cells of the mirrored inputs (one more forward;
        `smhr_core.mirror_reading`)."""
        width = int(keypoint_maps.shape[-1])
        with torch.inference_mode(), autocast(self.precision, self.device):
            features, detail = self.network.features_and_detail(batch.flip(-1))
            mirrored = self.network.heads_at(
                features, peaks.batch_index, peaks.ys, width - 1 - peaks.xs, names
            )
            mirrored_maps = self.network.head_maps(features, ["keypoints"], detail)["keypoints"]
        mirrored_handmap = mirrored["handmap"].float() if "handmap" in mirrored else None
        params, handmap = average_hands(
            params, handmap, mirrored["params"].float(), mirrored_handmap
        )
        return params, handmap, average_keypoint_maps(keypoint_maps, mirrored_maps.float())

    def _look_again(
        self,
        images_bgr: list[np.ndarray],
        cameras: list[np.ndarray],
        hands_per_image: list[list[Hand]],
    ) -> list[list[Hand]]:
        """Run the network once more on a crop around every hand found, scaled so that the hand
        spans `decode.second_look_fraction` of the network's input, and keep the hand found
        nearest the crop's centre with the first look's detection (score and heatmap peak); a
        hand the crop does not find stays as it was."""
        size = self.decode.second_look_size or self.config.input_resolution
        # The hand spans the same input pixels whatever the crop's size: that is what the
        # network was trained to read, at its own input resolution (a crop too small for that
        # holds just the hand).
        fraction = min(self.decode.second_look_fraction * self.config.input_resolution / size, 1.0)
        inputs, boxes, crop_cameras, owners = [], [], [], []
        for index, hands in enumerate(hands_per_image):
            for slot, hand in enumerate(hands):
                if not np.all(np.isfinite(hand.box_px)):
                    continue
                crop, box = hand_crop(images_bgr[index], hand.box_px, fraction, size)
                inputs.append(crop)
                boxes.append(box)
                crop_cameras.append(cameras[index])
                owners.append((index, slot))
        if not inputs:
            return hands_per_image
        found, _ = self._find_hands(inputs, boxes, crop_cameras, fit=True)
        refined = [list(hands) for hands in hands_per_image]
        for (index, slot), box, candidates in zip(owners, boxes, found, strict=True):
            if not candidates:
                continue
            centre = box.to_original(np.full(2, (size - 1) / 2.0))
            distances = [float(np.linalg.norm(c.centre_px - centre)) for c in candidates]
            chosen = candidates[int(np.argmin(distances))]
            first = refined[index][slot]
            refined[index][slot] = dataclasses.replace(
                chosen, score=first.score, centre_px=first.centre_px
            )
        return refined

    def _reconstruct(
        self,
        peaks,
        params: torch.Tensor,
        is_right: torch.Tensor,
        side_probability: torch.Tensor,
        keep: torch.Tensor,
        boxes: list[Letterbox],
        camera_matrices: Sequence[np.ndarray | None],
        out: list[list[Hand]],
        keypoint_maps: torch.Tensor | None,
        resolution: int,
    ) -> None:
        params = params[keep]
        is_right = is_right[keep]
        hand_params = split_params(select_params(params, is_right))
        xs, ys = peaks.xs[keep], peaks.ys[keep]
        translation = virtual_translation(hand_params.camera, xs, ys, resolution)
        orient, pose = hand_params.global_orient, hand_params.hand_pose
        if keypoint_maps is not None:
            with torch.inference_mode():
                guess = self.hand_model.joints(
                    orient, pose, hand_params.betas, translation, is_right
                )
            found = read_keypoints(
                keypoint_maps,
                peaks.batch_index[keep],
                project_virtual(guess, resolution),
            )
            # The joints are read around the network's own hand (virtual camera); the fit works
            # in the input's real camera (the image's K through the letterbox or crop), so its
            # hands come out in the real camera's frame, with the image's perspective. Reading
            # around the hand placed in the real camera measured worse (held-out 256 px median
            # 4.23 against 4.04 % of the box).
            cameras_in = input_cameras(peaks.batch_index[keep].tolist(), boxes, camera_matrices).to(
                guess.device
            )
            orient, translation = start_in_camera(
                orient, translation, guess[:, 0], cameras_in, resolution
            )
            fitted = fit_hands(
                self.hand_model,
                orient,
                pose,
                hand_params.betas,
                translation,
                is_right,
                found.keypoints_px,
                found.confidence,
                resolution,
                camera_px=cameras_in,
            )
            orient, pose, translation = fitted.global_orient, fitted.hand_pose, fitted.translation
        with torch.inference_mode():
            mesh = self.hand_model(orient, pose, hand_params.betas, translation, is_right)
        joints = mesh.joints.cpu().numpy().astype(np.float64)
        vertices = mesh.vertices.cpu().numpy().astype(np.float64)
        rest_wrist = mesh.rest_wrist.cpu().numpy().astype(np.float64)
        batch_index = peaks.batch_index[keep].tolist()
        scores = peaks.scores[keep].tolist()
        rights = is_right.tolist()
        probabilities = side_probability[keep].tolist()
        orient = orient.cpu().numpy()
        pose = pose.cpu().numpy()
        betas = hand_params.betas.cpu().numpy()
        cells = np.stack([xs.cpu().numpy() * 4.0, ys.cpu().numpy() * 4.0], axis=1)
        for i, b in enumerate(batch_index):
            box = boxes[b]
            matrix = camera_matrices[b]
            camera = (
                np.asarray(matrix, dtype=np.float64)
                if matrix is not None
                else assumed_intrinsics(box)
            )
            if keypoint_maps is not None:  # fitted: already in the real camera's frame
                joints_cam = joints[i]
                vertices_cam = vertices[i] if self.with_vertices else None
            else:
                wrist = joints[i, 0]
                joints_cam = to_camera_frame(joints[i], wrist, box, matrix)
                vertices_cam = (
                    to_camera_frame(vertices[i], wrist, box, matrix) if self.with_vertices else None
                )
            keypoints = project(joints_cam, camera)
            right = bool(rights[i])
            out[b].append(
                Hand(
                    score=float(scores[i]),
                    handedness=Handedness.RIGHT if right else Handedness.LEFT,
                    handedness_probability=float(probabilities[i]),
                    joints_m=joints_cam.astype(np.float32),
                    keypoints_px=keypoints.astype(np.float32),
                    global_orient=orient[i].astype(np.float32),
                    hand_pose=pose[i].astype(np.float32),
                    betas=betas[i].astype(np.float32),
                    translation_m=(joints_cam[0] - rest_wrist[i]).astype(np.float32),
                    box_px=np.concatenate([keypoints.min(axis=0), keypoints.max(axis=0)]).astype(
                        np.float32
                    ),
                    centre_px=box.to_original(cells[i]).astype(np.float32),
                    vertices_m=None if vertices_cam is None else vertices_cam.astype(np.float32),
                    faces=self.hand_model.faces(right),
                )
            )
