"""A short CPU training run on synthetic scenes: the loss falls, evaluation improves, the
checkpoints load in smhr_core and resume, TensorBoard gets scalars and images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from smhr_core.checkpoint import load_checkpoint
from smhr_core.config import DecodeConfig
from smhr_core.predictor import Predictor
from training.cli import main
from training.config import TrainingConfig, load_training_config
from training.data_source import build_dataset
from training.evaluate import evaluate
from training.metrics import EvaluationMetrics
from training.trainer import LAST_CHECKPOINT, Trainer, TrainResult

EPOCHS = 6
SETTINGS = [
    "model.backbone=resnet18",
    "model.input_resolution=64",
    "model.heads=[hm, params, texture, light, handmap]",
    "data.synthetic_count=4",
    "data.max_hands=2",
    "data.num_workers=0",
    "optim.batch_size=2",
    "optim.lr=1e-3",
    f"optim.epochs={EPOCHS}",
    f"optim.lr_milestones=[{EPOCHS - 1}]",
    "optim.grad_clip_norm=100",
    # The last epoch is stage 2 (photometric and mask losses on).
    "stage.photometric=true",
    f"stage.photometric_start_epoch={EPOCHS - 1}",
    "checkpoint_every=3",
    # A dozen steps leave the neck's BatchNorm statistics (momentum 0.01) far from the data's.
    "optim.bn_recalibration_batches=2",
    "device=cpu",
    "log.progress=false",
    "log.scalars_every=1",
    "log.images_every=5",
    "log.images_max=2",
    "seed=3",
]
DECODE = DecodeConfig(mode="robot", score_threshold=0.0, max_hands=2)


@dataclass
class Run:
    config: TrainingConfig
    result: TrainResult
    before: EvaluationMetrics
    after: EvaluationMetrics
    samples: list


def _evaluate(trainer: Trainer, samples: list) -> EvaluationMetrics:
    predictor = Predictor.from_network(trainer.model, trainer.hand_model, decode=DECODE)
    metrics = evaluate(predictor, samples).metrics
    trainer.model.train()
    return metrics


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("run")
    config = load_training_config(None, [*SETTINGS, f"output_dir={out}"])
    dataset = build_dataset(config.data, config.model.input_resolution)
    samples = [dataset[i] for i in range(len(dataset))]
    trainer = Trainer(config, dataset=samples)
    before = _evaluate(trainer, samples)
    result = trainer.fit()
    after = _evaluate(trainer, samples)
    return Run(config, result, before, after, samples)


def test_loss_falls(run: Run) -> None:
    totals = [e.losses["total"] for e in run.result.epochs]
    assert len(totals) == EPOCHS and run.result.step == EPOCHS * 2
    stage1 = totals[: EPOCHS - 1]
    assert np.mean(stage1[-2:]) < 0.5 * stage1[0], totals
    for term in ("hm", "reprojection"):
        assert run.result.epochs[-2].losses[term] < run.result.epochs[0].losses[term]
    assert [e.photometric for e in run.result.epochs] == [False] * (EPOCHS - 1) + [True]
    assert run.result.epochs[-1].losses["photometric"] > 0
    assert run.result.epochs[-1].losses["mask"] > 0
    assert run.result.epochs[0].losses["photometric"] == 0
    assert [e.lr for e in run.result.epochs] == pytest.approx([1e-3] * (EPOCHS - 1) + [1e-4])


def test_evaluation_improves(run: Run) -> None:
    before, after = run.before, run.after
    assert after.true_hands == before.true_hands > 0
    assert after.recall > before.recall
    assert after.keypoint_error_px < before.keypoint_error_px or before.keypoint_error_px is None


def test_checkpoints_load_in_smhr_core_and_predict(run: Run) -> None:
    out = Path(run.config.output_dir)
    assert [p.name for p in run.result.checkpoints] == ["epoch_0003.pth", "epoch_0006.pth"]
    loaded = load_checkpoint(out / LAST_CHECKPOINT)
    assert loaded.config == run.config.model
    assert loaded.report.epoch == EPOCHS and loaded.report.layout == "smhr/1"
    assert loaded.meta["backbone"] == "resnet18"
    assert loaded.meta["hand_model_id"].startswith("open_hand/")
    assert loaded.meta["step"] == EPOCHS * 2
    assert TrainingConfig.from_dict(loaded.meta["training"]) == run.config
    assert loaded.optimizer_state is not None
    predictor = Predictor(out / LAST_CHECKPOINT, device="cpu", decode=DECODE)
    image = (run.samples[0]["image_rgb"].permute(1, 2, 0).numpy() * 255).round()
    hands = predictor.predict([image.astype(np.uint8)], color_order="rgb")[0].hands
    assert len(hands) == 2 and all(np.isfinite(h.joints_m).all() for h in hands)
    assert (out / "config.yaml").is_file()


def test_tensorboard_scalars_and_images(run: Run) -> None:
    events = EventAccumulator(str(Path(run.config.output_dir) / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"loss/total", "loss/hm", "loss/photometric", "lr"} <= set(tags["scalars"])
    assert len(events.Scalars("loss/total")) == EPOCHS * 2
    assert tags["images"] == ["hands"]
    image = events.Images("hands")[0]
    assert (image.width, image.height) == (2 * 64, 2 * 64)  # two inputs over two overlays


def test_resume_continues_from_the_checkpoint(run: Run, tmp_path: Path) -> None:
    first = Path(run.config.output_dir) / "epoch_0003.pth"
    config = load_training_config(
        None,
        [
            *SETTINGS,
            f"output_dir={tmp_path}",
            f"resume={first}",
            "optim.epochs=4",
            "optim.max_steps_per_epoch=1",
            "log.tensorboard=false",
            "log.images_every=0",
        ],
    )
    trainer = Trainer(config, dataset=run.samples)
    assert (trainer.epoch, trainer.step) == (3, 6)
    saved = load_checkpoint(first)
    for name, value in saved.model.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value)
    adam_steps = {float(s["step"]) for s in trainer.optimizer.state_dict()["state"].values()}
    assert adam_steps == {6.0}
    result = trainer.fit()
    assert [e.epoch for e in result.epochs] == [3] and result.step == 7
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT).report.epoch == 4


def test_channels_last_trains_like_contiguous_and_saves_contiguous(run: Run, tmp_path) -> None:
    losses = {}
    for channels_last in (True, False):
        config = load_training_config(
            None,
            [
                *SETTINGS,
                f"output_dir={tmp_path / str(channels_last)}",
                f"channels_last={str(channels_last).lower()}",
                "optim.epochs=2",
                "optim.max_steps_per_epoch=2",
                "stage.photometric=false",
                "log.tensorboard=false",
                "log.images_every=0",
            ],
        )
        trainer = Trainer(config, dataset=run.samples)
        conv = trainer.model.layer1[0].conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) is channels_last
        result = trainer.fit()
        losses[channels_last] = [e.losses["total"] for e in result.epochs]
        saved = torch.load(result.checkpoints[-1], weights_only=True)["state_dict"]
        assert all(v.is_contiguous() for v in saved.values())
    # The same arithmetic in another layout: equal up to float32 summation order.
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-3)


class _RecordingScenes(torch.utils.data.Dataset):
    """Forty indices over the run's four samples; remembers which indices were drawn."""

    def __init__(self, samples: list) -> None:
        self.samples = samples
        self.drawn: list[int] = []

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        self.drawn.append(index)
        return self.samples[index % len(self.samples)]


