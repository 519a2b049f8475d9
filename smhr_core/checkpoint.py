"""Load and save SMHR checkpoints: the release layout, our own `smhr/1` files, clear errors.

Both layouts are `{'epoch': int, 'state_dict': {...}, ['optimizer': ...]}` with the release's key
names; ours add `smhr_meta = {'format': 'smhr/1', 'model': ModelConfig.to_dict(), ...}`. Files
are read with `torch.load(weights_only=True)`: a checkpoint never runs code.
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smhr_core.config import HEADS, ConfigError, ModelConfig
from smhr_core.network import SMHRNet

FORMAT = "smhr/1"
IGNORED_PREFIXES = ("backbone.", "uv_delayer.", "uv_head.", "reduce.", "p2.", "p2_l2.")
"""Release keys of parts never used in the forward pass (a ResNet-18 keypoint branch, `p2`)."""
_RESERVED_META = ("format", "model")
_MAX_LISTED = 12


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not fit the network; the message names the file
    and the offending keys."""


@dataclass(frozen=True)
class LoadReport:
    """What loading did."""

    path: str
    layout: str
    """"release" (no `smhr_meta`) or "smhr/1"."""
    used_keys: int
    """State-dict entries assigned to the network."""
    ignored_keys: tuple[str, ...]
    """Known-unused release entries that were skipped."""
    stripped_prefix: bool
    """True if the keys carried DataParallel's `module.` prefix."""
    epoch: int | None
    config_source: str
    """"file" (smhr_meta), "inferred" (release keys) or "caller" (the `config` argument)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A network ready for inference plus what the file said about it."""

    model: SMHRNet
    """In eval mode, on the requested device."""
    config: ModelConfig
    report: LoadReport
    meta: dict[str, Any] = field(default_factory=dict)
    """Free metadata of our checkpoints (`smhr_meta` without `format` and `model`); empty for
    release files."""
    optimizer_state: dict[str, Any] | None = None
    """The saved optimizer state, if any (for resuming training)."""


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _read(path: Path, map_location: Any) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            reason = " ".join(
                line.strip()
                for line in text.splitlines()[1:]
                if line.strip()
                and not line.startswith(("Check the documentation", "Please file an issue"))
            )
            raise CheckpointError(
                f"{path}: refused: it needs Python objects beyond tensors and plain containers, "
                f"which could run code when loaded ({reason or 'unsupported pickle content'})"
            ) from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({text})") from exc
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {first}"
        ) from exc
    except (EOFError, KeyError, ValueError, OSError, IndexError, TypeError, struct.error) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (empty, truncated or not a torch file): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _strip_module_prefix(state: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}, True
    return dict(state), False


def _infer_config(state: Mapping[str, Any], path: Path) -> ModelConfig:
    if "layer1.0.conv3.weight" in state:
        backbone = "resnet50"
    elif "layer1.0.conv2.weight" in state:
        backbone = "resnet18"
    elif "stem.0.weight" in state:
        backbone = "efficientnet_lite0"
    else:
        # Release files are ResNet-50; a missing backbone is reported as missing keys later.
        backbone = "resnet50"
    heads = tuple(h for h in HEADS if f"{h}.2.weight" in state)
    resolution = 384 if "handmap" in heads else 224
    feat = state.get("feat.weight")
    width = int(feat.shape[0]) if feat is not None and feat.ndim == 4 else 256
    hidden = {}
    for head in ("params", "keypoints"):
        weight = state.get(f"{head}.0.weight")
        wide = int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.ndim == 4 else 0
        hidden[head] = None if wide in (0, width) else wide
    try:
        return ModelConfig(
            backbone=backbone,
            input_resolution=resolution,
            heads=heads,
            neck_channels=width,
            params_head_channels=hidden["params"],
            keypoint_head_channels=hidden["keypoints"],
            keypoint_skip="keypoint_skip.2.weight" in state,
            keypoint_context="keypoint_context.7.weight" in state,
            keypoint_refine="keypoint_refine.6.weight" in state,
            keypoint_refine_wide="keypoint_refine_wide.8.weight" in state,
        )
    except ConfigError as exc:
        raise CheckpointError(
            f"{path}: cannot tell which SMHR network this is: {exc} "
            f"(head keys found: {[f'{h}.2.weight' for h in heads]})"
        ) from exc


def _check_not_2022(state: Mapping[str, Any], path: Path) -> None:
    p3 = state.get("p3.weight")
    if "mean_theta" in state or (
        isinstance(p3, torch.Tensor) and p3.dim() == 4 and tuple(p3.shape) == (256, 512, 3, 3)
    ):
        raise CheckpointError(
            f"{path}: this is the 2022 stride-8 SMHR layout (p3 is a 3x3 Conv2d, weight "
            "(256, 512, 3, 3), and/or a `mean_theta` buffer with mean-relative params); it is not "
            "supported: use a release checkpoint of 2023 (e.g. Multi_pho.pth, FreiHand_2d_pho.pth)"
        )


