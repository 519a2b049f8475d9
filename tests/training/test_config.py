"""Training config: YAML defaults, overrides, and validation errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from smhr_core.config import ConfigError
from training.config import TrainingConfig, load_training_config, write_training_config

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "config" / "training_default.yaml"


def test_default_yaml_documents_exactly_the_defaults() -> None:
    assert load_training_config(DEFAULT_YAML) == TrainingConfig()


def test_spec_defaults() -> None:
    cfg = TrainingConfig()
    assert (cfg.loss.hm, cfg.loss.handmap, cfg.loss.reprojection) == (100, 100, 10)
    assert (cfg.loss.bone_direction, cfg.loss.prior, cfg.loss.photometric) == (100, 1000, 100)
    assert (cfg.loss.mask, cfg.loss.joints_3d, cfg.loss.mano) == (20, 10, 100)
    assert cfg.loss.hard_fraction == 0.7
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.batch_size) == (1e-4, 150, 32)
    assert [cfg.optim.lr_at(e) for e in (0, 29, 30, 60, 90, 149)] == pytest.approx(
        [1e-4, 1e-4, 1e-5, 1e-6, 1e-7, 1e-7]
    )


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg = load_training_config(
        DEFAULT_YAML,
        [
            "optim.lr=1e-3",
            "optim.lr_milestones=[2, 4]",
            "model.backbone=resnet18",
            "model.input_resolution=128",
            "stage.photometric=true",
            "seed=7",
        ],
    )
    assert cfg.optim.lr == 1e-3
    assert cfg.optim.lr_milestones == (2, 4)
    assert cfg.model.backbone == "resnet18" and cfg.model.input_resolution == 128
    assert cfg.stage.photometric_at(0) and cfg.seed == 7
    out = tmp_path / "resolved.yaml"
    write_training_config(cfg, out)
    assert load_training_config(out) == cfg


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  epochs: 3\n")
    cfg = load_training_config(path)
    assert cfg.optim.epochs == 3 and cfg.optim.lr == 1e-4 and cfg.data == TrainingConfig().data


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optim.lrr=1", "optim.lrr"),
        ("optimizer.lr=1", "optimizer"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=fast", "optim.lr"),
        ("optim.epochs=2.5", "optim.epochs"),
        ("optim.lr_milestones=[60, 30]", "optim.lr_milestones"),
        ("optim.ema_decay=1", "optim.ema_decay"),
        ("optim.ema_decay=-0.5", "optim.ema_decay"),
        ("optim.scaled_modules=[keypoint_refine, keypoint_refine]", "optim.scaled_modules"),
        ("optim.scaled_modules=['']", "optim.scaled_modules"),
        ("optim.module_lr_scale=0", "optim.module_lr_scale"),
        ("data.dataset=coco", "data.dataset"),
        ("data.dataset=scenes", "data.root"),
        ("data.synthetic_hand_size=[0.5, 0.3]", "data.synthetic_hand_size"),
        ("data.synthetic_hand_size=[0.3]", "data.synthetic_hand_size"),
        ("data.synthetic_hand_size=[0, 0.3]", "data.synthetic_hand_size"),
        ("data.synthetic_background_scale=[2, 1]", "data.synthetic_background_scale"),
        ("data.synthetic_background_scale=[0.1, 2]", "data.synthetic_background_scale"),
        ("data.synthetic_background_scale=[1]", "data.synthetic_background_scale"),
        ("loss.hard_fraction=0", "loss.hard_fraction"),
        ("model.backbone=vgg", "model.backbone"),
        ("device=gpu", "device"),
        ("distributed.backend=mpi", "distributed.backend"),
        ("stage.photometric=yes please", "stage.photometric"),
        ("optim=3", "optim"),
    ],
)
def test_validation_errors_name_the_field(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_training_config(None, [override])


def test_photometric_stage_needs_texture_and_light() -> None:
    with pytest.raises(ConfigError, match=r"model\.heads.*texture and light"):
        load_training_config(None, ["model.heads=[hm, params]", "stage.photometric=true"])


def test_allowed_values_are_listed() -> None:
    with pytest.raises(ConfigError, match="synthetic") as info:
        load_training_config(None, ["data.dataset=coco"])
    assert "scenes" in str(info.value)


def test_bad_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_training_config(path)
    path.write_text("optim:\n  lr: -2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml.*optim\.lr"):
        load_training_config(path)


def test_shipped_configs_load() -> None:
    short = load_training_config(DEFAULT_YAML.with_name("training_cpu_short.yaml"))
    assert short.model.backbone == "efficientnet_lite0" and short.pretrained_backbone
    assert short.stage.photometric_at(short.optim.epochs - 1)
    assert not short.stage.photometric_at(0)
