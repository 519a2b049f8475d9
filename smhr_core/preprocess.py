"""Image preprocessing as the checkpoints were trained: letterbox, then ImageNet normalisation.

Pixel coordinates follow OpenCV: integer (u, v) = (column, row) is the centre of a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COLOR_ORDERS = ("bgr", "rgb")


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits in the network input: input = scale * original + offset.

    `scale` is input pixels per original pixel, offsets are in input pixels; both include the
    half-pixel terms of OpenCV's resize, so the mapping is exact for pixel-centre coordinates.
    """

    scale: float
    offset_u: float
    offset_v: float
    input_size: int
    """Side of the square network input, pixels."""
    image_size: tuple[int, int]
    """(width, height) of the original image, pixels."""

    @classmethod
    def fit(cls, width: int, height: int, resolution: int) -> Letterbox:
        """Geometry of `letterbox` for an image of `width` x `height` pixels: pad to a square
        with the image at the bottom-left, then resize the square to `resolution`."""
        if width < 1 or height < 1 or resolution < 1:
            raise ValueError(
                f"letterbox: image size {width}x{height} and resolution {resolution} must be >= 1"
            )
        side = max(width, height)
        scale = resolution / side
        # cv2.resize maps destination centre x_d to source (x_d + 0.5) / scale - 0.5.
        half = 0.5 * scale - 0.5
        return cls(
            scale=scale,
            offset_u=half,
            offset_v=(side - height) * scale + half,
            input_size=int(resolution),
            image_size=(int(width), int(height)),
        )

    def to_input(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) original-image pixels -> network-input pixels (float64)."""
        uv = np.asarray(uv, dtype=np.float64)
        return uv * self.scale + np.array([self.offset_u, self.offset_v])

    def to_original(self, uv_input: np.ndarray) -> np.ndarray:
        """(..., 2) network-input pixels -> original-image pixels (float64); inverse of
        `to_input`."""
        uv_input = np.asarray(uv_input, dtype=np.float64)
        return (uv_input - np.array([self.offset_u, self.offset_v])) / self.scale


def as_bgr(image: np.ndarray, color_order: str) -> np.ndarray:
    """Validate a uint8 (H, W, 3) image (or a (..., 3) batch) and return it in BGR order."""
    if color_order not in COLOR_ORDERS:
        raise ValueError(f"color_order: {color_order!r} is not one of {list(COLOR_ORDERS)}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image: expected a numpy uint8 array, got {kind}")
    if image.ndim < 3 or image.shape[-1] != 3:
        raise ValueError(f"image: expected shape (..., H, W, 3), got {image.shape}")
    return image[..., ::-1] if color_order == "rgb" else image


def letterbox(
    image: np.ndarray, resolution: int, color_order: str = "bgr"
) -> tuple[np.ndarray, Letterbox]:
    """Pad `image` (H, W, 3) uint8 to a square with zeros, image at the bottom-left (as the
    release demo), and resize to `resolution` with bilinear interpolation.

    Returns the (resolution, resolution, 3) BGR uint8 input and its `Letterbox` geometry.
    """
    bgr = as_bgr(image, color_order)
    if bgr.ndim != 3:
        raise ValueError(f"image: expected shape (H, W, 3), got {image.shape}")
    height, width = bgr.shape[:2]
    box = Letterbox.fit(width, height, resolution)
    side = max(width, height)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[side - height :, :width] = bgr
    if side == resolution:
        return canvas, box
    resized = cv2.resize(canvas, (resolution, resolution), interpolation=cv2.INTER_LINEAR)
    return resized, box


def hand_crop(
    image_bgr: np.ndarray, box_px: np.ndarray, fraction: float, resolution: int
) -> tuple[np.ndarray, Letterbox]:
    """A square crop of `image_bgr` (H, W, 3) uint8 around a hand's box (u0, v0, u1, v1 in
    pixels), `box's longest side / fraction` pixels across (at most four times the image's
    longest side), resized to `resolution`.

    Parts of the crop outside the image are zeros, as in `letterbox`. Returns the
    (resolution, resolution, 3) input and its geometry (a `Letterbox` whose offsets place the
    crop's corner).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"hand_crop: fraction {fraction!r} must be within (0, 1]")
    height, width = image_bgr.shape[:2]
    box = np.asarray(box_px, dtype=np.float64)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"hand_crop: box_px must be 4 finite numbers, got {box_px!r}")
    extent = max(float(box[2] - box[0]), float(box[3] - box[1]), 2.0)
    # A crop wider than four images would show the image as a speck (and cost memory).
    side = min(max(round(extent / fraction), 2), 4 * max(width, height))
    u0 = round((box[0] + box[2]) / 2.0 - side / 2.0)
    v0 = round((box[1] + box[3]) / 2.0 - side / 2.0)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    cu0, cv0 = max(u0, 0), max(v0, 0)
    cu1, cv1 = min(u0 + side, width), min(v0 + side, height)
    if cu1 > cu0 and cv1 > cv0:
        canvas[cv0 - v0 : cv1 - v0, cu0 - u0 : cu1 - u0] = image_bgr[cv0:cv1, cu0:cu1]
    scale = resolution / side
    # cv2.resize maps destination centre x_d to source (x_d + 0.5) / scale - 0.5.
    half = 0.5 * scale - 0.5
    geometry = Letterbox(
        scale=scale,
        offset_u=half - u0 * scale,
        offset_v=half - v0 * scale,
        input_size=int(resolution),
        image_size=(int(width), int(height)),
    )
    if side == resolution:
        return canvas, geometry
    interpolation = cv2.INTER_AREA if side > resolution else cv2.INTER_LINEAR
    return cv2.resize(canvas, (resolution, resolution), interpolation=interpolation), geometry


def normalise(
    images: np.ndarray, color_order: str = "bgr", device: str | torch.device = "cpu"
) -> torch.Tensor:
    """(B, R, R, 3) uint8 images -> (B, 3, R, R) float32 network input on `device`.

    The network was trained on BGR arrays normalised with the ImageNet *RGB* mean and std
    applied channel by channel without swapping (SPEC); RGB input is converted to BGR first.
    """
    bgr = as_bgr(images, color_order)
    if bgr.ndim != 4:
        raise ValueError(f"images: expected shape (B, R, R, 3), got {images.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(bgr)).to(device)
    tensor = tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=tensor.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=tensor.device).view(1, 3, 1, 1)
    return ((tensor - mean) / std).contiguous()
