"""Command line: `python -m training {train,evaluate,compare,breakdown,synth,average}`.

    python -m training train --config config/training_default.yaml --set optim.lr=1e-3
    torchrun --nproc_per_node=2 -m training train --config my.yaml
    python -m training evaluate --checkpoint runs/smhr/last.pth --data synthetic --count 200
    python -m training evaluate --checkpoint ckpt.pth --data freihand --root FreiHAND_pub_v2 \
        --split evaluation --mode reference --hand-model mano_dir
    python -m training evaluate --checkpoint ckpt.pth --data scenes --root held_out \
        --precision bfloat16
    python -m training evaluate --checkpoint ckpt.pth --data synthetic --count 100 \
        --resolution 384
    python -m training compare v28.json candidate.json
    python -m training breakdown --checkpoint ckpt.pth --data scenes --root held_out
    python -m training synth --out held_out --count 500 --seed 123
    python -m training average --out soup.pth runs/a/last.pth runs/b/last.pth

Exit status: 0 on success, 2 with a one-line reason for bad settings or data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torch.utils.data import Dataset

from smhr_core.checkpoint import CheckpointError, load_checkpoint
from smhr_core.config import PRECISIONS, ConfigError
from smhr_core.decode_arguments import add_decode_arguments, decode_config
from smhr_core.hand_model import HandModel, HandModelError
from smhr_core.open_hand import open_hand_directory
from smhr_core.predictor import PredictorError, resolve_device
from training.checkpoint_average import average_checkpoints
from training.compare import ComparisonError, compare_reports, format_comparison, load_report
from training.config import DATASETS, DataConfig, TrainingConfig, load_training_config
from training.data_source import DataError, build_dataset, write_synthetic_scenes
from training.distributed import cleanup
from training.error_breakdown import error_breakdown
from training.evaluate import evaluate_checkpoint, write_report
from training.trainer import Trainer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description="Train and evaluate SMHR hand reconstruction."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a network (also under torchrun)")
    train.add_argument("--config", type=Path, help="YAML settings (default: built-in defaults)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set optim.lr=1e-3 (repeatable)",
    )

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on a dataset")
    _add_data_arguments(ev)
    add_decode_arguments(ev)
    ev.add_argument(
        "--resolution",
        type=int,
        default=0,
        help="image side of the evaluation images, pixels (default: the model's input); other "
        "sizes are letterboxed to the model's input, so hands appear smaller or larger",
    )
    ev.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the network's floating-point type (auto: float16 on CUDA, else float32)",
    )
    ev.add_argument("--json", type=Path, help="also write the metrics to this JSON file")

    compare = sub.add_parser(
        "compare",
        help="compare two evaluations of the same scenes hand by hand (the median's change and "
        "its interval)",
    )
    compare.add_argument("before", type=Path, help="report of `evaluate --json`, the baseline")
    compare.add_argument("after", type=Path, help="report of `evaluate --json`, the candidate")
    compare.add_argument("--json", type=Path, help="also write the comparison to this JSON file")

    breakdown = sub.add_parser(
        "breakdown",
        help="which predicted part (orientation, finger pose, wrist) limits the 2D error",
    )
    _add_data_arguments(breakdown)
    breakdown.add_argument("--json", type=Path, help="also write the breakdown to this JSON file")

    synth = sub.add_parser("synth", help="write synthetic scenes to a folder (a held-out set)")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--count", type=int, required=True)
    synth.add_argument("--seed", type=int, default=1_000_003)
    synth.add_argument("--resolution", type=int, default=384, help="image side, pixels")
    synth.add_argument("--max-hands", type=int, default=4)
    synth.add_argument(
        "--supersampling",
        type=int,
        default=2,
        help="render at this many times the resolution, for smoother edges (1 is ~30x faster)",
    )
    synth.add_argument(
        "--hand-model", default="", help="MANO_RIGHT/LEFT.pkl folder (default: open)"
    )

    average = sub.add_parser(
        "average", help="average the weights of checkpoints of one network (a model soup)"
    )
    average.add_argument("--out", type=Path, required=True, help="the averaged checkpoint")
    average.add_argument("checkpoints", type=Path, nargs="+", help="two or more checkpoints")
    return parser


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The checkpoint, the dataset and the run settings shared by `evaluate` and `breakdown`."""
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", choices=DATASETS, default="synthetic", help="dataset kind")
    parser.add_argument("--root", default="", help="dataset directory (see training.data_source)")
    parser.add_argument("--split", default="", help="release split, e.g. evaluation (FreiHAND)")
    parser.add_argument("--pickle", default="", help="annotation pickle (for --data reference)")
    parser.add_argument("--count", type=int, default=200, help="synthetic scenes to evaluate on")
    parser.add_argument(
        "--seed", type=int, default=1_000_003, help="synthetic seed (default: held out)"
    )
    parser.add_argument(
        "--max-hands", type=int, default=4, help="hands per image, labels and decoding"
    )
    parser.add_argument(
        "--hand-model", default="", help="MANO_RIGHT/LEFT.pkl folder (default: open)"
    )
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-images", type=int, default=0, help="use only the first N images")


