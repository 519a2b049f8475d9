"""A trained network continued with a wider params or keypoints head: same outputs at the start,
then the new hidden units learn; only a wider head may differ from the init checkpoint."""

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
from training.head_addition import added_modules
from training.head_widening import widen_head, widened_heads
from training.trainer import Trainer

NARROW = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap", "keypoints"),
    neck_channels=32,
)
WIDER = {
    "params": dataclasses.replace(NARROW, params_head_channels=64),
    "keypoints": dataclasses.replace(NARROW, keypoint_head_channels=64),
}
OUTPUTS = {"params": 122, "keypoints": 23}


def _trained_like(config: ModelConfig) -> SMHRNet:
    """A network whose widenable heads have weights of a trained size (the init is ~1e-3)."""
    torch.manual_seed(0)
    model = SMHRNet(config).eval()
    with torch.no_grad():
        for name in WIDER:
            for conv in (getattr(model, name)[0], getattr(model, name)[2]):
                conv.weight.normal_(0.0, 0.05)
                conv.bias.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("head", list(WIDER))
def test_the_widened_network_computes_what_the_narrow_one_did(head: str) -> None:
    narrow = _trained_like(NARROW)
    config = WIDER[head]
    wide = SMHRNet(config).eval()
    state = widen_head(narrow.state_dict(), head, 64, seed=3)
    wide.load_state_dict(state)
    widened = getattr(wide, head)
    assert widened[0].weight.shape == (64, 32, 3, 3)
    assert widened[2].weight.shape == (OUTPUTS[head], 64, 1, 1)
    # The new units are live features (not zero) that nothing reads yet.
    assert widened[0].weight[32:].abs().amax() > 0.01
    assert torch.count_nonzero(widened[2].weight[:, 32:]) == 0
    other = next(n for n in WIDER if n != head)
    assert getattr(wide, other)[0].weight.shape == (32, 32, 3, 3)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before, after = narrow(x), wide(x)
    for name in NARROW.heads:
        torch.testing.assert_close(after[name], before[name], rtol=0.0, atol=0.0)
    again = widen_head(narrow.state_dict(), head, 64, seed=3)
    assert torch.equal(again[f"{head}.0.weight"], state[f"{head}.0.weight"])


def test_only_strictly_wider_heads_count_as_widening() -> None:
    both = dataclasses.replace(WIDER["params"], keypoint_head_channels=64)
    assert widened_heads(NARROW, WIDER["params"]) == ("params",)
    assert widened_heads(NARROW, WIDER["keypoints"]) == ("keypoints",)
    assert widened_heads(NARROW, both) == ("params", "keypoints")
    assert widened_heads(WIDER["keypoints"], both) == ("params",)
    assert widened_heads(WIDER["keypoints"], NARROW) == ()
    assert widened_heads(NARROW, NARROW) == ()
    narrower = dataclasses.replace(both, keypoint_head_channels=16)
    assert widened_heads(WIDER["keypoints"], narrower) == ()
    other = dataclasses.replace(WIDER["keypoints"], neck_channels=40)
    assert widened_heads(NARROW, other) == ()
    with pytest.raises(ValueError, match="keypoints head: the new width 64 is not wider than 64"):
        widen_head(SMHRNet(WIDER["keypoints"]).state_dict(), "keypoints", 64, seed=0)
    no_keypoints = dataclasses.replace(NARROW, heads=("hm", "params", "handmap"))
    with pytest.raises(ValueError, match=r"has no 'keypoints\.0\.weight'"):
        widen_head(SMHRNet(no_keypoints).state_dict(), "keypoints", 64, seed=0)


def test_an_added_head_may_have_its_own_width_but_a_kept_one_may_not_change() -> None:
    no_keypoints = dataclasses.replace(NARROW, heads=("hm", "params", "handmap"))
    assert added_modules(no_keypoints, WIDER["keypoints"]) == ("keypoints",)
    assert added_modules(NARROW, dataclasses.replace(WIDER["keypoints"], keypoint_skip=True)) == ()


@pytest.mark.parametrize("head", list(WIDER))
def test_wide_heads_round_trip_and_are_inferred_without_metadata(tmp_path, head: str) -> None:
    config = WIDER[head]
    model = _trained_like(config)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "w.pth", model, config, epoch=1))
    assert loaded.config == config and loaded.config.head_hidden_channels(head) == 64
    bare = tmp_path / "bare.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, bare)
    inferred = load_checkpoint(bare)
    assert inferred.config.head_hidden_channels(head) == 64
    assert inferred.config.neck_channels == 32
    assert inferred.config.head_hidden_channels("hm") == 32
    assert ModelConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("field", ["params_head_channels", "keypoint_head_channels"])
@pytest.mark.parametrize("width", [20, 2048, True, "wide"])
def test_head_widths_are_validated(field: str, width) -> None:
    with pytest.raises(ConfigError, match=rf"model\.{field}: .* multiple of 8 in \[16, 1024\]"):
        dataclasses.replace(NARROW, **{field: width})


def test_a_keypoints_width_needs_the_keypoints_head() -> None:
    message = r"model\.keypoint_head_channels: .*needs the `keypoints`"
    with pytest.raises(ConfigError, match=message):
        ModelConfig(heads=("hm", "params", "handmap"), keypoint_head_channels=64)


def _settings(base: list[str], tmp_path, init: str, field: str, width: int | None) -> list[str]:
    return [
        *base,
        "model.heads=[hm, params, handmap, keypoints]",
        f"model.{field}={'null' if width is None else width}",
        f"init_checkpoint={init}",
        f"output_dir={tmp_path / 'run'}",
    ]


@pytest.mark.parametrize("head", list(WIDER))
def test_training_continues_a_narrower_checkpoint_and_the_new_units_learn(
    tmp_path, tiny_run_settings: list[str], head: str
) -> None:
    narrow = _trained_like(NARROW)
    init = save_checkpoint(tmp_path / "narrow.pth", narrow, NARROW, epoch=1)
    field = "params_head_channels" if head == "params" else "keypoint_head_channels"
    settings = _settings(tiny_run_settings, tmp_path, str(init), field, 64)
    config = load_training_config(None, settings)
    samples = list(build_dataset(config.data, config.model.input_resolution))
    trainer = Trainer(config, dataset=samples)
    network = trainer.model
    # Both in the trainer's layout (channels-last), so that only the widening could differ.
    narrow.to(memory_format=trainer.memory_format)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=trainer.memory_format)
    network.eval()
    with torch.no_grad():
        torch.testing.assert_close(network(x)[head], narrow(x)[head], rtol=0.0, atol=0.0)
    trainer.set_train_mode()
    trainer.train_step(default_collate(samples), photometric=False)
    assert torch.count_nonzero(getattr(network, head)[2].weight[:, 32:]) > 0


def test_training_refuses_an_init_checkpoint_of_another_network(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    init = save_checkpoint(
        tmp_path / "wide.pth", _trained_like(WIDER["keypoints"]), WIDER["keypoints"], epoch=1
    )
    settings = _settings(tiny_run_settings, tmp_path, str(init), "keypoint_head_channels", None)
    config = load_training_config(None, settings)
    samples = list(build_dataset(config.data, config.model.input_resolution))
    with pytest.raises(ConfigError, match=r"only a wider model\.params_head_channels or model\."):
        Trainer(config, dataset=samples)
