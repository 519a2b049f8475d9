"""Multi-hand training images composed on the fly (SPEC.md, as the reference trains).

Each image pastes up to four single-hand crops onto a 384 x 384 background: a hand's crop is the
square around its keypoint box grown by `context` on each side, cut out with the hand's mask,
scaled to 160-180 pixels, randomly mirrored into a left hand (`training.augment.flip_record`),
and placed where it overlaps the hands already pasted by at most `max_overlap`. Keypoints, 3D
labels (moved into K_v of the output) and masks follow each paste; the masks accumulate; the
brightness of the whole image is jittered (x 0.4-1.6, half of the time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from training import sample as S
from training.augment import (
    HandRecord,
    crop_affine,
    flip_record,
    jitter_brightness,
    keypoint_box,
    sample_rng,
    warp_image,
    warp_label,
)
from training.datasets import RecordSource
from training.synthetic import random_background


@dataclass(frozen=True)
class CompositionConfig:
    """How hands are composed; sizes in output pixels."""

    output_size: int = 384
    min_hands: int = 1
    max_hands: int = 4
    crop_size: tuple[float, float] = (160.0, 180.0)
    """Side of a pasted crop, drawn log-uniformly."""
    context: float = 0.4
    """Margin around the keypoint box on each side, as a fraction of the box's larger side."""
    left_probability: float = 0.5
    """Chance to mirror a crop (a right hand becomes a left one)."""
    max_overlap: float = 0.1
    """Largest intersection of two pasted hands' keypoint boxes / the smaller box."""
    brightness: tuple[float, float] = (0.4, 1.6)
    brightness_probability: float = 0.5
    slots: int = S.DEFAULT_MAX_HANDS
    """Hand slots M of the samples (at least max_hands)."""
    root_joint: int = 9

    def __post_init__(self) -> None:
        if not 1 <= self.min_hands <= self.max_hands <= self.slots:
            raise ValueError(
                "need 1 <= min_hands <= max_hands <= slots, got "
                f"{self.min_hands}, {self.max_hands}, {self.slots}"
            )
        low, high = self.crop_size
        if not 0 < low <= high < self.output_size:
            raise ValueError(f"crop_size {self.crop_size} must lie in (0, {self.output_size})")


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(width * height / max(smaller, 1e-9))


class ComposedHands(Dataset):
    """`length` multi-hand images composed from single-hand `sources` (records with masks).

    Backgrounds are procedural (training.synthetic.random_background) unless `backgrounds`
    gives BGR images to crop them from. With `seed`, image i is reproducible (seed + i);
    otherwise torch's generator drives it (different every epoch).
    """

    def __init__(
        self,
        sources: Sequence[RecordSource],
        length: int,
        config: CompositionConfig | None = None,
        backgrounds: Sequence[np.ndarray] | None = None,
        seed: int | None = None,
    ) -> None:
        self.sources = list(sources)
        self.sizes = [len(source) for source in self.sources]
        if not self.sources or sum(self.sizes) == 0:
            raise ValueError("ComposedHands needs at least one non-empty source")
        self.length = int(length)
        self.config = config or CompositionConfig()
        self.backgrounds = list(backgrounds) if backgrounds is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def _draw_record(self, rng: np.random.Generator) -> HandRecord:
        flat = int(rng.integers(sum(self.sizes)))
        for source, size in zip(self.sources, self.sizes, strict=True):
            if flat < size:
                return source.record(flat)
            flat -= size
        raise AssertionError("unreachable: index within the total size")

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        size = self.config.output_size
        if not self.backgrounds:
            return random_background(rng, size)
        image = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        side = min(image.shape[:2])
        top = int(rng.integers(image.shape[0] - side + 1))
        left = int(rng.integers(image.shape[1] - side + 1))
        affine = crop_affine(np.array([left + side / 2, top + side / 2]), side, 0.0, size)
        return warp_image(image, affine, size)

    def compose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[S.HandLabel]]:
        """One composed image: (BGR image, union mask, hand labels in paste order)."""
        cfg = self.config
        size = cfg.output_size
        canvas = self._background(rng).copy()
        union = np.zeros((size, size), dtype=np.float32)
        labels: list[S.HandLabel] = []
        boxes: list[np.ndarray] = []
        wanted = int(rng.integers(cfg.min_hands, cfg.max_hands + 1))
        for _ in range(wanted * 3):
            if len(labels) == wanted:
                break
            record = self._draw_record(rng)
            if record.mask is None:
                raise ValueError(f"{record.name}: composition needs a hand mask")
            if rng.random() < cfg.left_probability:
                record = flip_record(record)
            placed = self._place(record, rng, boxes)
            if placed is None:
                continue
            affine, box = placed
            crop_mask = self._crop_mask(record, affine)
            pasted = warp_image(record.image_bgr, affine, size)
            canvas = np.where(crop_mask[..., None] >= 0.5, pasted, canvas)
            union = np.maximum(union, (crop_mask >= 0.5).astype(np.float32))
            labels.append(
                warp_label(record.hands[0], affine, record.camera_matrix, size, cfg.root_joint)
            )
            boxes.append(box)
        if rng.random() < cfg.brightness_probability:
            canvas = jitter_brightness(canvas, rng, *cfg.brightness)
        return canvas, union, labels

    def _place(
        self, record: HandRecord, rng: np.random.Generator, boxes: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Affine map of the record's hand crop to a free spot, and its keypoint box there."""
        cfg = self.config
        box = keypoint_box(record.hands[0])
        side = float(np.max(box[2:] - box[:2]))
        crop_side = side * (1.0 + 2.0 * cfg.context)
        centre = (box[:2] + box[2:]) / 2.0
        low, high = cfg.crop_size
        for _ in range(20):
            target = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            half = target / 2.0
            spot = rng.uniform(half, cfg.output_size - half, size=2)
            scale = target / crop_side
            affine = np.array(
                [
                    [scale, 0.0, spot[0] - scale * centre[0]],
                    [0.0, scale, spot[1] - scale * centre[1]],
                ]
            )
            keypoints = affine[:, :2] @ record.hands[0].keypoints_px.T + affine[:, 2:3]
            placed = np.concatenate([keypoints.min(axis=1), keypoints.max(axis=1)])
            if all(_overlap(placed, other) <= cfg.max_overlap for other in boxes):
                return affine, placed
        return None

    def _crop_mask(self, record: HandRecord, affine: np.ndarray) -> np.ndarray:
        """The record's mask inside its crop square, warped to the output."""
        size = self.config.output_size
        # Output pixels whose source point falls inside the crop square.
        box = keypoint_box(record.hands[0])
        side = float(np.max(box[2:] - box[:2])) * (1.0 + 2.0 * self.config.context)
        centre = (box[:2] + box[2:]) / 2.0
        rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))
        u = inverse[0, 0] * cols + inverse[0, 1] * rows + inverse[0, 2]
        v = inverse[1, 0] * cols + inverse[1, 1] * rows + inverse[1, 2]
        in_square = (np.abs(u - centre[0]) <= side / 2) & (np.abs(v - centre[1]) <= side / 2)
        mask = warp_image(record.mask.astype(np.float32), affine, size)
        return mask * in_square

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"composed image {index} out of range [0, {self.length})")
        rng = sample_rng(None if self.seed is None else self.seed + index)
        image, mask, labels = self.compose(rng)
        return S.make_sample(image, labels, mask=mask, max_hands=self.config.slots)