def _fit_state(
    state: dict[str, Any], model: SMHRNet, path: Path, config: ModelConfig
) -> tuple[dict[str, torch.Tensor], list[str]]:
    expected = model.state_dict()
    ignored = sorted(k for k in state if k not in expected and k.startswith(IGNORED_PREFIXES))
    unexpected = sorted(k for k in state if k not in expected and k not in ignored)
    missing = sorted(k for k in expected if k not in state)
    not_tensor = sorted(
        k for k in expected if k in state and not isinstance(state[k], torch.Tensor)
    )
    mismatched = sorted(
        f"{k}: file {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if not_tensor:
        problems.append(f"non-tensor value(s) for: {_listing(not_tensor)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched)}")
    if problems:
        raise CheckpointError(
            f"{path}: does not fit the network {config.to_dict()}: " + "; ".join(problems)
        )
    return {k: state[k].to(expected[k].dtype) for k in expected}, ignored


def load_checkpoint(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    config: ModelConfig | None = None,
) -> LoadedCheckpoint:
    """Load a release or `smhr/1` checkpoint into a new `SMHRNet` (eval mode, on `map_location`).

    The model config comes from `config` if given, else from the file's `smhr_meta`, else it is
    inferred from the keys (release files: ResNet-50; heads present; 384 px input with a
    `handmap` head, else 224). Every network tensor must be present with its exact shape;
    known-unused release keys are skipped and listed in `report.ignored_keys`; anything else
    raises `CheckpointError` naming the file and keys.
    """
    path = Path(path)
    obj = _read(path, map_location)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{path}: expected a dict with 'state_dict', found a {type(obj).__name__}"
        )
    if "state_dict" not in obj:
        raise CheckpointError(
            f"{path}: no 'state_dict' entry (top-level keys: {_listing(sorted(map(str, obj)))})"
        )
    raw_state = obj["state_dict"]
    if not isinstance(raw_state, Mapping) or not all(isinstance(k, str) for k in raw_state):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of names to tensors")
    state, stripped = _strip_module_prefix(raw_state)
    _check_not_2022(state, path)

    raw_meta = obj.get("smhr_meta")
    meta: dict[str, Any] = {}
    if raw_meta is not None:
        if not isinstance(raw_meta, Mapping) or raw_meta.get("format") != FORMAT:
            found = raw_meta.get("format") if isinstance(raw_meta, Mapping) else raw_meta
            raise CheckpointError(f"{path}: smhr_meta.format is {found!r}, expected {FORMAT!r}")
        meta = {k: v for k, v in raw_meta.items() if k not in _RESERVED_META}
    if config is not None:
        source = "caller"
    elif raw_meta is not None:
        try:
            config = ModelConfig.from_dict(dict(raw_meta.get("model") or {}))
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{path}: smhr_meta.model is invalid: {exc}") from exc
        source = "file"
    else:
        config = _infer_config(state, path)
        source = "inferred"

    # Built on the meta device: random initialisation of ~70 M parameters would be wasted work,
    # the file's tensors become the parameters (cast to the network's dtypes).
    with torch.device("meta"):
        model = SMHRNet(config)
    fitted, ignored = _fit_state(state, model, path, config)
    model.load_state_dict(fitted, strict=True, assign=True)
    model.to(map_location).eval()

    epoch = obj.get("epoch")
    report = LoadReport(
        path=str(path),
        layout="release" if raw_meta is None else FORMAT,
        used_keys=len(fitted),
        ignored_keys=tuple(ignored),
        stripped_prefix=stripped,
        epoch=int(epoch) if isinstance(epoch, int) else None,
        config_source=source,
    )
    optimizer = obj.get("optimizer")
    return LoadedCheckpoint(
        model=model,
        config=config,
        report=report,
        meta=meta,
        optimizer_state=dict(optimizer) if isinstance(optimizer, Mapping) else None,
    )


def _check_plain(value: Any, where: str) -> None:
    """Metadata must load under weights_only=True: plain Python values and tensors only."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(
                    f"checkpoint meta: {where} has a key {key!r} that is not a str or int"
                )
            _check_plain(item, f"{where}.{key}")
        return
    raise CheckpointError(
        f"checkpoint meta: {where} is a {type(value).__name__}; only None, bool, int, float, str, "
        "tensors, lists, tuples and dicts with str/int keys can be saved"
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    model: SMHRNet,
    config: ModelConfig,
    epoch: int,
    meta: Mapping[str, Any] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write `model` in the release layout plus `smhr_meta`, atomically (temp file, then rename).

    `meta` is free metadata (training config, hand_model_id, commit, ...): plain values only, and
    it may not use the reserved keys "format" and "model". Returns the written path.
    """
    path = Path(path)
    if model.config != config:
        raise CheckpointError(
            f"{path}: config {config.to_dict()} differs from the model's {model.config.to_dict()}"
        )
    meta = dict(meta or {})
    reserved = [k for k in _RESERVED_META if k in meta]
    if reserved:
        raise CheckpointError(f"checkpoint meta: keys {reserved} are reserved")
    _check_plain(meta, "meta")
    if optimizer_state is not None:
        _check_plain(dict(optimizer_state), "optimizer_state")
    payload: dict[str, Any] = {
        "epoch": int(epoch),
        # Contiguous whatever layout the model trained in (channels-last): one canonical file.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "smhr_meta": {"format": FORMAT, "model": config.to_dict(), **meta},
    }
    if optimizer_state is not None:
        payload["optimizer"] = dict(optimizer_state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
