"""Two CPU processes under torchrun (gloo) take the same first step as one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from smhr_core.config import ConfigError
from training.config import DistributedConfig
from training.distributed import DistributedContext, init_distributed, wrap_model

WORKER = Path(__file__).with_name("ddp_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _run(args: list[str], out: Path) -> None:
    result = subprocess.run(
        [sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_two_process_gloo_matches_one_process(tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    single.mkdir()
    double.mkdir()
    _run([str(WORKER), str(single), "4"], single)
    _run(
        [
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            "--nproc-per-node=2",
            "--master-addr=127.0.0.1",
            f"--master-port={_free_port()}",
            str(WORKER),
            str(double),
            "2",
        ],
        double,
    )
    one = torch.load(single / "rank0.pt", weights_only=True)
    ranks = [torch.load(double / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert one["world_size"] == 1 and all(r["world_size"] == 2 for r in ranks)
    # Each process saw half the batch; the averaged loss is the whole batch's loss.
    assert float(ranks[0]["loss"]) == float(ranks[1]["loss"])
    assert abs(float(ranks[0]["loss"]) - float(one["loss"])) <= 1e-4 * abs(float(one["loss"]))
    # All processes started from the same weights; gradients were averaged across processes,
    # so each rank took the whole batch's gradient.
    for name, grad in one["grads"].items():
        scale = float(grad.abs().max()) + 1e-12
        for rank in ranks:
            torch.testing.assert_close(rank["grads"][name], grad, rtol=1e-3, atol=1e-4 * scale)
    # And reached the single process's weights. Adam's first step is lr * g / (|g| + eps), so
    # float rounding of a near-zero gradient can move a single weight by up to lr: count those.
    moved = total = off = 0
    for name, value in one["params"].items():
        for rank in ranks:
            torch.testing.assert_close(rank["initial"][name], one["initial"][name])
            off += int(((rank["params"][name] - value).abs() > 1e-5).sum())
        moved += int((value != one["initial"][name]).sum())
        total += value.numel()
    assert moved > total // 2
    assert off <= 1e-5 * total


def test_single_process_context_and_cpu_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    ctx = init_distributed("cpu", DistributedConfig())
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, ctx, sync_bn=True) is model  # nothing to synchronise alone
    two = DistributedContext(rank=1, world_size=2, local_rank=1, device=torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"distributed\.sync_bn"):
        wrap_model(model, two, sync_bn=True)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        init_distributed("cpu", DistributedConfig())
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"distributed\.backend.*nccl"):
        init_distributed("cpu", DistributedConfig(backend="nccl"))
