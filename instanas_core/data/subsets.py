"""Wrappers applied after a data set is built: a seeded class-balanced subset (``n_per_class``,
for CPU-sized runs) and ``WithIndex``, which appends each item's index so that later analyses can
show which image a policy was chosen for (paper §4.3, Figures 7-8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset

from .arrays import ArrayDataset
from .errors import DatasetError
from .splits import split_per_class

__all__ = ["LabelledSubset", "WithIndex", "balanced_subset", "targets_of"]


def targets_of(dataset: Dataset) -> np.ndarray:
    """Every item's label without loading any image (needs a ``targets`` attribute)."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise DatasetError(
            f"{type(dataset).__name__} has no 'targets' attribute, so its labels cannot be read "
            "without decoding every image; build it with build_dataset() to get one that has."
        )
    return np.asarray(targets)


class LabelledSubset(Subset):
    """``torch.utils.data.Subset`` that keeps ``targets``, ``classes`` and ``info`` of its parent,
    and ``source_indices`` (positions in the parent)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        super().__init__(dataset, list(indices))
        self.targets = targets_of(dataset)[self.indices].tolist()
        self.source_indices = list(self.indices)
        self.classes = getattr(dataset, "classes", None)
        self.info = getattr(dataset, "info", None)


def balanced_subset(dataset: Dataset, n_per_class: int, seed: int = 0) -> Dataset:
    """``n_per_class`` images of every class, drawn with ``seed`` (same seed, same images)."""
    if n_per_class <= 0:
        raise DatasetError(f"n_per_class must be a positive number of images, got {n_per_class}.")
    idx = split_per_class(targets_of(dataset), {"subset": n_per_class}, seed=seed, rest=None)["subset"]
    if isinstance(dataset, ArrayDataset):
        return dataset.subset(idx)
    return LabelledSubset(dataset, idx.tolist())


class WithIndex(Dataset):
    """Items become ``(*item, index)``: the wrapped item followed by its position in this data
    set, so ``ds[i][-1] == i``. Attributes (``targets``, ``info``, ``difficulty``, ...) are read
    through from the wrapped data set."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.dataset[index], index)

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the wrapper; guard 'dataset' against recursion
        # while unpickling in a DataLoader worker (the attribute is not restored yet).
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
