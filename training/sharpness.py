"""Random loss of sharpness for rendered training images: a Gaussian blur, or a resize down and
back up, as a camera's optics and the predictor's letterbox resize soften real images.

Synthetic scenes are rendered straight at the network's input side, so every edge is as sharp
as the input allows. Images that reach the network through a resize are softer, and a model
trained only on sharp ones is sensitive to it: v17 had the side of 0.966 of the held-out hands
right, 0.949 once the same images were resized to 384 px and back, and 0.94 after a blur of
sigma 0.7 px. Neither transform moves anything, so the labels stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BLUR_SIGMA_PX = (0.5, 1.2)
"""Range of the Gaussian blur's sigma, input pixels."""
RESIZE_FRACTION = (0.45, 0.85)
"""Range of the side the image is shrunk to, as a fraction of its own, before it is enlarged
back (bilinear both ways, as the predictor's letterbox resizes)."""


@dataclass(frozen=True)
class Softening:
    """What was done to one image (for tests and logs)."""

    kind: str
    """'none', 'blur' or 'resize'."""
    amount: float
    """Blur sigma (pixels), the resize fraction, or 0 for 'none'."""


def soften(
    image: np.ndarray, rng: np.random.Generator, probability: float
) -> tuple[np.ndarray, Softening]:
    """With `probability`, blur `image` or resize it down and back up (half each); else return it.

    Args:
        image: (H, W, 3) uint8.
        rng: the image's own generator, so a scene's softening is as reproducible as the scene.
        probability: in [0, 1].
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability}")
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    # Draw every value whatever happens, so one setting does not shift the others' draws.
    apply, use_blur = rng.random() < probability, rng.random() < 0.5
    sigma = float(rng.uniform(*BLUR_SIGMA_PX))
    fraction = float(rng.uniform(*RESIZE_FRACTION))
    if not apply:
        return image, Softening("none", 0.0)
    if use_blur:
        return cv2.GaussianBlur(image, (0, 0), sigma), Softening("blur", sigma)
    height, width = image.shape[:2]
    small = (max(1, round(width * fraction)), max(1, round(height * fraction)))
    shrunk = cv2.resize(image, small, interpolation=cv2.INTER_LINEAR)
    return cv2.resize(shrunk, (width, height), interpolation=cv2.INTER_LINEAR), Softening(
        "resize", fraction
    )
