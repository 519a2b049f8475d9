"""Continue a trained network with added modules: the trained weights stay, the new modules start
from their initialisation (e.g. the `keypoints` head added to a model trained without it, or the
`keypoint_skip`, `keypoint_context`, `keypoint_refine` or `keypoint_refine_wide` added to one with
that head; all start
at zero output, so the continued model first computes exactly what the trained one did)."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from smhr_core.config import HEAD_WIDTH_FIELDS, ModelConfig

OPTIONAL_MODULES = (
    "keypoint_skip",
    "keypoint_context",
    "keypoint_refine",
    "keypoint_refine_wide",
)
"""`ModelConfig` flags that each add a module of that name (and state-dict prefix), in order."""


def added_modules(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """The modules `new` adds to `old` (its extra heads, then each of `OPTIONAL_MODULES` that
    `new` turns on) when that is the only difference, else ()."""
    kept = tuple(h for h in new.heads if h in old.heads)
    extra = tuple(h for h in new.heads if h not in old.heads)
    flags = {m: getattr(old, m) for m in OPTIONAL_MODULES}
    # An added head may have its own width; a kept one must keep its width.
    widths = {field: getattr(old, field) for field in HEAD_WIDTH_FIELDS.values()}
    same_otherwise = dataclasses.replace(new, heads=old.heads, **flags, **widths) == old
    dropped = any(getattr(old, m) and not getattr(new, m) for m in OPTIONAL_MODULES)
    resized = any(new.head_hidden_channels(h) != old.head_hidden_channels(h) for h in kept)
    if not same_otherwise or kept != old.heads or dropped or resized:
        return ()
    turned_on = tuple(m for m in OPTIONAL_MODULES if getattr(new, m) and not getattr(old, m))
    return extra + turned_on


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
