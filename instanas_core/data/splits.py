"""Seeded, class-balanced carving of index sets. Used for the hold-out splits the paper's data sets
do not ship with (a validation slice of CIFAR's training set; validation and test slices of the
packed CIFAR-10 JPEG file; digits' train/val/test) and for small ``n_per_class`` subsets that fit
CPU-sized runs.

NumPy's legacy ``RandomState`` is used on purpose: its streams are frozen across NumPy versions,
so a split drawn today is the same split on another machine next year.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import DatasetError

__all__ = ["split_per_class"]


def split_per_class(
    labels: Sequence[int] | np.ndarray,
    holdouts: Mapping[str, int | float],
    seed: int = 0,
    rest: str | None = "train",
) -> dict[str, np.ndarray]:
    """Split indices class by class into the named ``holdouts`` and (optionally) the ``rest``.

    Each holdout is an ``int`` (that many images of every class) or a ``float`` (that fraction of
    each class, rounded). Within a class the indices are permuted once and the holdouts take
    consecutive slices in the mapping's order, so the parts are disjoint; the remainder goes to
    ``rest`` (dropped when ``rest`` is None). Returned index arrays are sorted (int64).
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in holdouts}
    if rest is not None:
        parts[rest] = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, amount in holdouts.items():
            n = int(round(amount * len(idx))) if isinstance(amount, float) else int(amount)
            if n < 0 or start + n > len(idx):
                raise DatasetError(
                    f"Cannot take {n} images of class {int(c)} for '{name}': the class has only "
                    f"{len(idx) - start} images left (of {len(idx)}). Ask for fewer images per class."
                )
            parts[name].append(idx[start : start + n])
            start += n
        if rest is not None:
            parts[rest].append(idx[start:])
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}
