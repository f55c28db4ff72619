"""An in-memory image data set: one uint8 tensor of images plus labels, for the data sets that fit
in memory (CIFAR-10/100, digits, CIFAR-10 JPEG, synthetic). Splits and subsets copy their rows
out of the full array (at most 150 MB, for CIFAR), which keeps item access a plain index."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .info import DatasetInfo

__all__ = ["ArrayDataset"]


class ArrayDataset(Dataset):
    """Items are ``(transform(image), label)``; ``image`` is a uint8 tensor (3, H, W).

    ``images`` is a uint8 array (N, H, W, 3) as decoders produce it; it is stored once as a
    (N, 3, H, W) tensor. ``source_indices[i]`` is the position of item ``i`` in the array the
    data set was built from, so an analysis can trace a subset's item back to its image.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: Sequence[int] | np.ndarray,
        info: DatasetInfo,
        classes: Sequence[str],
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, 3, H, W)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)  # (N,)
        self.source_indices = torch.arange(len(self.targets))  # (N,)
        self.info = info
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]  # (3, H, W) uint8
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> ArrayDataset:
        """A view of the items at ``indices`` that keeps the class, transform and any per-item
        arrays a subclass registered in ``_per_item``."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        out = copy.copy(self)
        for name in ("images", "targets", "source_indices", *self._per_item):
            setattr(out, name, getattr(self, name)[idx])
        return out

    # Names of further per-item tensors (first dimension N) that subset() must slice as well.
    _per_item: tuple[str, ...] = ()
