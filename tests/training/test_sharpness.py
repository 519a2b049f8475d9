"""Softening of training images: it blurs, it moves nothing, it is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from training.sharpness import BLUR_SIGMA_PX, RESIZE_FRACTION, soften


def _checkerboard() -> np.ndarray:
    """Single-pixel squares: the sharpest image there is."""
    y, x = np.mgrid[0:128, 0:128]
    return np.repeat(((x + y) % 2 * 120).astype(np.uint8)[..., None], 3, axis=2)


def _blob() -> np.ndarray:
    """A smooth bright blob on black centred at (48.5, 80.5) pixels (cv2's pixel centres)."""
    y, x = np.mgrid[0:128, 0:128] + 0.5
    blob = 250.0 * np.exp(-((x - 48.5) ** 2 + (y - 80.5) ** 2) / (2 * 6.0**2))
    return np.repeat(np.round(blob).astype(np.uint8)[..., None], 3, axis=2)


def _sharpness(image: np.ndarray) -> float:
    grey = image[..., 0].astype(np.float64)
    return float(np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean())


def _bright_centre(image: np.ndarray) -> np.ndarray:
    """Brightness-weighted centre (x, y), pixel centres at i + 0.5 (cv2's convention)."""
    weight = image[..., 0].astype(np.float64)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(weight * (x + 0.5)).sum(), (weight * (y + 0.5)).sum()]) / weight.sum()


def test_both_kinds_soften_and_move_nothing():
    sharp, blob = _checkerboard(), _blob()
    np.testing.assert_allclose(_bright_centre(blob), [48.5, 80.5])
    kinds = set()
    for seed in range(40):
        # The same seed draws the same softening for both images.
        out, what = soften(sharp, np.random.default_rng(seed), 1.0)
        moved, again = soften(blob, np.random.default_rng(seed), 1.0)
        assert again == what
        kinds.add(what.kind)
        assert out.shape == sharp.shape and out.dtype == np.uint8
        assert _sharpness(out) < 0.9 * _sharpness(sharp), what
        # Labels stay as they are only if softening keeps things where they were (a half-pixel
        # convention slip would move the blob by 0.5 pixels or more).
        np.testing.assert_allclose(_bright_centre(moved), [48.5, 80.5], atol=0.05)
        if what.kind == "blur":
            assert BLUR_SIGMA_PX[0] <= what.amount <= BLUR_SIGMA_PX[1]
        else:
            assert RESIZE_FRACTION[0] <= what.amount <= RESIZE_FRACTION[1]
    assert kinds == {"blur", "resize"}


def test_probability_and_reproducibility():
    image = _checkerboard()
    out, what = soften(image, np.random.default_rng(3), 0.0)
    assert what.kind == "none" and out is image
    applied = [soften(image, np.random.default_rng(s), 0.5)[1].kind != "none" for s in range(400)]
    assert 0.4 < np.mean(applied) < 0.6
    first, _ = soften(image, np.random.default_rng(11), 1.0)
    again, _ = soften(image, np.random.default_rng(11), 1.0)
    np.testing.assert_array_equal(first, again)


def test_bad_arguments_are_named():
    image = _checkerboard()
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\], got 1.5"):
        soften(image, np.random.default_rng(0), 1.5)
    with pytest.raises(ValueError, match="uint8"):
        soften(image.astype(np.float32), np.random.default_rng(0), 1.0)
