"""Command line: `python -m training {train,evaluate,synth}`.

    python -m training train --config config/training_default.yaml --set optim.lr=1e-3
    torchrun --nproc_per_node=2 -m training train --config my.yaml
    python -m training evaluate --checkpoint runs/smhr/last.pth --data synthetic --count 200
    python -m training evaluate --checkpoint ckpt.pth --data freihand --root FreiHAND_pub_v2 \
        --split evaluation --mode reference --hand-model mano_dir
    python -m training synth --out held_out --count 500 --seed 123

Exit status: 0 on success, 2 with a one-line reason for bad settings or data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from smhr_core.checkpoint import CheckpointError
from smhr_core.config import DECODE_MODES, ConfigError, DecodeConfig
from smhr_core.hand_model import HandModelError
from smhr_core.predictor import PredictorError
from training.config import DATASETS, DataConfig, TrainingConfig, load_training_config
from training.data_source import DataError, build_dataset, write_synthetic_scenes
from training.distributed import cleanup
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
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--data", choices=DATASETS, default="synthetic", help="dataset kind")
    ev.add_argument("--root", default="", help="dataset directory (see training.data_source)")
    ev.add_argument("--split", default="", help="release split, e.g. evaluation (FreiHAND)")
    ev.add_argument("--pickle", default="", help="annotation pickle (for --data reference)")
    ev.add_argument("--count", type=int, default=200, help="synthetic scenes to evaluate on")
    ev.add_argument(
        "--seed", type=int, default=1_000_003, help="synthetic seed (default: held out)"
    )
    ev.add_argument("--max-hands", type=int, default=4, help="hands per image, labels and decoding")
    ev.add_argument("--hand-model", default="", help="MANO_RIGHT/LEFT.pkl folder (default: open)")
    ev.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N")
    ev.add_argument("--mode", choices=DECODE_MODES, default="robot", help="decoding mode")
    ev.add_argument("--threshold", type=float, default=0.3, help="peak score threshold (robot)")
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--max-images", type=int, default=0, help="evaluate only the first N images")
    ev.add_argument("--json", type=Path, help="also write the metrics to this JSON file")

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
    return parser


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


def _evaluate(args: argparse.Namespace) -> int:
    from smhr_core.checkpoint import load_checkpoint

    model_config = load_checkpoint(args.checkpoint).config
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
    dataset = build_dataset(data, model_config.input_resolution, train=False)
    decode = DecodeConfig(mode=args.mode, score_threshold=args.threshold, max_hands=args.max_hands)
    report = evaluate_checkpoint(
        args.checkpoint,
        dataset,
        hand_model_dir=args.hand_model or None,
        device=args.device,
        decode=decode,
        batch_size=args.batch_size,
        max_images=args.max_images,
        progress=sys.stderr.isatty(),
    )
    print(report.table())
    if args.json:
        write_report(report, args.json)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": _train, "evaluate": _evaluate, "synth": _synth}[args.command]
    try:
        return command(args)
    except (
        ConfigError,
        CheckpointError,
        DataError,
        HandModelError,
        PredictorError,
        FileNotFoundError,
    ) as error:
        print(f"python -m training {args.command}: {error}", file=sys.stderr)
        return 2
