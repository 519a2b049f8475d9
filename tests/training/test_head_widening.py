"""A trained network continued with a wider params head: same outputs at the start, then the new
hidden units learn; only a wider params head may differ from the init checkpoint."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.checkpoint import load_checkpoint, save_checkpoint
from smhr_core.config import ConfigError, ModelConfig
from smhr_core.network import SMHRNet
from training.config import load_training_config
from training.data_source import build_dataset
from training.head_widening import is_params_head_widening, widen_params_head
from training.trainer import Trainer

NARROW = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap"),
    neck_channels=32,
)
WIDE = dataclasses.replace(NARROW, params_head_channels=64)


def _trained_like(config: ModelConfig) -> SMHRNet:
    """A network whose params head has weights of a trained size (the init is ~1e-3)."""
    torch.manual_seed(0)
    model = SMHRNet(config).eval()
    with torch.no_grad():
        for conv in (model.params[0], model.params[2]):
            conv.weight.normal_(0.0, 0.05)
            conv.bias.normal_(0.0, 0.5)
    return model


def test_the_widened_network_computes_what_the_narrow_one_did() -> None:
    narrow = _trained_like(NARROW)
    wide = SMHRNet(WIDE).eval()
    state = widen_params_head(narrow.state_dict(), WIDE, seed=3)
    wide.load_state_dict(state)
    assert wide.params[0].weight.shape == (64, 32, 3, 3)
    assert wide.params[2].weight.shape == (122, 64, 1, 1)
    # The new units are live features (not zero) that nothing reads yet.
    assert wide.params[0].weight[32:].abs().amax() > 0.01
    assert torch.count_nonzero(wide.params[2].weight[:, 32:]) == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before, after = narrow(x), wide(x)
    for name in NARROW.heads:
        torch.testing.assert_close(after[name], before[name], rtol=0.0, atol=0.0)
    again = widen_params_head(narrow.state_dict(), WIDE, seed=3)
    assert torch.equal(again["params.0.weight"], state["params.0.weight"])


def test_only_a_strictly_wider_params_head_counts_as_widening() -> None:
    assert is_params_head_widening(NARROW, WIDE)
    assert not is_params_head_widening(WIDE, NARROW)
    assert not is_params_head_widening(NARROW, NARROW)
    assert not is_params_head_widening(NARROW, dataclasses.replace(WIDE, neck_channels=40))
    with pytest.raises(ValueError, match="not wider than 64"):
        widen_params_head(SMHRNet(WIDE).state_dict(), WIDE, seed=0)


def test_wide_params_head_round_trips_and_is_inferred_without_metadata(tmp_path) -> None:
    model = _trained_like(WIDE)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "w.pth", model, WIDE, epoch=1))
    assert loaded.config == WIDE and loaded.config.params_hidden_channels == 64
    bare = tmp_path / "bare.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, bare)
    inferred = load_checkpoint(bare)
    assert inferred.config.params_head_channels == 64 and inferred.config.neck_channels == 32
    assert ModelConfig.from_dict(WIDE.to_dict()) == WIDE


@pytest.mark.parametrize("width", [20, 2048, True, "wide"])
def test_params_head_channels_is_validated(width) -> None:
    with pytest.raises(ConfigError, match=r"model\.params_head_channels"):
        dataclasses.replace(NARROW, params_head_channels=width)


def _settings(base: list[str], tmp_path, init: str, width: int | None) -> list[str]:
    return [
        *base,
        f"model.params_head_channels={'null' if width is None else width}",
        f"init_checkpoint={init}",
        f"output_dir={tmp_path / 'run'}",
    ]


def test_training_continues_a_narrower_checkpoint_and_the_new_units_learn(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    narrow = _trained_like(NARROW)
    init = save_checkpoint(tmp_path / "narrow.pth", narrow, NARROW, epoch=1)
    config = load_training_config(None, _settings(tiny_run_settings, tmp_path, str(init), 64))
    samples = list(build_dataset(config.data, config.model.input_resolution))
    trainer = Trainer(config, dataset=samples)
    network = trainer.model
    # Both in the trainer's layout (channels-last), so that only the widening could differ.
    narrow.to(memory_format=trainer.memory_format)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=trainer.memory_format)
    network.eval()
    with torch.no_grad():
        torch.testing.assert_close(network(x)["params"], narrow(x)["params"], rtol=0.0, atol=0.0)
    trainer.set_train_mode()
    trainer.train_step(default_collate(samples), photometric=False)
    assert torch.count_nonzero(network.params[2].weight[:, 32:]) > 0


def test_training_refuses_an_init_checkpoint_of_another_network(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    init = save_checkpoint(tmp_path / "wide.pth", _trained_like(WIDE), WIDE, epoch=1)
    config = load_training_config(None, _settings(tiny_run_settings, tmp_path, str(init), None))
    samples = list(build_dataset(config.data, config.model.input_resolution))
    with pytest.raises(ConfigError, match=r"only a wider model\.params_head_channels"):
        Trainer(config, dataset=samples)
