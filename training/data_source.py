"""The dataset a training config names: `data.dataset` -> a torch Dataset of contract samples.

- `synthetic`: `training.synthetic.SyntheticScenes`, `data.synthetic_count` scenes from seed
  `data.synthetic_seed`, drawn with the hand model of `data.hand_model` (default: open hand);
- `scenes`: a folder of scenes written by `python -m training synth` (`SceneFolder`), e.g. a
  held-out evaluation set; `data.root` is the folder.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training.config import DataConfig
from training.synthetic import SceneConfig, SceneFolder, SyntheticScenes, write_scenes

MAX_SYNTHETIC_HANDS = 4
"""Most hands the synthetic scene generator places in one image."""


class DataError(ValueError):
    """The configured data cannot be used; the message names the setting, folder or sample."""


def _hand_model(directory: str | None) -> HandModel:
    return HandModel.from_directory(Path(directory) if directory else open_hand_directory())


def _scene_config(resolution: int, max_hands: int) -> SceneConfig:
    return SceneConfig(resolution=resolution, max_hands=min(max_hands, MAX_SYNTHETIC_HANDS))


def build_dataset(data: DataConfig, resolution: int) -> Dataset:
    """The dataset of `data` at input side `resolution` (pixels)."""
    if data.dataset == "synthetic":
        return SyntheticScenes(
            data.synthetic_count,
            base_seed=data.synthetic_seed,
            config=_scene_config(resolution, data.max_hands),
            hand_model=_hand_model(data.hand_model),
            max_hands=data.max_hands,
        )
    if data.dataset == "scenes":
        root = Path(data.root)
        if not root.is_dir():
            raise DataError(f"data.root: scene folder {root} does not exist")
        try:
            dataset = SceneFolder(root, max_hands=data.max_hands)
        except FileNotFoundError as error:
            raise DataError(f"data.root: {error}") from None
        first = dataset[0]
        size = int(first["image"].shape[-1])
        if size != resolution:
            raise DataError(
                f"data.root: scenes in {root} are {size} x {size} pixels, the model takes "
                f"{resolution} x {resolution}"
            )
        return dataset
    raise DataError(f"data.dataset: {data.dataset!r} has no loader")


def write_synthetic_scenes(
    out: str | Path,
    count: int,
    seed: int,
    resolution: int,
    max_hands: int,
    hand_model_dir: str | None = None,
) -> int:
    """Write `count` synthetic scenes (seeds seed .. seed + count - 1) into `out`; returns count."""
    if count < 1:
        raise DataError(f"--count: must be >= 1, got {count}")
    if resolution <= 0 or resolution % 32:
        raise DataError(f"--resolution: {resolution} must be a positive multiple of 32")
    write_scenes(
        out,
        count,
        base_seed=seed,
        config=_scene_config(resolution, max_hands),
        hand_model=_hand_model(hand_model_dir),
    )
    return count
