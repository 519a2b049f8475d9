"""Model and decoding settings: dataclasses that validate themselves and round-trip to dicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

BACKBONES = ("resnet50", "resnet18", "efficientnet_lite0")
HEADS = ("hm", "params", "texture", "light", "handmap", "keypoints")
REQUIRED_HEADS = ("hm", "params")
DECODE_MODES = ("reference", "robot")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
"""The network's floating-point type at inference (`smhr_core.precision`): `auto` is float16 on
CUDA and float32 elsewhere. `bfloat16` pays off on CPUs with AVX512-BF16 or AMX (Intel Xeon 4th
generation and later, AMD Zen 4); other CPUs emulate it, typically slower than float32."""


class ConfigError(ValueError):
    """A configuration value is missing or outside its allowed values."""


def _check_keys(cls: type, data: dict[str, Any], where: str) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")


HEAD_WIDTH_FIELDS = {"params": "params_head_channels", "keypoints": "keypoint_head_channels"}
"""The heads whose hidden width can differ from the neck's, with the field that sets it."""


@dataclass(frozen=True)
class ModelConfig:
    """What network a checkpoint holds. Saved inside our checkpoints as `smhr_meta.model`."""

    backbone: str = "resnet50"
    input_resolution: int = 384
    """Square network input side, pixels; a multiple of 32."""
    heads: tuple[str, ...] = ("hm", "params", "handmap")
    neck_channels: int = 256
    """Width of the neck and of the heads' hidden layer: 256 in the release; our light CPU
    models may use fewer (the structure stays the same)."""
    params_head_channels: int | None = None
    """Hidden width of the `params` head alone; None keeps `neck_channels`. A narrow neck can
    feed a wider params head at little cost: inference evaluates it only at the hands' cells."""
    keypoint_head_channels: int | None = None
    """Ours: hidden width of the `keypoints` head alone; None keeps `neck_channels`. That head
    places 21 joints from one hidden layer; unlike `params` it runs on the whole stride-4 map, so
    its width costs time (only when the keypoint fit runs)."""
    keypoint_skip: bool = False
    """Ours: the `keypoints` head also reads the backbone's stride-4 features (a small conv of
    them, added to the neck's features before that head only). The neck builds its stride-4
    maps from stride-8 and coarser features, too coarse to place a joint within a cell."""
    keypoint_context: bool = False
    """Ours: the `keypoints` head also reads a wide view of the neck's features (three dilated
    3x3 convs at stride 8, about 120 input pixels across, added before that head only): its own
    3x3 window sees 12 pixels, too little to tell an occluded joint or which finger is which."""
    keypoint_refine: bool = False
    """Ours: a second stage after the `keypoints` head reads that head's input together with its
    21 joint heatmaps over 15 cells (60 input pixels) and adds a correction to its output. The
    head places each joint alone; the second stage sees where the hand's other joints lie, which
    is what tells one fingertip from the next."""
    keypoint_refine_wide: bool = False
    """Ours: a third stage, after `keypoint_refine`, that reads the same input with the refined
    21 joint heatmaps over 31 cells (124 input pixels, a whole hand at the second look's size:
    dilations 1, 2, 4 and 8) and adds a further correction. The first refinement sees 15 cells,
    less than a hand, so a fingertip's channel cannot see the wrist's."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model.backbone: {self.backbone!r} is not one of {list(BACKBONES)}")
        if (
            not isinstance(self.input_resolution, int)
            or self.input_resolution < 64
            or (self.input_resolution % 32)
        ):
            raise ConfigError(
                f"model.input_resolution: {self.input_resolution!r} must be an integer >= 64 "
                "and a multiple of 32 (e.g. 224 or 384)"
            )
        heads = tuple(self.heads)
        object.__setattr__(self, "heads", heads)
        bad = [h for h in heads if h not in HEADS]
        if bad:
            raise ConfigError(f"model.heads: {bad} not in {list(HEADS)}")
        missing = [h for h in REQUIRED_HEADS if h not in heads]
        if missing:
            raise ConfigError(
                f"model.heads: must include {list(REQUIRED_HEADS)}, missing {missing}"
            )
        if len(set(heads)) != len(heads):
            raise ConfigError(f"model.heads: duplicates in {list(heads)}")
        if (
            not isinstance(self.neck_channels, int)
            or not 16 <= self.neck_channels <= 512
            or (self.neck_channels % 8)
        ):
            raise ConfigError(
                f"model.neck_channels: {self.neck_channels!r} must be a multiple of 8 in [16, 512]"
            )
        for field in HEAD_WIDTH_FIELDS.values():
            wide = getattr(self, field)
            if wide is not None and (
                isinstance(wide, bool)
                or not isinstance(wide, int)
                or not 16 <= wide <= 1024
                or wide % 8
            ):
                raise ConfigError(
                    f"model.{field}: {wide!r} must be null (the neck's width) or a "
                    "multiple of 8 in [16, 1024]"
                )
        if self.keypoint_head_channels is not None and "keypoints" not in heads:
            raise ConfigError(
                "model.keypoint_head_channels: a width needs the `keypoints` head in model.heads "
                f"(heads are {list(heads)})"
            )
        if not isinstance(self.keypoint_skip, bool):
            raise ConfigError(f"model.keypoint_skip: {self.keypoint_skip!r} must be true or false")
        if self.keypoint_skip and "keypoints" not in heads:
            raise ConfigError(
                "model.keypoint_skip: true needs the `keypoints` head in model.heads "
                f"(heads are {list(heads)})"
            )
        if not isinstance(self.keypoint_context, bool):
            raise ConfigError(
                f"model.keypoint_context: {self.keypoint_context!r} must be true or false"
            )
        if self.keypoint_context and "keypoints" not in heads:
            raise ConfigError(
                "model.keypoint_context: true needs the `keypoints` head in model.heads "
                f"(heads are {list(heads)})"
            )
        if not isinstance(self.keypoint_refine, bool):
            raise ConfigError(
                f"model.keypoint_refine: {self.keypoint_refine!r} must be true or false"
            )
        if self.keypoint_refine and "keypoints" not in heads:
            raise ConfigError(
                "model.keypoint_refine: true needs the `keypoints` head in model.heads "
                f"(heads are {list(heads)})"
            )
        if not isinstance(self.keypoint_refine_wide, bool):
            raise ConfigError(
                f"model.keypoint_refine_wide: {self.keypoint_refine_wide!r} must be true or false"
            )
        if self.keypoint_refine_wide and not self.keypoint_refine:
            raise ConfigError(
                "model.keypoint_refine_wide: true needs model.keypoint_refine: true "
                "(it refines that stage's output)"
            )

    def head_hidden_channels(self, name: str) -> int:
        """Hidden width of head `name`: its own width setting, else `neck_channels`."""
        field = HEAD_WIDTH_FIELDS.get(name)
        width = None if field is None else getattr(self, field)
        return self.neck_channels if width is None else width

    @property
    def map_size(self) -> int:
        """Side of the output maps (stride 4), cells."""
        return self.input_resolution // 4

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["heads"] = list(self.heads)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        _check_keys(cls, data, "model")
        kwargs = dict(data)
        if "heads" in kwargs:
            kwargs["heads"] = tuple(kwargs["heads"])
        return cls(**kwargs)


RELEASE_MULTI_HAND = ModelConfig(
    backbone="resnet50",
    input_resolution=384,
    heads=("hm", "params", "texture", "light", "handmap"),
)
"""The released multi-hand model (`Multi_pho.pth`)."""

RELEASE_SINGLE_HAND = ModelConfig(
    backbone="resnet50",
    input_resolution=224,
    heads=("hm", "params", "texture", "light"),
)
"""The released single-hand FreiHAND model (`FreiHand_2d_pho.pth`)."""


@dataclass(frozen=True)
class DecodeConfig:
    """How peaks become hands.

    `reference` reproduces the release demo exactly: K = 4 at 384 input, K = 1 at 224, no
    threshold. `robot` keeps peaks above `score_threshold`, at most `max_hands`.
    """

    mode: str = "robot"
    score_threshold: float = 0.3
    max_hands: int = 4
    fit_keypoints: bool = True
    """With a model that has the `keypoints` head (ours), fit each hand's mesh to the joints its
    heatmaps locate (`smhr_core.fit_2d`); without that head this does nothing."""
    second_look: bool = True
    """With the keypoint fit: run the network again on a crop around each hand found, scaled so
    that the hand fills `second_look_fraction` of the network's input, and keep the hand found
    there (one more forward, batched over all hands)."""
    second_look_fraction: float = 0.33
    """The hand's box (longest side of its joints' box) as a fraction of the network's input
    resolution, in the second look's crop."""
    second_look_size: int = 0
    """The second look's crop side, network-input pixels; 0: the network's input resolution."""
    mirror_reading: bool = True
    """With the keypoint fit: read each hand (its joint heatmaps, parameters and side) from the
    input and from its mirror image and average the two (`smhr_core.mirror_reading`; one more
    forward where the joints are read)."""

    def __post_init__(self) -> None:
        if self.mode not in DECODE_MODES:
            raise ConfigError(f"decode.mode: {self.mode!r} is not one of {list(DECODE_MODES)}")
        if not 0.0 <= float(self.score_threshold) <= 1.0:
            raise ConfigError(
                f"decode.score_threshold: {self.score_threshold!r} must be within [0, 1]"
            )
        if not isinstance(self.max_hands, int) or not 1 <= self.max_hands <= 64:
            raise ConfigError(f"decode.max_hands: {self.max_hands!r} must be an integer in [1, 64]")
        if not isinstance(self.fit_keypoints, bool):
            raise ConfigError(f"decode.fit_keypoints: {self.fit_keypoints!r} must be true or false")
        if not isinstance(self.second_look, bool):
            raise ConfigError(f"decode.second_look: {self.second_look!r} must be true or false")
        if not 0.05 <= float(self.second_look_fraction) <= 1.0:
            raise ConfigError(
                f"decode.second_look_fraction: {self.second_look_fraction!r} must be within "
                "[0.05, 1]"
            )
        if not isinstance(self.mirror_reading, bool):
            raise ConfigError(
                f"decode.mirror_reading: {self.mirror_reading!r} must be true or false"
            )
        if not isinstance(self.second_look_size, int) or not (
            self.second_look_size == 0 or 64 <= self.second_look_size <= 2048
        ):
            raise ConfigError(
                f"decode.second_look_size: {self.second_look_size!r} must be 0 or an integer "
                "in [64, 2048]"
            )

    def top_k(self, input_resolution: int) -> int:
        """Number of peaks to read from the heatmap."""
        if self.mode == "reference":
            return 1 if input_resolution <= 224 else 4
        return self.max_hands

    def threshold(self) -> float:
        """Minimum score for a peak to count as a hand."""
        return 0.0 if self.mode == "reference" else float(self.score_threshold)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DecodeConfig:
        _check_keys(cls, data, "decode")
        return cls(**data)
