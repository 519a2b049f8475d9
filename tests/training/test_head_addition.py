"""A trained network continued with an added head (the `keypoints` head): the trained heads
compute what they did, the new head starts from its initialisation and learns."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.checkpoint import load_checkpoint, save_checkpoint
from smhr_core.config import ModelConfig
from smhr_core.network import HEATMAP_BIAS, KEYPOINT_JOINTS, SMHRNet
from training.config import load_training_config
from training.data_source import build_dataset
from training.head_addition import added_heads, with_added_heads
from training.trainer import Trainer

BASE = ModelConfig(
    backbone="efficientnet_lite0",
    input_resolution=64,
    heads=("hm", "params", "handmap"),
    neck_channels=32,
)
WITH_KEYPOINTS = dataclasses.replace(BASE, heads=(*BASE.heads, "keypoints"))


def test_only_added_heads_count() -> None:
    assert added_heads(BASE, WITH_KEYPOINTS) == ("keypoints",)
    assert added_heads(WITH_KEYPOINTS, BASE) == ()
    assert added_heads(BASE, BASE) == ()
    assert added_heads(BASE, dataclasses.replace(WITH_KEYPOINTS, neck_channels=40)) == ()
    reordered = dataclasses.replace(BASE, heads=("hm", "handmap", "params", "keypoints"))
    assert added_heads(BASE, reordered) == ()
    state = SMHRNet(WITH_KEYPOINTS).state_dict()
    with pytest.raises(ValueError, match="already holds"):
        with_added_heads(state, SMHRNet(WITH_KEYPOINTS), ("keypoints",))


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


def test_training_adds_the_head_to_a_checkpoint_without_it(
    tmp_path, tiny_run_settings: list[str]
) -> None:
    torch.manual_seed(0)
    trained = SMHRNet(BASE).eval()
    init = save_checkpoint(tmp_path / "base.pth", trained, BASE, epoch=1)
    settings = [
        *tiny_run_settings,
        "model.heads=[hm,params,handmap,keypoints]",
        f"init_checkpoint={init}",
        f"output_dir={tmp_path / 'run'}",
    ]
    config = load_training_config(None, settings)
    samples = list(build_dataset(config.data, config.model.input_resolution))
    trainer = Trainer(config, dataset=samples)
    network = trainer.model
    trained.to(memory_format=trainer.memory_format)
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=trainer.memory_format)
    network.eval()
    with torch.no_grad():
        before, after = trained(x), network(x)
    for name in BASE.heads:
        torch.testing.assert_close(after[name], before[name], rtol=0.0, atol=0.0)
    start = network.keypoints[2].weight.detach().clone()
    trainer.set_train_mode()
    loss, _, _ = trainer.train_step(default_collate(samples), photometric=False)
    assert float(loss.keypoint_heatmap.detach()) > 0.0
    assert float(loss.keypoint_offset.detach()) > 0.0
    assert not torch.equal(network.keypoints[2].weight, start)
