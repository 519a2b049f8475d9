"""`python -m smhr_core` / `smhr-predict`: reconstruct the hands in images or folders of images.

Per image it writes `<stem>.json` (the hands), and on request `<stem>_overlay.png` (meshes and
skeletons drawn over the image) and `<stem>_heads.npz` (the raw head maps of the network).
Exit status: 0 on success, 2 with a one-line reason on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from smhr_core.config import BACKBONES, PRECISIONS, ConfigError, ModelConfig
from smhr_core.decode_arguments import add_decode_arguments, decode_config
from smhr_core.hand_model import HandModel, HandModelError
from smhr_core.network import SMHRNet
from smhr_core.open_hand import open_hand_directory
from smhr_core.overlay import draw_hands
from smhr_core.precision import autocast
from smhr_core.predictor import DEFAULT_CHECKPOINT, Predictor, PredictorError, resolve_device
from smhr_core.preprocess import letterbox, normalise
from smhr_core.results import Hand, ImageHands

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class UsageError(RuntimeError):
    """Bad command-line input; reported as one line with exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smhr-predict",
        description="Find every hand in images with SMHR and reconstruct its 3D mesh.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument(
        "--out", type=Path, default=Path("smhr_out"), help="output folder (default: smhr_out)"
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--checkpoint",
        type=Path,
        help=f"checkpoint file (default: the embedded default, {DEFAULT_CHECKPOINT.name})",
    )
    model.add_argument(
        "--random-weights",
        choices=BACKBONES,
        help="use an untrained, seeded network with this backbone instead of a checkpoint",
    )
    parser.add_argument(
        "--hand-model",
        type=Path,
        help="folder with MANO_RIGHT.pkl and MANO_LEFT.pkl (default: the open hand model)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        help="network input size in pixels, for release checkpoints (default: 384 for the "
        "multi-hand model, 224 for the single-hand model) or --random-weights (default 384)",
    )
    parser.add_argument("--max-hands", type=int, default=4, help="hands per image (robot mode)")
    add_decode_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's floating-point type: auto (float16 on CUDA, else float32), float32, "
        "bfloat16 (fast on CPUs with AMX or AVX512-BF16), float16 (CUDA)",
    )
    parser.add_argument("--rgb", action="store_true", help="treat decoded images as RGB")
    for name in ("fx", "fy", "cx", "cy"):
        parser.add_argument(f"--{name}", type=float, help=f"camera intrinsics {name} in pixels")
    parser.add_argument("--overlay", action="store_true", help="write an overlay PNG per image")
    parser.add_argument(
        "--dump-heads", action="store_true", help="write the raw head maps per image (.npz)"
    )
    parser.add_argument("--no-vertices", action="store_true", help="leave vertices out of JSON")
    return parser


