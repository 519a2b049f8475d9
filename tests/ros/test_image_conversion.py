"""sensor_msgs images <-> numpy without cv_bridge, and the errors for malformed images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from smhr_ros import image_conversion as ic


def _image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    if bigendian:
        rows = rows.astype(rows.dtype.newbyteorder(">"))
    raw = rows.view(np.uint8).reshape(height, -1)
    raw = np.concatenate([raw, np.full((height, pad), 7, dtype=np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, step=raw.shape[1])
    msg.is_bigendian = int(bigendian)
    msg.data = raw.tobytes()
    return msg


@pytest.fixture
def bgr() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings_become_bgr(bgr: np.ndarray, pad: int) -> None:
    alpha = np.full((5, 7, 1), 200, dtype=np.uint8)
    cases = {
        "bgr8": bgr,
        "rgb8": bgr[..., ::-1],
        "bgra8": np.concatenate([bgr, alpha], axis=2),
        "rgba8": np.concatenate([bgr[..., ::-1], alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        out = ic.image_to_bgr(_image(np.ascontiguousarray(pixels), encoding, pad))
        assert out.dtype == np.uint8 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, bgr, err_msg=encoding)


def test_mono_encodings_are_replicated_to_three_channels() -> None:
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    out = ic.image_to_bgr(_image(grey, "mono8"))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    deep = (np.arange(35, dtype=np.uint16).reshape(5, 7) * 1800).astype(np.uint16)
    for bigendian in (False, True):
        out = ic.image_to_bgr(_image(deep, "mono16", pad=2, bigendian=bigendian))
        np.testing.assert_array_equal(out[..., 1], (deep >> 8).astype(np.uint8))


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        (lambda m: setattr(m, "encoding", "yuv422"), ic.UNKNOWN_ENCODING, "'yuv422'"),
        (lambda m: setattr(m, "step", 20), ic.STEP_SIZE_MISMATCH, "step 20"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-1]), ic.TRUNCATED_DATA, "104 bytes"),
        (lambda m: setattr(m, "data", bytes(m.data) + b"x"), ic.STEP_SIZE_MISMATCH, "106 bytes"),
        (lambda m: setattr(m, "width", 0), ic.ZERO_SIZE, "0 x 5"),
        (lambda m: setattr(m, "height", 0), ic.ZERO_SIZE, "7 x 0"),
    ],
)
def test_malformed_images_raise_their_kind(bgr: np.ndarray, change, kind: str, words: str) -> None:
    msg = _image(bgr, "bgr8")
    change(msg)
    with pytest.raises(ic.ImageConversionError, match=words) as caught:
        ic.image_to_bgr(msg)
    assert caught.value.kind == kind


def test_unknown_encoding_message_names_the_encoding_and_the_allowed_ones(bgr: np.ndarray) -> None:
    msg = _image(bgr, "bgr8")
    msg.encoding = "bayer_rggb8"
    with pytest.raises(ic.ImageConversionError) as caught:
        ic.image_to_bgr(msg)
    assert "bayer_rggb8" in str(caught.value) and "mono16" in str(caught.value)


def test_compressed_images_decode_and_garbage_is_refused(bgr: np.ndarray) -> None:
    big = cv2.resize(bgr, (70, 50), interpolation=cv2.INTER_NEAREST)
    msg = CompressedImage(format="png")
    msg.data = cv2.imencode(".png", big)[1].tobytes()
    np.testing.assert_array_equal(ic.compressed_to_bgr(msg), big)
    msg.data = b"not an image at all"
    with pytest.raises(ic.ImageConversionError) as caught:
        ic.compressed_to_bgr(msg)
    assert caught.value.kind == ic.UNDECODABLE
    msg.data = b""
    with pytest.raises(ic.ImageConversionError) as caught:
        ic.compressed_to_bgr(msg)
    assert caught.value.kind == ic.ZERO_SIZE


def test_depth_images_become_metres_with_nan_for_missing() -> None:
    millimetres = np.array([[0, 500, 1234], [65535, 1, 800]], dtype=np.uint16)
    depth = ic.depth_to_metres(_image(millimetres, "16UC1"))
    expected = np.array([[np.nan, 0.5, 1.234], [65.535, 0.001, 0.8]], dtype=np.float32)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    metres = np.array([[np.nan, 0.5], [-1.0, np.inf]], dtype=np.float32)
    depth = ic.depth_to_metres(_image(metres, "32FC1", pad=4))
    assert depth[0, 1] == pytest.approx(0.5) and np.isnan(depth[[0, 1, 1], [0, 0, 1]]).all()
    with pytest.raises(ic.ImageConversionError, match="'bgr8'"):
        ic.depth_to_metres(_image(np.zeros((2, 2, 3), np.uint8), "bgr8"))


def test_bgr_to_image_round_trips(bgr: np.ndarray) -> None:
    header = Header(frame_id="cam")
    msg = ic.bgr_to_image(bgr, header)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("bgr8", 7, 5, 21)
    assert msg.header.frame_id == "cam"
    np.testing.assert_array_equal(ic.image_to_bgr(msg), bgr)
    with pytest.raises(ValueError, match="shape"):
        ic.bgr_to_image(bgr[..., 0], header)


class _RecordingBridge:
    """Stands in for cv_bridge.CvBridge, which is not installable here."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def imgmsg_to_cv2(self, msg: Image, desired_encoding: str) -> np.ndarray:
        self.calls.append(f"{msg.encoding}->{desired_encoding}")
        return np.zeros((msg.height, msg.width, 3), dtype=np.uint8)


def test_cv_bridge_converts_only_images_that_passed_the_checks(
    bgr: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = _RecordingBridge()
    monkeypatch.setattr(ic, "_BRIDGE", bridge)
    assert ic.image_to_bgr(_image(bgr[..., ::-1].copy(), "rgb8")).shape == (5, 7, 3)
    truncated = _image(bgr, "bgr8")
    truncated.data = bytes(truncated.data)[:10]
    with pytest.raises(ic.ImageConversionError):
        ic.image_to_bgr(truncated)
    grey = np.arange(35, dtype=np.uint16).reshape(5, 7)
    ic.image_to_bgr(_image(grey, "mono16"))
    assert bridge.calls == ["rgb8->bgr8"]
