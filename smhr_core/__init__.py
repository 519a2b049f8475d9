"""smhr_core: the SMHR multi-hand reconstruction model in pure PyTorch (no ROS).

Public API (imported lazily so that `smhr_core.config` stays cheap to import):

- `Predictor`, `PredictorError` — images in, `ImageHands` out (`smhr_core.predictor`)
- `Hand`, `ImageHands`, `Handedness` — results (`smhr_core.results`)
- `ModelConfig`, `DecodeConfig`, `ConfigError` — settings (`smhr_core.config`)
- `load_checkpoint`, `save_checkpoint`, `CheckpointError` — checkpoints (`smhr_core.checkpoint`)
- `HandModel`, `HandModelError` — MANO-format hand models (`smhr_core.hand_model`)
- `SMHRNet` — the network (`smhr_core.network`)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "predictor",
    "PredictorError": "predictor",
    "Hand": "results",
    "ImageHands": "results",
    "Handedness": "results",
    "ModelConfig": "config",
    "DecodeConfig": "config",
    "ConfigError": "config",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "HandModel": "hand_model",
    "HandModelError": "hand_model",
    "SMHRNet": "network",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'smhr_core' has no attribute {name!r}")
    return getattr(importlib.import_module(f"smhr_core.{_EXPORTS[name]}"), name)
