"""The decoding settings (`DecodeConfig`) as command-line options, shared by `python -m smhr_core`
and `python -m training evaluate` (each adds its own `--max-hands`)."""

from __future__ import annotations

import argparse

from smhr_core.config import DECODE_MODES, DecodeConfig


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    """--mode, --threshold, --no-keypoint-fit, --no-mirror and the second look's options."""
    parser.add_argument("--mode", choices=DECODE_MODES, default="robot", help="decoding mode")
    parser.add_argument(
        "--threshold", type=float, default=0.3, help="peak score threshold (robot mode)"
    )
    parser.add_argument(
        "--no-keypoint-fit",
        action="store_true",
        help="keep the regressed hands (do not fit them to the keypoints head's joints)",
    )
    parser.add_argument(
        "--no-second-look",
        action="store_true",
        help="keep the hands of the first look (do not find each again in a crop around it)",
    )
    parser.add_argument(
        "--no-mirror",
        action="store_true",
        help="read each hand from the input alone (not also from its mirror image)",
    )
    parser.add_argument(
        "--second-look-fraction",
        type=float,
        default=DecodeConfig.second_look_fraction,
        help="the hand's size in the second look's crop, as a fraction of the network's input",
    )
    parser.add_argument(
        "--second-look-size",
        type=int,
        default=DecodeConfig.second_look_size,
        help="the second look's crop side, pixels (0: the network's input resolution)",
    )


def decode_config(args: argparse.Namespace) -> DecodeConfig:
    """The `DecodeConfig` of parsed options (raises `ConfigError` for invalid values)."""
    return DecodeConfig(
        mode=args.mode,
        score_threshold=args.threshold,
        max_hands=args.max_hands,
        fit_keypoints=not args.no_keypoint_fit,
        second_look=not args.no_second_look,
        second_look_fraction=args.second_look_fraction,
        second_look_size=args.second_look_size,
        mirror_reading=not args.no_mirror,
    )
