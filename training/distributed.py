"""torchrun DistributedDataParallel: process group from the environment, samplers, rank-0 I/O.

`torchrun --nproc_per_node=N -m training train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; without WORLD_SIZE (or with 1) everything here is a no-op and the
run is a single process. Backend: nccl on CUDA, gloo on the CPU (unless configured).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Sampler

from smhr_core.config import ConfigError
from training.config import DistributedConfig


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files, logs and progress bars."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """`auto` -> cuda:LOCAL_RANK when CUDA is available, else cpu; `cuda` -> cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        device = f"cuda:{local_rank}"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but CUDA is not available")
    return torch.device(device)


def init_distributed(device: str, config: DistributedConfig) -> DistributedContext:
    """Join the process group described by torchrun's environment (if WORLD_SIZE > 1)."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = config.backend
        if backend == "auto":
            backend = "nccl" if resolved.type == "cuda" else "gloo"
        if backend == "nccl" and resolved.type != "cuda":
            raise ConfigError("distributed.backend: 'nccl' needs CUDA devices; use gloo on CPU")
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=resolved
    )


def wrap_model(model: nn.Module, ctx: DistributedContext, sync_bn: bool) -> nn.Module:
    """DDP-wrap `model` (already on `ctx.device`) when distributed; optional SyncBatchNorm."""
    if not ctx.is_distributed:
        return model
    if sync_bn:
        if ctx.device.type != "cuda":
            raise ConfigError(
                "distributed.sync_bn: SyncBatchNorm runs on CUDA only; set it to false on CPU "
                "(optim.freeze_batchnorm keeps BatchNorm on running statistics instead)"
            )
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EpochShuffleSampler(Sampler[int]):
    """Every index once per epoch, in an order fixed by `seed` and the epoch alone.

    The order does not depend on how many epochs this process has iterated, so a run resumed
    at epoch k draws what an uninterrupted run draws at epoch k (a generator seeded once would
    replay the first epochs' samples after a resume).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.length = len(dataset)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of epoch `epoch` (0-based)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


def make_sampler(
    dataset: Dataset, ctx: DistributedContext, shuffle: bool, seed: int
) -> Sampler | None:
    """A DistributedSampler when distributed, an `EpochShuffleSampler` when shuffling, else None.

    Call `set_epoch(epoch)` on the sampler (see `set_sampler_epoch`) so each epoch reshuffles.
    """
    if ctx.is_distributed:
        return DistributedSampler(
            dataset,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=True,
        )
    if shuffle:
        return EpochShuffleSampler(dataset, seed)
    return None


def set_sampler_epoch(sampler: Sampler | None, epoch: int) -> None:
    """Give the sampler its epoch (0-based) so its order depends on it."""
    if isinstance(sampler, (DistributedSampler, EpochShuffleSampler)):
        sampler.set_epoch(epoch)


def all_reduce_mean(value: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """Mean of a tensor over all processes (the tensor itself when not distributed)."""
    if not ctx.is_distributed:
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size


def barrier(ctx: DistributedContext) -> None:
    if ctx.is_distributed:
        dist.barrier()


def cleanup(ctx: DistributedContext) -> None:
    """Leave the process group (safe to call more than once)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()
