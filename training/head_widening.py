"""Continue a trained network with a wider `params` or `keypoints` head, computing exactly what
it computed.

Each head is conv3x3 (neck -> hidden) -> ReLU -> conv1x1 (hidden -> outputs). Widening keeps
every trained hidden unit and adds new ones whose outgoing weights are zero, so the widened
network's outputs equal the checkpoint's at the first step; the new units' incoming weights are
drawn with the spread of the trained ones, so they start as active features that the outgoing
weights can learn to use.
"""

from __future__ import annotations

import dataclasses

import torch

from smhr_core.config import HEAD_WIDTH_FIELDS, ModelConfig


def widened_heads(old: ModelConfig, new: ModelConfig) -> tuple[str, ...]:
    """The heads that `new` widens, if `new` is `old` with one or more strictly wider heads of
    `HEAD_WIDTH_FIELDS` and nothing else changed; else ()."""
    kept = {field: getattr(old, field) for field in HEAD_WIDTH_FIELDS.values()}
    if dataclasses.replace(new, **kept) != old:
        return ()
    names = tuple(
        name
        for name in HEAD_WIDTH_FIELDS
        if name in new.heads and new.head_hidden_channels(name) != old.head_hidden_channels(name)
    )
    if any(new.head_hidden_channels(n) < old.head_hidden_channels(n) for n in names):
        return ()
    return names


def widen_head(
    state: dict[str, torch.Tensor], name: str, width: int, seed: int
) -> dict[str, torch.Tensor]:
    """The state dict `state` with head `name`'s hidden layer widened to `width` units.

    Args:
        state: the trained network's state dict (unchanged).
        name: a head of `HEAD_WIDTH_FIELDS`.
        width: the new hidden width (see `widened_heads`).
        seed: seeds the new units' incoming weights, so a run is reproducible.

    Raises:
        ValueError: `state` has no such head, or its head is not narrower than `width`.
    """
    hidden_key, bias_key, output_key = f"{name}.0.weight", f"{name}.0.bias", f"{name}.2.weight"
    if hidden_key not in state or output_key not in state:
        raise ValueError(f"widening the {name} head: the state dict has no {hidden_key!r}")
    hidden_w, hidden_b, out_w = state[hidden_key], state[bias_key], state[output_key]
    old_width = int(hidden_w.shape[0])
    if width <= old_width:
        raise ValueError(
            f"widening the {name} head: the new width {width} is not wider than {old_width}"
        )
    added = width - old_width
    generator = torch.Generator().manual_seed(int(seed))
    fresh = torch.randn((added, *hidden_w.shape[1:]), generator=generator, dtype=hidden_w.dtype)
    widened = dict(state)
    widened[hidden_key] = torch.cat([hidden_w, fresh * hidden_w.std()], dim=0)
    widened[bias_key] = torch.cat([hidden_b, hidden_b.new_zeros(added)])
    widened[output_key] = torch.cat(
        [out_w, out_w.new_zeros((out_w.shape[0], added, *out_w.shape[2:]))], dim=1
    )
    return widened
