"""Uniform weight averaging of checkpoints ("model soup", Wortsman et al., ICML 2022).

Runs that start from the same weights and train on different scenes end in nearby points of
weight space; their average is often better than each of them, at no inference cost. The
average keeps the metadata of the last checkpoint (its training settings, commit and hand model)
and records every source under `averaged_from`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from smhr_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

AVERAGED_FROM = "averaged_from"
"""Metadata key: per source checkpoint, its file name, epoch, step, commit and training settings."""


def _source_record(path: Path, meta: dict[str, Any], epoch: int | None) -> dict[str, Any]:
    return {
        "file": path.name,
        "epoch": epoch,
        "step": meta.get("step"),
        "git_commit": meta.get("git_commit"),
        "training": meta.get("training"),
    }


def average_checkpoints(
    sources: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> Path:
    """Write the uniform average of the networks in `sources` (at least two) to `out`.

    Every source must hold the same model configuration and, where recorded, the same hand
    model. Floating-point tensors (weights and BatchNorm statistics) are averaged; integer ones
    (BatchNorm batch counters) are taken from the last source. No optimizer state is kept: the
    average is for inference, or for a new run's `init_checkpoint`. Returns the written path.
    """
    paths = [Path(p) for p in sources]
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    loaded = [load_checkpoint(p, map_location="cpu") for p in paths]
    last_path, last = paths[-1], loaded[-1]
    hand_model = last.meta.get("hand_model_id")
    for path, other in zip(paths, loaded, strict=True):
        if other.config != last.config:
            raise CheckpointError(
                f"{path}: holds {other.config.to_dict()}, but {last_path} holds "
                f"{last.config.to_dict()}; only networks of one configuration can be averaged"
            )
        recorded = other.meta.get("hand_model_id")
        if recorded and hand_model and recorded != hand_model:
            raise CheckpointError(
                f"{path}: trained with hand model {recorded!r}, but {last_path} with {hand_model!r}"
            )
    states = [c.model.state_dict() for c in loaded]
    averaged = {}
    for name, value in states[-1].items():
        if value.is_floating_point():
            averaged[name] = torch.stack([s[name] for s in states]).mean(dim=0)
        else:
            averaged[name] = value
    network = last.model
    network.load_state_dict(averaged)
    meta = dict(last.meta)
    meta[AVERAGED_FROM] = [
        _source_record(p, c.meta, c.report.epoch) for p, c in zip(paths, loaded, strict=True)
    ]
    return save_checkpoint(out, network, last.config, int(last.report.epoch or 0), meta=meta)
