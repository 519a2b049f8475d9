"""The dataset a training config names: `data.dataset` -> a torch Dataset of contract samples.

| dataset | what | `data.root` |
|---|---|---|
| synthetic | `SyntheticScenes`: `synthetic_count` scenes from seed `synthetic_seed` | unused |
| scenes | `SceneFolder`: scenes written by `python -m training synth` | the folder |
| freihand | FreiHAND v2 single-hand crops (`split` training / evaluation) | release root |
| ho3d | HO3D v2/v3 single-hand crops (`split` train / evaluation) | release root |
| reference | the reference code's annotation pickle `data.pickle` | image root |
| composed | multi-hand images pasted from FreiHAND training crops | FreiHAND root |

Crops and composed images are made at the model's input resolution. For training
(`train=True`) releases are augmented per `data.augment` and composed images differ every epoch;
for evaluation crops are centred and FreiHAND loads its vertices if the release has them.
MANO labels of FreiHAND (and the reference's FreiHAND pickles) are relative to MANO's
`hands_mean`: they are used only when `data.hand_model` is the official MANO model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from smhr_core.hand_model import HandModel
from smhr_core.open_hand import open_hand_directory
from training.augment import CropConfig
from training.config import DataConfig
from training.datasets.composition import ComposedHands, CompositionConfig
from training.datasets.freihand import FreiHAND, mano_hands_mean
from training.datasets.ho3d import HO3D
from training.datasets.reference_pickle import ReferencePickle
from training.synthetic import SceneConfig, SceneFolder, SyntheticScenes, write_scenes

MAX_GENERATED_HANDS = 4
"""Most hands the scene generator and the composition place in one image."""
COMPOSITION_RESOLUTION = 384
"""Resolution the composition's crop sizes (160-180 px) are given for; scaled to others."""
TRAINING_SPLITS = {"freihand": "training", "composed": "training", "ho3d": "train"}


class DataError(ValueError):
    """The configured data cannot be used; the message names the setting, folder or sample."""


def _hand_model(directory: str | None) -> HandModel:
    return HandModel.from_directory(Path(directory) if directory else open_hand_directory())


def _official_mano(data: DataConfig) -> HandModel | None:
    """The hand model of `data.hand_model` if it is the official MANO model, else None."""
    if not data.hand_model:
        return None
    model = _hand_model(data.hand_model)
    return None if model.is_open_model else model


def _hands_mean(data: DataConfig) -> np.ndarray | None:
    return mano_hands_mean(data.hand_model) if _official_mano(data) is not None else None


def _scene_config(
    resolution: int,
    max_hands: int,
    supersampling: int,
    hand_size: tuple[float, ...] = SceneConfig.hand_size,
    background_scale: tuple[float, ...] = SceneConfig.background_scale,
) -> SceneConfig:
    return SceneConfig(
        resolution=resolution,
        max_hands=min(max_hands, MAX_GENERATED_HANDS),
        supersampling=supersampling,
        hand_size=(float(hand_size[0]), float(hand_size[1])),
        background_scale=(float(background_scale[0]), float(background_scale[1])),
    )


def _freihand(data: DataConfig, resolution: int, split: str, train: bool) -> FreiHAND:
    return FreiHAND(
        data.root,
        split=split,
        versions=data.freihand_versions,
        hands_mean=_hands_mean(data),
        # Evaluation reads the vertices when the release has them (PA-MPVPE, F-scores).
        load_vertices=not train and (Path(data.root) / f"{split}_verts.json").is_file(),
        crop=CropConfig(output_size=resolution),
        augment=train and data.augment,
        max_hands=data.max_hands,
    )


def build_dataset(data: DataConfig, resolution: int, train: bool = True) -> Dataset:
    """The dataset of `data` at input side `resolution` (pixels); see the module table."""
    if data.dataset == "synthetic":
        return SyntheticScenes(
            data.synthetic_count,
            base_seed=data.synthetic_seed,
            config=_scene_config(
                resolution,
                data.max_hands,
                data.synthetic_supersampling,
                data.synthetic_hand_size,
                data.synthetic_background_scale,
            ),
            hand_model=_hand_model(data.hand_model),
            max_hands=data.max_hands,
            soften_probability=data.synthetic_soften_probability if train else 0.0,
        )
    root = Path(data.root)
    if not root.exists():
        raise DataError(f"data.root: {root} does not exist")
    try:
        return _build_from_files(data, resolution, train, root)
    except DataError:
        raise
    except (FileNotFoundError, ValueError) as error:
        raise DataError(f"data.dataset={data.dataset!r}: {error}") from None


def _build_from_files(data: DataConfig, resolution: int, train: bool, root: Path) -> Dataset:
    split = data.split or TRAINING_SPLITS.get(data.dataset, "")
    if data.dataset == "scenes":
        dataset = SceneFolder(root, max_hands=data.max_hands)
        size = int(dataset[0]["image"].shape[-1])
        if size != resolution:
            raise DataError(
                f"data.root: scenes in {root} are {size} x {size} pixels, the model takes "
                f"{resolution} x {resolution}"
            )
        return dataset
    if data.dataset == "freihand":
        return _freihand(data, resolution, split, train)
    if data.dataset == "ho3d":
        return HO3D(
            root,
            split=split,
            hand_model=_official_mano(data),
            crop=CropConfig(output_size=resolution),
            augment=train and data.augment,
            max_hands=data.max_hands,
        )
    if data.dataset == "reference":
        return ReferencePickle(
            data.pickle,
            image_root=None,
            data_root=root,
            hands_mean=_hands_mean(data),
            crop=CropConfig(output_size=resolution),
            augment=train and data.augment,
            max_hands=data.max_hands,
        )
    if data.dataset == "composed":
        source = _freihand(data, resolution, split, train=True)
        scale = resolution / COMPOSITION_RESOLUTION
        low, high = CompositionConfig().crop_size
        config = CompositionConfig(
            output_size=resolution,
            max_hands=min(data.max_hands, MAX_GENERATED_HANDS),
            crop_size=(low * scale, high * scale),
            slots=data.max_hands,
        )
        # Training draws new images every epoch; evaluation fixes them by the seed.
        seed = None if train else data.synthetic_seed
        return ComposedHands([source], data.synthetic_count, config=config, seed=seed)
    raise DataError(f"data.dataset: {data.dataset!r} has no loader")


def write_synthetic_scenes(
    out: str | Path,
    count: int,
    seed: int,
    resolution: int,
    max_hands: int,
    hand_model_dir: str | None = None,
    supersampling: int = 2,
) -> int:
    """Write `count` synthetic scenes (seeds seed .. seed + count - 1) into `out`, rendered at
    `supersampling` times the resolution and shrunk; returns count."""
    if count < 1:
        raise DataError(f"--count: must be >= 1, got {count}")
    if resolution <= 0 or resolution % 32:
        raise DataError(f"--resolution: {resolution} must be a positive multiple of 32")
    if supersampling < 1:
        raise DataError(f"--supersampling: must be >= 1, got {supersampling}")
    write_scenes(
        out,
        count,
        base_seed=seed,
        config=_scene_config(resolution, max_hands, supersampling),
        hand_model=_hand_model(hand_model_dir),
    )
    return count
