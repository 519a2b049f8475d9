"""Continue a trained network with extra heads: the trained weights stay, the new heads start
from their initialisation (e.g. the `keypoints` head added to a model trained without it)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from smhr_core.config import ModelConfig


def added_heads(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """The heads `new` adds to `old` when that is the only difference, else ()."""
    kept = tuple(h for h in new.heads if h in old.heads)
    extra = tuple(h for h in new.heads if h not in old.heads)
    same_otherwise = dataclasses.replace(new, heads=old.heads) == old
    return extra if same_otherwise and kept == old.heads else ()


def with_added_heads(
    state: dict[str, torch.Tensor], network: nn.Module, heads: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """`state` completed with `network`'s freshly initialised weights of `heads`.

    Raises:
        ValueError: `state` already holds weights of one of `heads`.
    """
    prefixes = tuple(f"{h}." for h in heads)
    clash = sorted(k for k in state if k.startswith(prefixes))
    if clash:
        raise ValueError(f"adding heads {list(heads)}: the state dict already holds {clash[:3]}")
    fresh = {k: v for k, v in network.state_dict().items() if k.startswith(prefixes)}
    return {**state, **fresh}