def _train(args: argparse.Namespace) -> int:
    config = load_training_config(args.config, args.overrides)
    trainer = Trainer(config, dataset_factory=_training_dataset)
    try:
        result = trainer.fit()
    finally:
        cleanup(trainer.ctx)
    if trainer.ctx.is_main:
        last = result.epochs[-1].losses["total"] if result.epochs else float("nan")
        print(
            f"trained {len(result.epochs)} epoch(s), {result.step} steps; last epoch loss "
            f"{last:.4g}; checkpoints in {result.output_dir}"
        )
    return 0


def _training_dataset(config: TrainingConfig):
    return build_dataset(config.data, config.model.input_resolution, train=True)


def _dataset(args: argparse.Namespace, resolution: int) -> Dataset:
    data = DataConfig(
        dataset=args.data,
        root=args.root,
        split=args.split,
        pickle=args.pickle,
        max_hands=args.max_hands,
        synthetic_count=args.count,
        synthetic_seed=args.seed,
        hand_model=args.hand_model,
        num_workers=0,
    )
    return build_dataset(data, resolution, train=False)


def _evaluate(args: argparse.Namespace) -> int:
    model_config = load_checkpoint(args.checkpoint).config
    dataset = _dataset(args, args.resolution or model_config.input_resolution)
    decode = decode_config(args)
    report = evaluate_checkpoint(
        args.checkpoint,
        dataset,
        hand_model_dir=args.hand_model or None,
        device=args.device,
        decode=decode,
        batch_size=args.batch_size,
        max_images=args.max_images,
        progress=sys.stderr.isatty(),
        precision=args.precision,
    )
    print(report.table())
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    names = (str(args.before), str(args.after))
    comparison = compare_reports(load_report(args.before), load_report(args.after), names)
    print(format_comparison(comparison, names))
    if args.json:
        args.json.write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _breakdown(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint, map_location=device)
    hand_model = HandModel.from_directory(
        Path(args.hand_model) if args.hand_model else open_hand_directory(), device=device
    )
    trained_with = loaded.meta.get("hand_model_id")
    if trained_with and trained_with != hand_model.model_id:
        raise DataError(
            f"{args.checkpoint}: trained with hand model {trained_with!r} but the breakdown uses "
            f"{hand_model.model_id!r}; pass the matching --hand-model directory"
        )
    if "handmap" not in loaded.config.heads:
        raise DataError(f"{args.checkpoint}: the breakdown needs a network with a handmap head")
    resolution = loaded.config.input_resolution
    dataset = _dataset(args, resolution)
    try:
        result = error_breakdown(
            loaded.model,
            hand_model,
            dataset,
            resolution,
            batch_size=args.batch_size,
            max_images=args.max_images,
            device=device,
        )
    except ValueError as error:  # no labelled hand to read
        raise DataError(f"--data {args.data}: {error}") from None
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    written = write_synthetic_scenes(
        args.out,
        count=args.count,
        seed=args.seed,
        resolution=args.resolution,
        max_hands=args.max_hands,
        hand_model_dir=args.hand_model or None,
        supersampling=args.supersampling,
    )
    print(f"wrote {written} scenes to {args.out}")
    return 0


def _average(args: argparse.Namespace) -> int:
    written = average_checkpoints(args.checkpoints, args.out)
    print(f"wrote the average of {len(args.checkpoints)} checkpoints to {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {
        "train": _train,
        "evaluate": _evaluate,
        "compare": _compare,
        "breakdown": _breakdown,
        "synth": _synth,
        "average": _average,
    }[args.command]
    try:
        return command(args)
    except (
        ConfigError,
        CheckpointError,
        ComparisonError,
        DataError,
        HandModelError,
        PredictorError,
        FileNotFoundError,
    ) as error:
        print(f"python -m training {args.command}: {error}", file=sys.stderr)
        return 2
