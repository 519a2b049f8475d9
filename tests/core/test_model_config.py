"""ModelConfig validation and the neck width of light models through a checkpoint."""

from __future__ import annotations

import pytest
import torch

from smhr_core.checkpoint import load_checkpoint, save_checkpoint
from smhr_core.config import ConfigError, DecodeConfig, ModelConfig
from smhr_core.network import SMHRNet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "vgg"}, "model.backbone"),
        ({"input_resolution": 250}, "model.input_resolution"),
        ({"heads": ("hm",)}, "model.heads"),
        ({"heads": ("hm", "params", "colour")}, "model.heads"),
        ({"neck_channels": 20}, "model.neck_channels"),
        ({"neck_channels": 1024}, "model.neck_channels"),
        ({"keypoint_skip": "yes"}, "model.keypoint_skip"),
        ({"heads": ("hm", "params"), "keypoint_skip": True}, "model.keypoint_skip"),
        ({"keypoint_context": 1}, "model.keypoint_context"),
        ({"heads": ("hm", "params"), "keypoint_context": True}, "model.keypoint_context"),
        ({"keypoint_refine": "on"}, "model.keypoint_refine"),
        ({"heads": ("hm", "params"), "keypoint_refine": True}, "model.keypoint_refine"),
        ({"keypoint_refine_wide": 1}, "model.keypoint_refine_wide"),
        ({"keypoint_refine_wide": True}, "model.keypoint_refine_wide"),
    ],
)
def test_model_config_names_the_bad_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)


def test_decode_config_validation_and_reference_top_k() -> None:
    with pytest.raises(ConfigError, match=r"decode\.mode"):
        DecodeConfig(mode="fast")
    with pytest.raises(ConfigError, match=r"decode\.score_threshold"):
        DecodeConfig(score_threshold=1.5)
    for field in ("fit_keypoints", "second_look", "mirror_reading"):
        with pytest.raises(ConfigError, match=rf"decode\.{field}: 'yes' must be true or false"):
            DecodeConfig(**{field: "yes"})
    reference = DecodeConfig(mode="reference", score_threshold=0.9, max_hands=2)
    assert (reference.top_k(224), reference.top_k(384), reference.threshold()) == (1, 4, 0.0)
    assert DecodeConfig(max_hands=3).top_k(384) == 3


def test_narrow_neck_round_trips_and_is_inferred_without_metadata(tmp_path) -> None:
    config = ModelConfig(backbone="resnet18", input_resolution=128, neck_channels=32)
    torch.manual_seed(0)
    model = SMHRNet(config)
    assert model.feat.weight.shape == (32, 96, 3, 3)
    assert model.params[0].weight.shape == (32, 32, 3, 3)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "n.pth", model, config, epoch=1))
    assert loaded.config == config
    bare = tmp_path / "bare.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, bare)
    inferred = load_checkpoint(bare)
    assert inferred.config.neck_channels == 32 and inferred.config.backbone == "resnet18"
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(inferred.model(x)["params"], model.eval()(x)["params"])
    assert ModelConfig.from_dict(config.to_dict()) == config