def test_a_resumed_run_draws_what_an_uninterrupted_run_draws(tmp_path: Path) -> None:
    config = load_training_config(None, [*SETTINGS, f"output_dir={tmp_path}"])
    dataset = build_dataset(config.data, config.model.input_resolution)
    samples = [dataset[i] for i in range(len(dataset))]

    def trainer(output: Path, *extra: str) -> tuple[Trainer, _RecordingScenes]:
        settings = [
            *SETTINGS,
            f"output_dir={output}",
            "optim.epochs=3",
            "optim.max_steps_per_epoch=1",
            "optim.bn_recalibration_batches=0",
            "checkpoint_every=1",
            "log.tensorboard=false",
            "log.images_every=0",
            *extra,
        ]
        scenes = _RecordingScenes(samples)
        return Trainer(load_training_config(None, settings), dataset=scenes), scenes

    whole, whole_scenes = trainer(tmp_path / "whole")
    whole.fit()
    per_epoch = [whole_scenes.drawn[i : i + 2] for i in range(0, 6, 2)]
    assert len(whole_scenes.drawn) == 6 and per_epoch[0] != per_epoch[2]
    resumed, resumed_scenes = trainer(
        tmp_path / "resumed", f"resume={tmp_path / 'whole' / 'epoch_0002.pth'}"
    )
    resumed.fit()
    # A sampler seeded once per process would replay epoch 1's scenes here.
    assert resumed_scenes.drawn == per_epoch[2]


def test_cli_train_synth_and_evaluate(run: Run, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli_run"
    settings = [s for s in SETTINGS if not s.startswith(("optim.epochs", "stage.", "log."))]
    args = ["train"] + [f"--set={s}" for s in settings]
    args += ["--set=optim.epochs=1", "--set=optim.max_steps_per_epoch=1", f"--set=output_dir={out}"]
    args += ["--set=log.progress=false", "--set=log.tensorboard=false"]
    assert main(args) == 0
    assert load_checkpoint(out / LAST_CHECKPOINT).meta["step"] == 1
    scenes = tmp_path / "scenes"
    assert main(["synth", f"--out={scenes}", "--count=2", "--resolution=64", "--seed=7"]) == 0
    report = tmp_path / "eval.json"
    checkpoint = Path(run.config.output_dir) / LAST_CHECKPOINT
    code = main(
        [
            "evaluate",
            f"--checkpoint={checkpoint}",
            "--data=scenes",
            f"--root={scenes}",
            "--max-hands=2",
            "--threshold=0",
            f"--json={report}",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "detection recall" in printed and "PA-MPJPE (mm)" in printed
    data = json.loads(report.read_text())
    assert data["metrics"]["images"] == 2 and data["metrics"]["true_hands"] >= 2
    assert data["hand_model_id"] == load_checkpoint(checkpoint).meta["hand_model_id"]


def test_cli_errors_name_the_setting(tmp_path: Path, capsys) -> None:
    assert main(["train", "--set=optim.lr=-1"]) == 2
    assert "optim.lr" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(["evaluate", f"--checkpoint={missing}"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_non_finite_loss_stops_with_the_terms_named(run: Run, tmp_path: Path) -> None:
    config = load_training_config(
        None,
        [
            *SETTINGS,
            "model.heads=[hm, params]",
            "stage.photometric=false",
            f"output_dir={tmp_path}",
            "log.tensorboard=false",
            "log.images_every=0",
        ],
    )
    trainer = Trainer(config, dataset=run.samples)
    batch = next(iter(trainer.loader))
    batch["keypoints_px"][0, 0, 3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"not finite.*reprojection"):
        trainer.train_step(batch, photometric=False)
