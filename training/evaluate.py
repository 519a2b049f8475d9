"""Evaluate a network on a dataset through the inference path (`smhr_core.predictor`).

Each sample's image goes through `Predictor.predict` exactly as at deployment: heatmap peaks,
handedness, the 61 values at the peaks, MANO, the virtual camera. The samples are already the
square network input, so the letterbox is the identity and predictions are in the same input
pixels and virtual camera as the labels. Predicted hands are matched to labelled ones by their
decoded centres (`training.metrics`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from smhr_core.camera import virtual_intrinsics
from smhr_core.config import DecodeConfig
from smhr_core.predictor import Predictor
from smhr_core.results import Handedness, ImageHands
from training import sample as S
from training.metrics import (
    EvaluationMetrics,
    MetricAccumulator,
    PredictedHand,
    TrueHand,
    format_table,
)


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics plus what produced them."""

    metrics: EvaluationMetrics
    model: str
    """Backbone, resolution and checkpoint name."""
    hand_model_id: str
    decode: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "hand_model_id": self.hand_model_id,
            "decode": self.decode,
            "seconds": self.seconds,
            "metrics": self.metrics.to_dict(),
        }

    def table(self) -> str:
        return f"model: {self.model}\nhand model: {self.hand_model_id}\n" + format_table(
            self.metrics
        )


def sample_truth(sample: dict[str, torch.Tensor]) -> list[TrueHand]:
    """The labelled hands of one (uncollated) sample."""
    hands = []
    for slot in range(int(sample[S.VALID].shape[0])):
        if float(sample[S.VALID][slot]) < 0.5:
            continue
        has_3d = float(sample[S.HAS_3D][slot]) > 0.5
        hands.append(
            TrueHand(
                is_right=bool(float(sample[S.IS_RIGHT][slot]) > 0.5),
                keypoints_px=sample[S.KEYPOINTS_PX][slot].double().numpy(),
                keypoints_vis=sample[S.KEYPOINTS_VIS][slot].double().numpy(),
                joints_m=sample[S.JOINTS_3D][slot].double().numpy() if has_3d else None,
                vertices_m=sample[S.VERTICES_3D][slot].double().numpy() if has_3d else None,
            )
        )
    return [h for h in hands if float(h.keypoints_vis.sum()) > 0]


def predicted_hands(result: ImageHands) -> list[PredictedHand]:
    """Predictor output of one input-size image -> metric inputs."""
    return [
        PredictedHand(
            centre_px=np.asarray(h.centre_px, dtype=np.float64),
            score=float(h.score),
            is_right=h.handedness == Handedness.RIGHT,
            keypoints_px=np.asarray(h.keypoints_px, dtype=np.float64),
            joints_m=np.asarray(h.joints_m, dtype=np.float64),
            vertices_m=np.asarray(h.vertices_m, dtype=np.float64),
        )
        for h in result.hands
    ]


def _to_uint8_rgb(image_rgb: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) float in [0, 1] -> (B, R, R, 3) uint8."""
    array = (image_rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).contiguous().numpy()


def evaluate(
    predictor: Predictor,
    dataset: Dataset,
    batch_size: int = 8,
    max_images: int = 0,
    progress: bool = False,
) -> EvaluationReport:
    """Run every sample of `dataset` (or the first `max_images`) through `predictor`.

    The images may be of any square size: the predictor letterboxes them to the network's input.
    """
    resolution = predictor.config.input_resolution
    if not predictor.with_vertices:
        raise ValueError("evaluate: the predictor must return vertices (with_vertices=True)")
    accumulator = MetricAccumulator()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    total = len(dataset) if not max_images else min(max_images, len(dataset))
    seen = 0
    start = time.monotonic()
    with tqdm(total=total, desc="evaluate", disable=not progress, leave=False) as bar:
        for batch in loader:
            if seen >= total:
                break
            images = batch[S.IMAGE_RGB][: total - seen]
            side = int(images.shape[-1])
            if int(images.shape[-2]) != side:
                raise ValueError(
                    f"evaluate: dataset images are {tuple(images.shape[-2:])}, not square"
                )
            # Labels of other-sized images are in their own virtual camera; the predictor
            # letterboxes them to the network's input and maps its hands back into it.
            cameras = None if side == resolution else [virtual_intrinsics(side)] * len(images)
            results = predictor.predict(
                list(_to_uint8_rgb(images)), color_order="rgb", camera_matrices=cameras
            )
            for i, result in enumerate(results):
                sample = {k: v[i] for k, v in batch.items()}
                accumulator.add_image(predicted_hands(result), sample_truth(sample))
            seen += len(results)
            bar.update(len(results))
    return EvaluationReport(
        metrics=accumulator.summary(),
        model=predictor.model_description,
        hand_model_id=predictor.hand_model_id,
        decode={
            "mode": predictor.decode.mode,
            "score_threshold": predictor.decode.score_threshold,
            "max_hands": predictor.decode.max_hands,
            "fit_keypoints": predictor.fits_keypoints,
        },
        seconds=time.monotonic() - start,
    )


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: Dataset,
    hand_model_dir: str | Path | None = None,
    device: str = "cpu",
    decode: DecodeConfig | None = None,
    batch_size: int = 8,
    max_images: int = 0,
    progress: bool = False,
    precision: str = "auto",
) -> EvaluationReport:
    """Load `checkpoint` (and the hand model, default: our open hand model) and `evaluate`
    with the network in `precision` (`smhr_core.precision.PRECISIONS`)."""
    predictor = Predictor(
        checkpoint,
        hand_model_dir=hand_model_dir,
        device=device,
        decode=decode,
        precision=precision,
    )
    trained_with = predictor.meta.get("hand_model_id")
    if trained_with and trained_with != predictor.hand_model_id:
        raise ValueError(
            f"{checkpoint}: trained with hand model {trained_with!r} but evaluating with "
            f"{predictor.hand_model_id!r}; pass the matching --hand-model directory"
        )
    return evaluate(predictor, dataset, batch_size, max_images, progress)


def write_report(report: EvaluationReport, path: str | Path) -> None:
    """Write the report as JSON (None for metrics without data)."""
    Path(path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
