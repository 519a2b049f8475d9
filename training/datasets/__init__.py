"""Public hand datasets in their release layouts, and on-the-fly multi-hand composition.

Every dataset here is a `RecordDataset`: `record(i)` gives the labelled image as released (a
`training.augment.HandRecord`: keypoints in its pixels, 3D in its camera), and `dataset[i]` the
batch-contract sample of its single-hand crop (`training.augment.single_hand_sample`).
`training.datasets.composition.ComposedHands` pastes such records into multi-hand images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import torch
from torch.utils.data import Dataset

from training import sample as S
from training.augment import CropConfig, HandRecord, sample_rng, single_hand_sample


class RecordSource(Protocol):
    """Anything that gives labelled images by index."""

    def __len__(self) -> int: ...

    def record(self, index: int) -> HandRecord: ...


class RecordDataset(Dataset, ABC):
    """Single-hand crops of a record source as batch-contract samples.

    With `augment` each crop is random (SPEC.md single-hand augmentation); `seed` makes sample
    i use seed + i (reproducible) instead of torch's generator (different every epoch). Without
    `augment` the crop is centred on the keypoint box.
    """

    def __init__(
        self,
        crop: CropConfig | None = None,
        augment: bool = True,
        max_hands: int = S.DEFAULT_MAX_HANDS,
        seed: int | None = None,
    ) -> None:
        self.crop = crop or CropConfig()
        self.augment = augment
        self.max_hands = max_hands
        self.seed = seed

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples."""

    @abstractmethod
    def record(self, index: int) -> HandRecord:
        """The labelled image of sample `index` as released."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} out of range [0, {len(self)})")
        record = self.record(index)
        rng = None
        if self.augment:
            rng = sample_rng(None if self.seed is None else self.seed + index)
        return single_hand_sample(record, rng, self.crop, self.max_hands)
