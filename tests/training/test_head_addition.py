"""A trained network continued with an added head (the `keypoints` head), the keypoint skip, the
keypoint context or the keypoint refinements: the trained parts compute what they did, the new
module starts from its initialisation and learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.checkpoint import load_checkpoint, save_checkpoint
from smhr_core.config import ConfigError, ModelConfig
from smhr_core.network import HEATMAP_BIAS, KEYPOINT_JOINTS, SMHRNet
from training.config import load_training_config
from training.data_source import build_dataset
from training.head_addition import added_modules, with_added_modules
from training.trainer import Trainer

BASE = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap"),
    neck_channels=32,
)
WITH_KEYPOINTS = dataclasses.replace(BASE, heads=(*BASE.heads, "keypoints"))


def test_only_added_heads_count() -> None:
    assert added_modules(BASE, WITH_KEYPOINTS) == ("keypoints",)
    assert added_modules(WITH_KEYPOINTS, BASE) == ()
    assert added_modules(BASE, BASE) == ()
    assert added_modules(BASE, dataclasses.replace(WITH_KEYPOINTS, neck_channels=40)) == ()
    reordered = dataclasses.replace(BASE, heads=("hm", "handmap", "params", "keypoints"))
    assert added_modules(BASE, reordered) == ()
    with_skip = dataclasses.replace(WITH_KEYPOINTS, keypoint_skip=True)
    assert added_modules(WITH_KEYPOINTS, with_skip) == ("keypoint_skip",)
    assert added_modules(BASE, with_skip) == ("keypoints", "keypoint_skip")
    assert added_modules(with_skip, WITH_KEYPOINTS) == ()
    assert added_modules(with_skip, with_skip) == ()
    with_both = dataclasses.replace(with_skip, keypoint_context=True)
    assert added_modules(with_skip, with_both) == ("keypoint_context",)
    assert added_modules(BASE, with_both) == ("keypoints", "keypoint_skip", "keypoint_context")
    assert added_modules(with_both, with_skip) == ()
    with_refine = dataclasses.replace(with_both, keypoint_refine=True)
    assert added_modules(with_both, with_refine) == ("keypoint_refine",)
    assert added_modules(with_refine, with_both) == ()
    with_wide = dataclasses.replace(with_refine, keypoint_refine_wide=True)
    assert added_modules(with_refine, with_wide) == ("keypoint_refine_wide",)
    assert added_modules(with_both, with_wide) == ("keypoint_refine", "keypoint_refine_wide")
    assert added_modules(with_wide, with_refine) == ()
    state = SMHRNet(WITH_KEYPOINTS).state_dict()
    with pytest.raises(ValueError, match="already holds"):
        with_added_modules(state, SMHRNet(WITH_KEYPOINTS), ("keypoints",))


def test_keypoints_head_layout_and_round_trip(tmp_path) -> None:
    model = SMHRNet(WITH_KEYPOINTS)
    assert model.keypoints[2].out_channels == KEYPOINT_JOINTS + 2
    bias = model.keypoints[2].bias
    assert torch.all(bias[:KEYPOINT_JOINTS] == HEATMAP_BIAS)
    assert torch.all(bias[KEYPOINT_JOINTS:] == 0.0)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "k.pth", model, WITH_KEYPOINTS, epoch=1))
    assert loaded.config == WITH_KEYPOINTS
    bare = tmp_path / "bare.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, bare)
    assert "keypoints" in load_checkpoint(bare).config.heads


def continue_and_check_unchanged(
    tmp_path, tiny_run_settings: list[str], trained_config: ModelConfig, added: list[str]
) -> Trainer:
    """A trainer continuing a saved random network of `trained_config` with the `added` settings;
    the modules the two share compute exactly what they did."""
    torch.manual_seed(0)
    trained = SMHRNet(trained_config).eval()
    init = save_checkpoint(tmp_path / "trained.pth", trained, trained_config, epoch=1)
    settings = [
        *tiny_run_settings,
        *added,
        f"init_checkpoint={init}",
        f"output_dir={tmp_path / 'run'}",
    ]
    config = load_training_config(None, settings)
    samples = list(build_dataset(config.data, config.model.input_resolution))
    trainer = Trainer(config, dataset=samples)
    trained.to(memory_format=trainer.memory_format)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=trainer.memory_format)
    trainer.model.eval()
    with torch.no_grad():
        before, after = trained(x), trainer.model(x)
    for name in trained_config.heads:
        torch.testing.assert_close(after[name], before[name], rtol=0.0, atol=0.0)
    trainer.set_train_mode()
    return trainer


def test_training_adds_the_head_to_a_checkpoint_without_it(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    trainer = continue_and_check_unchanged(
        tmp_path, tiny_run_settings, BASE, ["model.heads=[hm,params,handmap,keypoints]"]
    )
    network = trainer.model
    start = network.keypoints[2].weight.detach().clone()
    loss, _, _ = trainer.train_step(default_collate(trainer.dataset), photometric=False)
    assert float(loss.keypoint_heatmap.detach()) > 0.0
    assert float(loss.keypoint_offset.detach()) > 0.0
    assert not torch.equal(network.keypoints[2].weight, start)


WITH_REFINE = dataclasses.replace(WITH_KEYPOINTS, keypoint_refine=True)


@pytest.mark.parametrize(
    ("trained_config", "module", "last"),
    [
        (WITH_KEYPOINTS, "keypoint_skip", 2),
        (WITH_KEYPOINTS, "keypoint_context", 7),
        (WITH_KEYPOINTS, "keypoint_refine", 6),
        (WITH_REFINE, "keypoint_refine_wide", 8),
    ],
)
def test_training_adds_a_keypoint_module_to_a_checkpoint_without_it(
    tmp_path, tiny_run_settings: list[str], trained_config: ModelConfig, module: str, last: int
) -> None:
    kept = ["model.keypoint_refine=true"] if trained_config.keypoint_refine else []
    trainer = continue_and_check_unchanged(
        tmp_path,
        tiny_run_settings,
        trained_config,
        ["model.heads=[hm,params,handmap,keypoints]", *kept, f"model.{module}=true"],
    )
    # The module's output layer starts at zero; its first step moves it (the layers before it
    # get a gradient only from then on).
    for _ in range(2):
        loss, _, _ = trainer.train_step(default_collate(trainer.dataset), photometric=False)
    assert float(loss.keypoint_heatmap.detach()) > 0.0
    assert getattr(trainer.model, module)[last].weight.abs().max() > 0.0
    saved = load_checkpoint(trainer.save_checkpoint())
    assert getattr(saved.config, module)
    bare = tmp_path / "bare.pth"
    torch.save({"epoch": 1, "state_dict": saved.model.state_dict()}, bare)
    # A bare state dict does not record the input side; everything else is read from its keys.
    assert getattr(load_checkpoint(bare).config, module)


def test_an_added_module_can_learn_at_a_scaled_rate(tmp_path, tiny_run_settings: list[str]) -> None:
    trainer = continue_and_check_unchanged(
        tmp_path,
        tiny_run_settings,
        WITH_KEYPOINTS,
        [
            "model.heads=[hm,params,handmap,keypoints]",
            "model.keypoint_refine=true",
            "optim.lr=1e-3",
            "optim.scaled_modules=[keypoint_refine]",
            "optim.module_lr_scale=10",
        ],
    )
    groups = trainer.optimizer.param_groups
    assert [(g["lr"], g["lr_scale"]) for g in groups] == [(1e-3, 1.0), (1e-2, 10.0)]
    refine = {id(p) for p in trainer.model.keypoint_refine.parameters()}
    assert {id(p) for p in groups[1]["params"]} == refine
    before = {
        "head": trainer.model.keypoints[2].weight.detach().clone(),
        "refine": trainer.model.keypoint_refine[6].weight.detach().clone(),
    }
    trainer.train_step(default_collate(trainer.dataset), photometric=False)
    # Adam's first step moves each weight with a gradient by its group's rate.
    moved_head = (trainer.model.keypoints[2].weight.detach() - before["head"]).abs().max()
    moved_refine = (trainer.model.keypoint_refine[6].weight.detach() - before["refine"]).abs().max()
    assert float(moved_head) == pytest.approx(1e-3, rel=0.01)
    assert float(moved_refine) == pytest.approx(1e-2, rel=0.01)


def test_scaled_modules_must_be_modules_of_the_network(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    settings = [*tiny_run_settings, "optim.scaled_modules=[keypoint_refine]"]
    config = load_training_config(None, [*settings, f"output_dir={tmp_path}"])
    samples = list(build_dataset(config.data, config.model.input_resolution))
    with pytest.raises(ConfigError, match=r"optim\.scaled_modules: \['keypoint_refine'\]"):
        Trainer(config, dataset=samples)
