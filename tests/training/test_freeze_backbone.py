"""`optim.freeze_backbone`: only the neck and heads learn; the backbone keeps its weights and
BatchNorm statistics, also through BatchNorm re-estimation."""

from __future__ import annotations

import torch
from torch.utils.data import default_collate

from training.config import load_training_config
from training.data_source import build_dataset
from training.trainer import Trainer

SETTINGS = [
    "model.backbone=efficientnet_lite0",
    "model.input_resolution=64",
    "model.heads=[hm, params, handmap]",
    "model.neck_channels=32",
    "pretrained_backbone=true",
    "optim.freeze_backbone=true",
    "data.synthetic_count=2",
    "data.max_hands=2",
    "data.num_workers=0",
    "optim.batch_size=2",
    "optim.lr=1e-2",
    "device=cpu",
    "log.progress=false",
    "seed=5",
]


def test_frozen_backbone_stays_and_the_neck_learns(tmp_path) -> None:
    config = load_training_config(None, [*SETTINGS, f"output_dir={tmp_path}"])
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
