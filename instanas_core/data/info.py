"""What the rest of the code needs to know about a data set before loading it: input resolution,
class count, split sizes, normalisation statistics and the paper's augmentation recipe (§4.2:
random crop with padding, horizontal flip, Cutout; Tables 1-3 for the data sets themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Literal

__all__ = ["DatasetInfo"]


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of one registered data set.

    ``splits`` maps each split the data set offers to its size under default options (options
    such as ``val_per_class`` or ``size`` change them). ``title`` is how results measured on the
    data set must be labelled. ``crop`` picks the training crop: ``"pad"`` is a random crop of
    the full image after zero-padding by ``pad`` pixels (CIFAR style), ``"resized"`` is
    RandomResizedCrop (ImageNet style). ``cutout`` is the side of the Cutout square in pixels
    (0: no Cutout). ``augment_train`` says whether ``split="train"`` is augmented when the
    caller does not say (``augment=None``).
    """

    name: str
    title: str
    resolution: int
    num_classes: int
    splits: Mapping[str, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: Literal["pad", "resized"] = "pad"
    pad: int = 4
    flip: bool = True
    cutout: int = 0
    augment_train: bool = True
    source: str = ""
