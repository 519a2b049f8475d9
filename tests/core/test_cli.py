"""`python -m smhr_core` on a real photo, and its one-line errors with exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smhr_core.__main__ import main
from smhr_core.checkpoint import save_checkpoint
from smhr_core.config import ModelConfig
from smhr_core.network import SMHRNet

PHOTO = Path(__file__).resolve().parents[1] / "data" / "handSrc.jpg"
RANDOM = ["--random-weights", "resnet18", "--resolution", "128"]


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smhr_core", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _run_here(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`main()` in this process (the subprocess path is covered once below): same exit code and
    output, without paying for a fresh interpreter and torch import per case."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_cli_process_exit_status_and_single_error_line(tmp_path: Path) -> None:
    result = _run(tmp_path / "missing.jpg", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"smhr-predict: error: input {tmp_path / 'missing.jpg'} does not exist"
    ]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    config = ModelConfig(backbone="resnet18", input_resolution=128)
    path = tmp_path_factory.mktemp("cli") / "untrained.pth"
    return save_checkpoint(path, SMHRNet(config), config, epoch=0, meta={"trained": False})


def test_cli_writes_json_overlay_and_heads(tmp_path: Path, untrained: Path) -> None:
    out = tmp_path / "out"
    args = ["--checkpoint", untrained, "--threshold", "0", "--overlay", "--dump-heads"]
    result = _run(
        PHOTO,
        "--out",
        out,
        *args,
        "--fx",
        "600",
        "--fy",
        "600",
        "--cx",
        "320",
        "--cy",
        "240",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" in result.stdout
    data = json.loads((out / "handSrc.json").read_text())
    assert data["image_size"] == [640, 480]
    assert data["intrinsics_assumed"] is False
    assert data["camera_matrix"][0] == [600.0, 0.0, 320.0]
    assert len(data["hands"]) == 4
    hand = data["hands"][0]
    assert np.asarray(hand["joints_m"]).shape == (21, 3)
    assert np.asarray(hand["vertices_m"]).shape == (778, 3)
    assert (out / "handSrc_overlay.png").stat().st_size > 10_000
    heads = np.load(out / "handSrc_heads.npz")
    assert heads["hm"].shape == (1, 32, 32)
    assert heads["params"].shape == (122, 32, 32)
    assert heads["handmap"].shape == (2, 32, 32)


def test_cli_random_weights_say_so(tmp_path: Path) -> None:
    result = _run_here(
        PHOTO,
        "--random-weights",
        "resnet18",
        "--resolution",
        "128",
        "--no-vertices",
        "--out",
        tmp_path / "o",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "o" / "handSrc.json").read_text())
    assert "RANDOM WEIGHTS" in data["weights"]
    assert all("vertices_m" not in h for h in data["hands"])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: [d / "nope.jpg"], "does not exist"),
        (lambda d: [_write(d / "empty.jpg", b""), *RANDOM], "is empty"),
        (lambda d: [_write(d / "cut.jpg", PHOTO.read_bytes()[:9000]), *RANDOM], "truncated JPEG"),
        (lambda d: [_write(d / "junk.png", b"not an image"), *RANDOM], "not a readable image"),
        (lambda d: [PHOTO, "--checkpoint", _write(d / "bad.pth", b"junk")], "bad.pth"),
        (lambda d: [PHOTO, "--checkpoint", d / "none.pth"], "does not exist"),
        (lambda d: [PHOTO, "--random-weights", "resnet18", "--hand-model", d], "MANO_RIGHT.pkl"),
        (lambda d: [PHOTO, "--fx", "500"], "all of --fx --fy --cx --cy"),
        (
            lambda d: [PHOTO, *RANDOM, "--device", "cpu", "--precision", "float16"],
            "use bfloat16 on a CPU",
        ),
        (
            lambda d: [PHOTO, *RANDOM, "--second-look-size", "10"],
            "decode.second_look_size: 10 must be 0 or an integer in [64, 2048]",
        ),
        (
            lambda d: [PHOTO, *RANDOM, "--second-look-fraction", "1.5"],
            "decode.second_look_fraction: 1.5 must be within [0.05, 1]",
        ),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path: Path, make, message: str) -> None:
    result = _run_here(*make(tmp_path), "--out", tmp_path / "o", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
