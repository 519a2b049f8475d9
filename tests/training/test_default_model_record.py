"""The embedded default is what the repository says it is: at most 25 MB, and its metadata records
config/default_model.yaml (the settings of its last run), the hand model and the training commit,
so that `python -m training train --config config/default_model.yaml` retrains it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from smhr_core.checkpoint import load_checkpoint
from smhr_core.predictor import DEFAULT_CHECKPOINT
from training.config import TrainingConfig, load_training_config

REPO = Path(__file__).resolve().parents[2]
MAX_BYTES = 25_000_000


def test_embedded_default_records_the_repository_config() -> None:
    assert DEFAULT_CHECKPOINT.stat().st_size <= MAX_BYTES
    loaded = load_checkpoint(DEFAULT_CHECKPOINT)
    recorded = TrainingConfig.from_dict(loaded.meta["training"])
    repository = load_training_config(REPO / "config" / "default_model.yaml")
    # Where a run starts from and writes to belong to the machine it ran on, not to the settings.
    per_machine = {"init_checkpoint": "", "resume": "", "output_dir": "runs/default_model"}
    assert dataclasses.replace(recorded, **per_machine) == dataclasses.replace(
        repository, **per_machine
    )
    assert loaded.config == repository.model
    assert re.fullmatch(r"[0-9a-f]{40}", loaded.meta["git_commit"])
    assert loaded.meta["hand_model_id"].startswith("open_hand/")
