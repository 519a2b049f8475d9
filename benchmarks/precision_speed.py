"""Reduced precision, and the keypoint fit, against a baseline: time per image and agreement of
the hands, same run.

One `smhr_core.predictor.Predictor` per variant (the same checkpoint, by default the embedded
one) runs on the same images, in an order that alternates from image to image so that drifting
machine load affects every variant alike. The first variant listed is the baseline. A variant is
a precision, optionally with `+nofit`: the hands as the network regressed them, without the fit
to the `keypoints` head's joints (`smhr_core.fit_2d`; models without that head never fit), or
with `+onelook`: fitted, but without the second look at a crop around each hand
(`DecodeConfig.second_look`), and/or with `+nomirror`: each hand read from the input alone, not
also from its mirror image (`DecodeConfig.mirror_reading`).

Per thread count and precision: time per image (median and p90 of `predict` on one decoded
image: letterbox, network, decoding, MANO), its ratio to the baseline's median, hands found, and
agreement with the baseline: hands at the same heatmap cell, of those the fraction with the same
side, the keypoint difference (pixels, median and maximum over all keypoints) and the score
difference (median). Accuracy against ground truth is `python -m training evaluate --precision`.

On a CPU, bfloat16 is fast only where the hardware has it (AVX512-BF16 or AMX); the table says
whether this CPU does.

Usage (from the repository root):
    .venv/bin/python benchmarks/precision_speed.py --threads 1,2 --out precision.json
    .venv/bin/python benchmarks/precision_speed.py --precisions float32+nofit,float32,bfloat16
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from smhr_core.__main__ import UsageError, collect_images, read_image
from smhr_core.config import PRECISIONS, ConfigError, DecodeConfig
from smhr_core.predictor import Predictor, PredictorError
from smhr_core.results import ImageHands

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUTS = (
    ROOT / "tests" / "data" / "handSrc.jpg",
    ROOT / "smhr_ros" / "data" / "demo" / "frames",
)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
NO_FIT = "+nofit"
ONE_LOOK = "+onelook"
NO_MIRROR = "+nomirror"


def split_variant(variant: str) -> tuple[str, bool, bool, bool]:
    """'bfloat16+onelook' -> ('bfloat16', True, False, True): the precision, whether hands are
    fitted, whether they get a second look and whether each hand is also read from the mirror
    image; `+onelook` and `+nomirror` combine, `+nofit` turns all three off. An unknown suffix
    stays part of the precision (which the caller rejects)."""
    if variant.endswith(NO_FIT):
        return variant[: -len(NO_FIT)], False, False, False
    second_look = mirror = True
    while True:
        if variant.endswith(ONE_LOOK) and second_look:
            variant, second_look = variant[: -len(ONE_LOOK)], False
        elif variant.endswith(NO_MIRROR) and mirror:
            variant, mirror = variant[: -len(NO_MIRROR)], False
        else:
            return variant, True, second_look, mirror


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs",
        nargs="*",
        type=Path,
        help="image files or folders (default: tests/data/handSrc.jpg and the demo frames)",
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint (default: the embedded one)")
    parser.add_argument(
        "--precisions",
        default="float32,bfloat16",
        help="comma-separated variants, the first is the baseline: one of "
        f"{', '.join(PRECISIONS)}, each optionally with {NO_FIT} (no keypoint fit), "
        f"{ONE_LOOK} (no second look) and/or {NO_MIRROR} (hands not read from the mirror image)",
    )
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threshold", type=float, default=0.3, help="score threshold")
    parser.add_argument("--warmup", type=int, default=3, help="untimed images per precision")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per image")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in args.precisions if split_variant(p)[0] not in PRECISIONS]
    if unknown or len(args.precisions) < 2 or len(set(args.precisions)) < len(args.precisions):
        parser.error(
            f"--precisions: give at least two different variants of {list(PRECISIONS)}, each "
            f"optionally with {NO_FIT} or {ONE_LOOK} (got {args.precisions})"
        )
    args.threads = [int(t) for t in args.threads.split(",")]
    if min(args.threads) < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--threads and --repeats must be >= 1, --warmup >= 0")
    return args


def bf16_hardware() -> str:
    """Which bfloat16 instructions this CPU has, from /proc/cpuinfo ('unknown' elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    found = [f for f in BF16_FLAGS if f in flags]
    return ", ".join(found) if found else "none"


def agreement(baseline: list[ImageHands], other: list[ImageHands]) -> dict:
    """Hands of `other` at the baseline's heatmap cells, and how far they are from them."""
    same_cell = same_side = total = 0
    keypoint_px: list[np.ndarray] = []
    score_diff: list[float] = []
    for base, result in zip(baseline, other, strict=True):
        total += len(base.hands)
        for hand in base.hands:
            match = next(
                (h for h in result.hands if np.abs(h.centre_px - hand.centre_px).max() < 0.5), None
            )
            if match is None:
                continue
            same_cell += 1
            if match.handedness != hand.handedness:
                continue
            same_side += 1
            keypoint_px.append(np.linalg.norm(match.keypoints_px - hand.keypoints_px, axis=1))
            score_diff.append(abs(match.score - hand.score))
    distances = np.concatenate(keypoint_px) if keypoint_px else np.zeros(0)
    return {
        "baseline_hands": total,
        "same_cell": same_cell / total if total else None,
        "same_side": same_side / same_cell if same_cell else None,
        "keypoint_diff_px_median": float(np.median(distances)) if distances.size else None,
        "keypoint_diff_px_max": float(distances.max()) if distances.size else None,
        "score_diff_median": float(statistics.median(score_diff)) if score_diff else None,
    }


def run_threads(
    predictors: dict[str, Predictor], images: list[np.ndarray], args: argparse.Namespace
) -> dict[str, dict]:
    """Time every precision on every image; returns per precision its times and results."""
    names = list(predictors)
    for name in names:
        for image in images[: args.warmup]:
            predictors[name].predict([image])
    times: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, list[ImageHands]] = {n: [] for n in names}
    for index, image in enumerate(images):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            for repeat in range(args.repeats):
                start = time.perf_counter()
                (result,) = predictors[name].predict([image])
                times[name].append(time.perf_counter() - start)
                if repeat == 0:
                    results[name].append(result)
    return {n: {"times": times[n], "results": results[n]} for n in names}


