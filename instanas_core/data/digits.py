"""scikit-learn's bundled handwritten digits (1,797 images, 8x8, 10 classes; Alpaydin & Kaynak
1998), shaped like CIFAR so that the 32-px InstaNAS search space (paper §4.1-4.2) runs on it
anywhere, offline: pixel values 0..16 are scaled to 0..255, the 8x8 images are upsampled to
32x32 (bilinear) and the grey channel is repeated into RGB.

Splits are fixed, seeded (``split_seed=0``) and stratified by class: 20% of each class for
``val``, 20% for ``test``, the other 60% for ``train`` (1,079 / 359 / 359 images). They are
disjoint and, drawn with NumPy's frozen legacy RNG, the same on every machine.

Augmentation: random crop with 4 px padding and an 8x8 Cutout; no horizontal flip, which would
turn some digits into other shapes. The normalisation constants below were computed once over
the training split (all three channels are equal).
"""

from __future__ import annotations

import os
from functools import lru_cache
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .arrays import ArrayDataset
from .info import DatasetInfo
from .splits import split_per_class

__all__ = ["DIGITS_INFO", "build_digits", "digits_arrays"]

DIGITS_MEAN = (0.3058, 0.3058, 0.3058)
DIGITS_STD = (0.3238, 0.3238, 0.3238)

DIGITS_INFO = DatasetInfo(
    name="digits",
    title="Digits (scikit-learn, 32x32 RGB)",
    resolution=32,
    num_classes=10,
    splits={"train": 1_079, "val": 359, "test": 359},
    mean=DIGITS_MEAN,
    std=DIGITS_STD,
    pad=4,
    flip=False,
    cutout=8,
    source="sklearn.datasets.load_digits (bundled with scikit-learn)",
)


@lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 (N, 32, 32, 3) RGB images and int64 (N,) labels (cached:
    do not modify them in place)."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    digits = load_digits()
    x = torch.from_numpy(digits.images * (255.0 / 16.0)).float()[:, None]  # (N, 1, 8, 8) in 0..255
    x = F.interpolate(x, size=32, mode="bilinear", align_corners=False)  # (N, 1, 32, 32)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1)  # (N, 3, 32, 32)
    images = x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, 32, 32, 3)
    return images, digits.target.astype(np.int64)


def build_digits(
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    *,
    split_seed: int = 0,
) -> Dataset:
    """The digits split ``split`` (``root`` is unused: the data ship with scikit-learn)."""
    images, labels = digits_arrays()
    parts = split_per_class(labels, {"val": 0.2, "test": 0.2}, seed=split_seed)
    return ArrayDataset(images, labels, DIGITS_INFO, [str(d) for d in range(10)], transform).subset(parts[split])
