"""Letterbox and hand-crop geometry (exact mapping both ways) and ImageNet normalisation of BGR
images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smhr_core.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Letterbox,
    hand_crop,
    letterbox,
    normalise,
)


def blob_image(width: int, height: int, centre: tuple[float, float], sigma: float) -> np.ndarray:
    u = np.arange(width)[None, :]
    v = np.arange(height)[:, None]
    g = np.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / (2 * sigma**2))
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 1] = np.round(255 * g).astype(np.uint8)
    return image


def centroid(channel: np.ndarray) -> np.ndarray:
    weights = channel.astype(np.float64)
    v, u = np.indices(channel.shape)
    return np.array([(u * weights).sum(), (v * weights).sum()]) / weights.sum()


def test_geometry_of_a_wide_image() -> None:
    box = Letterbox.fit(640, 480, 384)
    assert box.scale == pytest.approx(0.6)
    assert box.offset_u == pytest.approx(0.5 * 0.6 - 0.5)
    assert box.offset_v == pytest.approx(160 * 0.6 + 0.5 * 0.6 - 0.5)
    assert box.image_size == (640, 480) and box.input_size == 384


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (333, 333), (50, 20)])
def test_to_input_and_to_original_are_inverse(size: tuple[int, int]) -> None:
    box = Letterbox.fit(*size, 224)
    points = np.random.default_rng(0).uniform(-5, 700, size=(40, 2))
    np.testing.assert_allclose(box.to_original(box.to_input(points)), points, rtol=0, atol=1e-9)
    np.testing.assert_allclose(box.to_input(box.to_original(points)), points, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("size", "resolution", "centre", "sigma"),
    [
        ((200, 120), 96, (150.3, 40.7), 6.0),  # wide, downscaled: padded above
        ((120, 200), 96, (30.6, 170.2), 6.0),  # tall, downscaled: padded on the right
        ((40, 30), 96, (12.0, 21.0), 0.0),  # upscaled: a single marked pixel
    ],
)
def test_a_marked_spot_lands_where_to_input_says(
    size: tuple[int, int], resolution: int, centre: tuple[float, float], sigma: float
) -> None:
    width, height = size
    if sigma > 0:
        image = blob_image(width, height, centre, sigma)
    else:
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[int(centre[1]), int(centre[0]), 1] = 255
    out, box = letterbox(image, resolution)
    assert out.shape == (resolution, resolution, 3) and out.dtype == np.uint8
    expected = box.to_input(np.array(centre))
    np.testing.assert_allclose(centroid(out[..., 1]), expected, atol=0.05)


@pytest.mark.parametrize(
    ("box", "fraction", "centre", "sigma"),
    [
        ((100.0, 40.0, 160.0, 90.0), 0.3, (131.4, 66.8), 4.0),  # 200 px crop, downscaled to 96
        ((20.0, 10.0, 32.0, 18.0), 0.5, (25.2, 13.7), 1.5),  # 24 px crop, upscaled to 96
    ],
)
def test_a_marked_spot_lands_where_the_hand_crop_says(
    box: tuple[float, ...], fraction: float, centre: tuple[float, float], sigma: float
) -> None:
    image = blob_image(240, 160, centre, sigma)
    out, geometry = hand_crop(image, np.array(box), fraction, 96)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert geometry.image_size == (240, 160) and geometry.input_size == 96
    # The box's longest side is `fraction` of the crop, its centre at the crop's centre.
    side = max(box[2] - box[0], box[3] - box[1])
    assert geometry.scale == pytest.approx(96 / round(side / fraction))
    box_centre = geometry.to_input(np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]))
    np.testing.assert_allclose(box_centre, [47.5, 47.5], atol=geometry.scale)
    np.testing.assert_allclose(
        centroid(out[..., 1]), geometry.to_input(np.array(centre)), atol=0.05
    )
    points = np.random.default_rng(1).uniform(-50, 300, size=(20, 2))
    np.testing.assert_allclose(geometry.to_original(geometry.to_input(points)), points, atol=1e-9)


def test_a_hand_crop_past_the_image_edge_is_zero_there() -> None:
    image = np.full((50, 80, 3), 200, dtype=np.uint8)
    out, geometry = hand_crop(image, np.array([60.0, 0.0, 80.0, 20.0]), 0.25, 80)
    # The crop spans u 30..110 and v -30..50: its right and top parts lie outside the image.
    inside = geometry.to_input(np.array([[40.0, 25.0]]))[0].round().astype(int)
    outside = geometry.to_input(np.array([[100.0, -20.0]]))[0].round().astype(int)
    assert out[inside[1], inside[0]].tolist() == [200, 200, 200]
    assert out[outside[1], outside[0]].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="fraction"):
        hand_crop(image, np.array([0.0, 0.0, 10.0, 10.0]), 0.0, 80)


def test_image_sits_at_the_bottom_left() -> None:
    wide = np.full((50, 100, 3), 200, dtype=np.uint8)
    out, box = letterbox(wide, 64)
    top = int(np.floor(box.to_input(np.array([0.0, -0.5]))[1]))
    assert np.all(out[: top - 1] == 0)
    assert np.all(out[-2:, :] == 200)
    tall = np.full((100, 50, 3), 200, dtype=np.uint8)
    out, _ = letterbox(tall, 64)
    assert np.all(out[:, 34:] == 0)
    assert np.all(out[:, :2] == 200)


def test_rgb_input_is_converted_to_bgr() -> None:
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    out_bgr, _ = letterbox(bgr, 64)
    out_rgb, _ = letterbox(rgb, 64, color_order="rgb")
    np.testing.assert_array_equal(out_bgr, out_rgb)
    batch = out_bgr[None]
    assert torch.equal(
        normalise(batch), normalise(np.ascontiguousarray(batch[..., ::-1]), color_order="rgb")
    )


def test_normalise_applies_rgb_statistics_to_bgr_channels_without_swap() -> None:
    images = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    images[1, 2, 3] = (255, 0, 128)  # B, G, R
    x = normalise(images)
    assert x.shape == (2, 3, 4, 4) and x.dtype == torch.float32 and x.is_contiguous()
    for channel, value in enumerate((255, 0, 128)):
        expected = (value / 255.0 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert x[1, channel, 2, 3].item() == pytest.approx(expected, rel=1e-6)
        assert x[0, channel, 0, 0].item() == pytest.approx(
            -IMAGENET_MEAN[channel] / IMAGENET_STD[channel], rel=1e-6
        )


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((10, 10, 3), dtype=np.float32), 64)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        letterbox(np.zeros((2, 10, 10, 3), dtype=np.uint8), 64)
    with pytest.raises(ValueError, match="color_order"):
        letterbox(np.zeros((10, 10, 3), dtype=np.uint8), 64, color_order="bgra")
    with pytest.raises(ValueError, match=r"\(B, R, R, 3\)"):
        normalise(np.zeros((10, 10, 3), dtype=np.uint8))
