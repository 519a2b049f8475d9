"""Continue a trained network with added modules: the trained weights stay, the new modules start
from their initialisation (e.g. the `keypoints` head added to a model trained without it, or the
`keypoint_skip` added to one with that head; the skip starts at zero output, so the continued
model first computes exactly what the trained one did)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from smhr_core.config import ModelConfig

KEYPOINT_SKIP = "keypoint_skip"
"""State-dict prefix of `ModelConfig.keypoint_skip`'s module."""


def added_modules(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """The modules `new` adds to `old` (its extra heads, then `keypoint_skip` if `new` turns it
    on) when that is the only difference, else ()."""
    kept = tuple(h for h in new.heads if h in old.heads)
    extra = tuple(h for h in new.heads if h not in old.heads)
    same_otherwise = (
        dataclasses.replace(new, heads=old.heads, keypoint_skip=old.keypoint_skip) == old
    )
    if not same_otherwise or kept != old.heads or (old.keypoint_skip and not new.keypoint_skip):
        return ()
    skip = (KEYPOINT_SKIP,) if new.keypoint_skip and not old.keypoint_skip else ()
    return extra + skip


def with_added_modules(
    state: dict[str, torch.Tensor], network: nn.Module, modules: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """`state` completed with `network`'s freshly initialised weights of `modules`.

    Raises:
        ValueError: `state` already holds weights of one of `modules`.
    """
    prefixes = tuple(f"{m}." for m in modules)
    clash = sorted(k for k in state if k.startswith(prefixes))
    if clash:
        raise ValueError(f"adding {list(modules)}: the state dict already holds {clash[:3]}")
    fresh = {k: v for k, v in network.state_dict().items() if k.startswith(prefixes)}
    return {**state, **fresh}