def collect_images(inputs: list[Path]) -> list[Path]:
    """Image files named directly or found (sorted, not recursively) in named folders."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise UsageError(f"input {item} does not exist")
    if not found:
        raise UsageError(f"no images found in {', '.join(str(p) for p in inputs)}")
    return found


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to a uint8 (H, W, 3) BGR array; truncated files are refused."""
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{path} is empty")
    # libjpeg decodes a cut-off JPEG into a partly grey image with only a warning: check ends.
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise UsageError(f"{path} is a truncated JPEG (no end-of-image marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-16:]:
        raise UsageError(f"{path} is a truncated PNG (no IEND chunk)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UsageError(f"{path} is not a readable image (corrupt or unknown format)")
    return image


def camera_matrix(args: argparse.Namespace) -> np.ndarray | None:
    """The 3x3 intrinsics from --fx --fy --cx --cy, all or none."""
    values = [args.fx, args.fy, args.cx, args.cy]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise UsageError("give all of --fx --fy --cx --cy, or none")
    if args.fx <= 0 or args.fy <= 0:
        raise UsageError("--fx and --fy must be positive")
    return np.array([[args.fx, 0, args.cx], [0, args.fy, args.cy], [0, 0, 1]], dtype=np.float64)


def build_predictor(args: argparse.Namespace) -> tuple[Predictor, str]:
    """The predictor and a sentence saying which weights it runs."""
    decode = decode_config(args)
    if args.random_weights:
        config = ModelConfig(backbone=args.random_weights, input_resolution=args.resolution or 384)
        torch.manual_seed(0)
        device = resolve_device(args.device)
        try:
            hands = HandModel.from_directory(args.hand_model or open_hand_directory(), device)
        except HandModelError as error:
            raise PredictorError(str(error)) from None
        predictor = Predictor.from_network(
            SMHRNet(config).to(device),
            hands,
            decode,
            with_vertices=not args.no_vertices,
            name=f"random-{args.random_weights}",
            precision=args.precision,
        )
        return predictor, "RANDOM WEIGHTS (untrained network): the hands found are meaningless"
    predictor = Predictor(
        args.checkpoint,
        args.hand_model,
        device=args.device,
        decode=decode,
        with_vertices=not args.no_vertices,
        input_resolution=args.resolution,
        precision=args.precision,
    )
    trained = predictor.meta.get("trained", True)
    note = f"checkpoint {predictor.checkpoint_path}"
    if not trained:
        note += " (UNTRAINED weights: the hands found are meaningless)"
    return predictor, note


def _rounded(values: np.ndarray, digits: int) -> list:
    # float64 first: a rounded float32 printed as a Python float shows its binary tail.
    return np.asarray(values, dtype=np.float64).round(digits).tolist()


def hand_to_json(hand: Hand, with_vertices: bool) -> dict:
    """A hand as plain JSON values (metres, pixels, radians)."""
    data = {
        "score": round(hand.score, 6),
        "handedness": hand.handedness.name.lower(),
        "handedness_probability": round(hand.handedness_probability, 6),
        "joints_m": _rounded(hand.joints_m, 6),
        "keypoints_px": _rounded(hand.keypoints_px, 3),
        "global_orient": _rounded(hand.global_orient, 6),
        "hand_pose": _rounded(hand.hand_pose, 6),
        "betas": _rounded(hand.betas, 6),
        "translation_m": _rounded(hand.translation_m, 6),
        "box_px": _rounded(hand.box_px, 3),
        "centre_px": _rounded(hand.centre_px, 3),
    }
    if with_vertices and hand.vertices_m is not None:
        data["vertices_m"] = _rounded(hand.vertices_m, 6)
    return data


def result_to_json(path: Path, result: ImageHands, predictor: Predictor, note: str) -> dict:
    """One image's result with what a reader needs to interpret it."""
    return {
        "image": str(path),
        "image_size": list(result.image_size),
        "model": predictor.model_description,
        "weights": note,
        "hand_model": predictor.hand_model_id,
        "camera_matrix": _rounded(result.camera_matrix, 6),
        "intrinsics_assumed": result.intrinsics_assumed,
        "non_finite_hands": result.non_finite_hands,
        "hands": [hand_to_json(h, predictor.with_vertices) for h in result.hands],
    }


def dump_heads(predictor: Predictor, image: np.ndarray, color_order: str, out: Path) -> None:
    """Save every head's full map (naive forward) for one image."""
    square, _ = letterbox(image, predictor.config.input_resolution, color_order)
    batch = normalise(square[None], device=predictor.device)
    with torch.inference_mode(), autocast(predictor.precision, predictor.device):
        maps = predictor.network(batch)
    np.savez_compressed(out, **{name: m[0].float().cpu().numpy() for name, m in maps.items()})


def run(args: argparse.Namespace) -> int:
    images = collect_images(args.inputs)
    matrix = camera_matrix(args)
    predictor, note = build_predictor(args)
    args.out.mkdir(parents=True, exist_ok=True)
    color_order = "rgb" if args.rgb else "bgr"
    print(f"smhr-predict: {predictor.model_description} on {predictor.device}; {note}")
    for path in images:
        image = read_image(path)
        if args.rgb:
            image = np.ascontiguousarray(image[:, :, ::-1])
        (result,) = predictor.predict([image], color_order, [matrix])
        data = result_to_json(path, result, predictor, note)
        (args.out / f"{path.stem}.json").write_text(json.dumps(data, indent=1))
        if args.overlay:
            bgr = image[:, :, ::-1] if args.rgb else image
            drawn = draw_hands(np.ascontiguousarray(bgr), result.hands, result.camera_matrix)
            cv2.imwrite(str(args.out / f"{path.stem}_overlay.png"), drawn)
        if args.dump_heads:
            dump_heads(predictor, image, color_order, args.out / f"{path.stem}_heads.npz")
        sides = ", ".join(f"{h.handedness.name[0]} {h.score:.2f}" for h in result.hands)
        print(f"{path.name}: {len(result.hands)} hand(s) [{sides}]")
    print(f"results in {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `smhr-predict`; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (UsageError, PredictorError, ConfigError) as error:
        print(f"smhr-predict: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
