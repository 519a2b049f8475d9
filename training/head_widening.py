"""Continue a trained network with a wider `params` head, computing exactly what it computed.

The params head is conv3x3 (neck -> hidden) -> ReLU -> conv1x1 (hidden -> 122). Widening keeps
every trained hidden unit and adds new ones whose outgoing weights are zero, so the widened
network's outputs equal the checkpoint's at the first step; the new units' incoming weights are
drawn with the spread of the trained ones, so they start as active features that the outgoing
weights can learn to use.
"""

from __future__ import annotations

import dataclasses

import torch

from smhr_core.config import ModelConfig

_HIDDEN_WEIGHT = "params.0.weight"
_HIDDEN_BIAS = "params.0.bias"
_OUTPUT_WEIGHT = "params.2.weight"


def is_params_head_widening(old: ModelConfig, new: ModelConfig) -> bool:
    """Whether `new` is `old` with a strictly wider params head and nothing else changed."""
    same_otherwise = dataclasses.replace(new, params_head_channels=old.params_head_channels) == old
    return same_otherwise and new.params_hidden_channels > old.params_hidden_channels


def widen_params_head(
    state: dict[str, torch.Tensor], new: ModelConfig, seed: int
) -> dict[str, torch.Tensor]:
    """The state dict `state` (a network with a narrower params head) for the `new` config.

    Args:
        state: the trained network's state dict (unchanged).
        new: the wider configuration (see `is_params_head_widening`).
        seed: seeds the new units' incoming weights, so a run is reproducible.

    Raises:
        ValueError: `state` has no params head, or its head is not narrower than `new`'s.
    """
    if _HIDDEN_WEIGHT not in state or _OUTPUT_WEIGHT not in state:
        raise ValueError(f"widening the params head: the state dict has no {_HIDDEN_WEIGHT!r}")
    hidden_w, hidden_b, out_w = state[_HIDDEN_WEIGHT], state[_HIDDEN_BIAS], state[_OUTPUT_WEIGHT]
    old_width, width = int(hidden_w.shape[0]), new.params_hidden_channels
    if width <= old_width:
        raise ValueError(
            f"widening the params head: the new width {width} is not wider than {old_width}"
        )
    added = width - old_width
    generator = torch.Generator().manual_seed(int(seed))
    fresh = torch.randn((added, *hidden_w.shape[1:]), generator=generator, dtype=hidden_w.dtype)
    widened = dict(state)
    widened[_HIDDEN_WEIGHT] = torch.cat([hidden_w, fresh * hidden_w.std()], dim=0)
    widened[_HIDDEN_BIAS] = torch.cat([hidden_b, hidden_b.new_zeros(added)])
    widened[_OUTPUT_WEIGHT] = torch.cat(
        [out_w, out_w.new_zeros((out_w.shape[0], added, *out_w.shape[2:]))], dim=1
    )
    return widened
