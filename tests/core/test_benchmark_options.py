"""The benchmark scripts' options build the predictor they time (MediaPipe itself is optional and
not run here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from smhr_core.__main__ import build_predictor

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_vs_mediapipe_options_carry_every_decoding_setting_to_the_predictor() -> None:
    vs_mediapipe = _load("vs_mediapipe")
    args = vs_mediapipe.parse_args(
        ["--random-weights", "resnet18", "--resolution", "128", "--second-look-size", "96"]
    )
    predictor, _ = build_predictor(args)
    assert predictor.decode.second_look and predictor.decode.second_look_size == 96
    args = vs_mediapipe.parse_args(["--random-weights", "resnet18", "--no-second-look"])
    assert not build_predictor(args)[0].decode.second_look
    assert predictor.decode.mirror_reading
    args = vs_mediapipe.parse_args(["--random-weights", "resnet18", "--no-mirror"])
    assert not build_predictor(args)[0].decode.mirror_reading


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("float32", ("float32", True, True, True)),
        ("bfloat16+onelook", ("bfloat16", True, False, True)),
        ("float32+nomirror", ("float32", True, True, False)),
        ("float32+onelook+nomirror", ("float32", True, False, False)),
        ("float32+nomirror+onelook", ("float32", True, False, False)),
        ("float32+nofit", ("float32", False, False, False)),
    ],
)
def test_precision_speed_variants(variant: str, expected: tuple[str, bool, bool, bool]) -> None:
    precision_speed = _load("precision_speed")
    assert precision_speed.split_variant(variant) == expected
    args = precision_speed.parse_args(["--precisions", f"bfloat16+nofit,{variant}"])
    assert args.precisions == ["bfloat16+nofit", variant]


@pytest.mark.parametrize("variant", ["float32+nomirror+nomirror", "float32+fast", "float33"])
def test_precision_speed_rejects_unknown_variants(variant: str) -> None:
    precision_speed = _load("precision_speed")
    with pytest.raises(SystemExit):
        precision_speed.parse_args(["--precisions", f"float32,{variant}"])
