"""`optim.freeze_backbone`: only the neck and heads learn; the backbone keeps its weights and
BatchNorm statistics, also through BatchNorm re-estimation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from smhr_core.config import ConfigError
from training.config import load_training_config
from training.data_source import build_dataset
from training.trainer import Trainer

FROZEN = ["pretrained_backbone=true", "optim.freeze_backbone=true"]


def test_frozen_backbone_stays_and_the_neck_learns(tmp_path, tiny_run_settings: list[str]) -> None:
    config = load_training_config(None, [*tiny_run_settings, *FROZEN, f"output_dir={tmp_path}"])
    samples = [s for s in build_dataset(config.data, config.model.input_resolution)]
    trainer = Trainer(config, dataset=samples)
    network = trainer.model
    backbone_before = {k: v.clone() for k, v in network.backbone.state_dict().items()}
    neck_before = network.feat.weight.detach().clone()
    trainer.set_train_mode()
    assert not network.backbone.training and network.feat_bn.training
    trainer.train_step(default_collate(samples), photometric=False)
    trainer.recalibrate_batchnorm(1)
    for key, value in network.backbone.state_dict().items():
        assert torch.equal(value, backbone_before[key]), key
    assert not torch.equal(network.feat.weight, neck_before)
    assert all(not p.requires_grad for p in network.backbone.parameters())


def test_the_last_backbone_blocks_can_still_learn(tmp_path, tiny_run_settings: list[str]) -> None:
    settings = [*tiny_run_settings, *FROZEN, "optim.train_backbone_blocks=2"]
    config = load_training_config(None, [*settings, f"output_dir={tmp_path}"])
    samples = [s for s in build_dataset(config.data, config.model.input_resolution)]
    trainer = Trainer(config, dataset=samples)
    network = trainer.model
    blocks = network.backbone.blocks
    before = {k: v.clone() for k, v in network.backbone.state_dict().items()}
    trainer.set_train_mode()
    assert not network.backbone.training
    trainer.train_step(default_collate(samples), photometric=False)
    for key, value in network.backbone.state_dict().items():
        index = int(key.split(".")[1]) if key.startswith("blocks.") else -1
        learns = index >= len(blocks) - 2 and key.endswith(("weight", "bias"))
        # The running statistics of BatchNorm stay; conv and BatchNorm affine weights learn.
        assert torch.equal(value, before[key]) != learns, key


def test_train_backbone_blocks_is_validated(tmp_path, tiny_run_settings: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"optim\.train_backbone_blocks"):
        load_training_config(None, ["optim.train_backbone_blocks=-1", f"output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"optim\.freeze_backbone is true"):
        load_training_config(None, ["optim.train_backbone_blocks=2", f"output_dir={tmp_path}"])
    settings = [*tiny_run_settings, *FROZEN, "optim.train_backbone_blocks=17"]
    config = load_training_config(None, [*settings, f"output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="exceeds the 16 blocks of efficientnet_lite0"):
        Trainer(config, dataset=[])