def summarise(runs: dict[str, dict]) -> dict[str, dict]:
    names = list(runs)
    baseline = runs[names[0]]
    base_median = statistics.median(baseline["times"])
    out = {}
    for name in names:
        ordered = sorted(runs[name]["times"])
        median = statistics.median(ordered)
        out[name] = {
            "median_ms": 1e3 * median,
            "p90_ms": 1e3 * ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
            "speed_vs_baseline": base_median / median,
            "hands": sum(len(r.hands) for r in runs[name]["results"]),
            **agreement(baseline["results"], runs[name]["results"]),
        }
    return out


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def print_table(report: dict) -> None:
    print(
        f"\n{report['images']} images; CPU bfloat16 instructions: {report['bf16_hardware']}; "
        f"model {report['model']}; baseline {report['baseline']}\n"
    )
    header = (
        "| threads | variant | ms median / p90 | speed vs baseline | hands | same cell "
        "| same side | keypoint diff px median / max | score diff median |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for threads, rows in report["results"].items():
        for name, r in rows.items():
            print(
                f"| {threads} | {name} | {r['median_ms']:.1f} / {r['p90_ms']:.1f} "
                f"| {r['speed_vs_baseline']:.2f} | {r['hands']} | {_fmt(r['same_cell'], '.3f')} "
                f"| {_fmt(r['same_side'], '.3f')} | {_fmt(r['keypoint_diff_px_median'], '.2f')} / "
                f"{_fmt(r['keypoint_diff_px_max'], '.2f')} "
                f"| {_fmt(r['score_diff_median'], '.4f')} |"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = collect_images(args.inputs or [p for p in DEFAULT_INPUTS if p.exists()])
        images = [read_image(p) for p in paths]
        predictors = {}
        for name in args.precisions:
            precision, fit, second_look, mirror = split_variant(name)
            decode = DecodeConfig(
                score_threshold=args.threshold,
                fit_keypoints=fit,
                second_look=second_look,
                mirror_reading=mirror,
            )
            predictors[name] = Predictor(
                args.checkpoint, device=args.device, decode=decode, precision=precision
            )
    except (UsageError, PredictorError, ConfigError) as error:
        print(f"precision_speed: {error}")
        return 2
    baseline = predictors[args.precisions[0]]
    report = {
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "inputs": [str(p) for p in paths],
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "bf16_hardware": bf16_hardware(),
        "model": baseline.model_description,
        "baseline": args.precisions[0],
        "images": len(images),
        "results": {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = summarise(run_threads(predictors, images, args))
        report["results"][str(threads)] = rows
        for name, r in rows.items():
            print(f"  {threads} thread(s) {name}: {r['median_ms']:.1f} ms", flush=True)
    print_table(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
