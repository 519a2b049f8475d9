"""`optim.ema_decay`: checkpoints hold the exponential moving average of the weights, and a
resumed run continues both the average and the live weights."""

from __future__ import annotations

from pathlib import Path

import torch

from smhr_core.checkpoint import load_checkpoint
from training.config import load_training_config
from training.data_source import build_dataset
from training.trainer import LAST_CHECKPOINT, LIVE_WEIGHTS, Trainer, split_training_state

DECAY = 0.5


def _settings(tiny_run_settings: list[str], output: Path, *extra: str) -> list[str]:
    return [
        *tiny_run_settings,
        f"optim.ema_decay={DECAY}",
        "optim.lr=1e-3",
        "checkpoint_every=1",
        "log.tensorboard=false",
        "log.images_every=0",
        f"output_dir={output}",
        *extra,
    ]


def _samples(settings: list[str]) -> list:
    config = load_training_config(None, settings)
    dataset = build_dataset(config.data, config.model.input_resolution)
    return [dataset[i] for i in range(len(dataset))]


def _floats(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}


def test_checkpoints_hold_the_exponential_average(
    tiny_run_settings: list[str], tmp_path: Path
) -> None:
    settings = _settings(tiny_run_settings, tmp_path, "optim.epochs=3")
    trainer = Trainer(load_training_config(None, settings), dataset=_samples(settings))
    live = []
    for epoch in range(3):  # two scenes at batch 2: one step per epoch
        trainer.train_epoch(epoch)
        live.append(_floats(trainer.model.state_dict()))
    expected = dict(live[0])
    for weights in live[1:]:
        expected = {k: DECAY * expected[k] + (1 - DECAY) * weights[k] for k in expected}
    trainer.epoch = 3
    trainer.save_checkpoint()

    saved = load_checkpoint(tmp_path / "epoch_0003.pth")
    state = saved.model.state_dict()
    moved = 0
    for name, value in expected.items():
        torch.testing.assert_close(state[name], value, rtol=1e-5, atol=1e-7)
        moved += int(not torch.allclose(state[name], live[-1][name]))
    assert moved > 50, "the average should differ from the last weights"
    optimizer_state, live_weights = split_training_state(saved.optimizer_state)
    assert optimizer_state is not None and "param_groups" in optimizer_state
    for name, value in live[-1].items():
        torch.testing.assert_close(live_weights[name], value)


def test_a_resumed_run_continues_the_average_and_the_live_weights(
    tiny_run_settings: list[str], tmp_path: Path
) -> None:
    settings = _settings(tiny_run_settings, tmp_path / "whole", "optim.epochs=3")
    samples = _samples(settings)
    Trainer(load_training_config(None, settings), dataset=samples).fit()
    resumed_settings = _settings(
        tiny_run_settings,
        tmp_path / "resumed",
        "optim.epochs=3",
        f"resume={tmp_path / 'whole' / 'epoch_0002.pth'}",
    )
    resumed = Trainer(load_training_config(None, resumed_settings), dataset=samples)
    assert resumed.step == 2 and int(resumed.average.n_averaged) == 2
    resumed.fit()

    whole = load_checkpoint(tmp_path / "whole" / LAST_CHECKPOINT)
    again = load_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)
    for name, value in _floats(whole.model.state_dict()).items():
        torch.testing.assert_close(again.model.state_dict()[name], value, rtol=1e-5, atol=1e-7)
    whole_live = whole.optimizer_state[LIVE_WEIGHTS]
    for name, value in _floats(again.optimizer_state[LIVE_WEIGHTS]).items():
        torch.testing.assert_close(value, whole_live[name], rtol=1e-5, atol=1e-7)


def test_without_averaging_the_checkpoint_holds_the_live_weights(
    tiny_run_settings: list[str], tmp_path: Path
) -> None:
    settings = _settings(tiny_run_settings, tmp_path, "optim.epochs=1", "optim.ema_decay=0")
    trainer = Trainer(load_training_config(None, settings), dataset=_samples(settings))
    trainer.fit()
    assert trainer.average is None
    saved = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    assert LIVE_WEIGHTS not in saved.optimizer_state
    for name, value in _floats(trainer.model.state_dict()).items():
        torch.testing.assert_close(saved.model.state_dict()[name], value)
