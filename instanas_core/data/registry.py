"""The data sets by name: ``build_dataset`` (the one entry point), ``list_datasets`` and
``dataset_info``. Names are a contract with the command line and the notebooks: ``cifar10``,
``cifar100`` (paper Tables 1-2), ``tinyimagenet`` (Table 3), ``imagenet`` (Figure 5), and three
that run offline: ``digits``, ``cifar10-jpeg``, ``synthetic-difficulty``. Augmentation follows
§4.2 (see :mod:`instanas_core.data.transforms`)."""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from .cifar import CIFAR10_INFO, CIFAR100_INFO, build_cifar10, build_cifar100
from .cifar_jpeg import CIFAR10_JPEG_INFO, build_cifar10_jpeg, cifar10_jpeg_test_file, cifar10_jpeg_title
from .digits import DIGITS_INFO, build_digits
from .errors import DatasetError
from .imagefolder import IMAGENET_INFO, TINYIMAGENET_INFO, build_imagenet, build_tinyimagenet
from .info import DatasetInfo
from .subsets import WithIndex, balanced_subset
from .synthetic import SYNTHETIC_INFO, build_synthetic
from .transforms import build_transform

__all__ = ["build_dataset", "dataset_info", "dataset_title", "external_test_split", "list_datasets"]


@dataclass(frozen=True)
class _Entry:
    info: DatasetInfo
    build: Callable[..., Dataset]
    # A test split shipped beside the data (root -> its file, or None), used whole when present.
    test_file: Callable[[Any], Any] | None = None
    # How results on the test split are labelled, given the root (default: info.title).
    title: Callable[[Any], str] | None = None


_REGISTRY: dict[str, _Entry] = {
    e.info.name: e
    for e in (
        _Entry(CIFAR10_INFO, build_cifar10),
        _Entry(CIFAR100_INFO, build_cifar100),
        _Entry(TINYIMAGENET_INFO, build_tinyimagenet),
        _Entry(IMAGENET_INFO, build_imagenet),
        _Entry(DIGITS_INFO, build_digits),
        _Entry(CIFAR10_JPEG_INFO, build_cifar10_jpeg, cifar10_jpeg_test_file, cifar10_jpeg_title),
        _Entry(SYNTHETIC_INFO, build_synthetic),
    )
}


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise DatasetError(f"Unknown data set {name!r}; known data sets: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def list_datasets() -> dict[str, DatasetInfo]:
    """Every known data set's description (resolution, class count, split sizes, ...) by name."""
    return {name: e.info for name, e in _REGISTRY.items()}


def dataset_info(name: str) -> DatasetInfo:
    """The description of data set ``name``, without loading it."""
    return _entry(name).info


def dataset_title(name: str, root: str | os.PathLike[str] | None = None) -> str:
    """How results on data set ``name`` at ``root`` are labelled: its title, or the title of the
    test split that ships beside it (``cifar10-jpeg`` with a ``test.npz``: "CIFAR-10 test (JPEG q75)")."""
    entry = _entry(name)
    return entry.title(root) if entry.title is not None else entry.info.title


def external_test_split(name: str, root: str | os.PathLike[str] | None = None) -> bool:
    """Whether data set ``name`` at ``root`` has a test file of its own (``cifar10-jpeg``'s
    ``test.npz``): then the test split is that file, whole, and nothing is carved for it."""
    entry = _entry(name)
    if entry.test_file is None:
        return False
    try:
        return entry.test_file(root) is not None
    except DatasetError:  # no data at all: building the split will say so
        return False


def build_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    augment: bool | None = None,
    n_per_class: int | None = None,
    seed: int = 0,
    return_index: bool = False,
    **options: Any,
) -> Dataset:
    """Build split ``split`` of data set ``name``; items are ``(image, label)`` with ``image`` a
    normalised float tensor (3, H, W).

    ``root``: the data root (default ``./data`` or ``$INSTANAS_DATA``; for ``cifar10-jpeg`` the
    folder holding ``train.npz``). ``augment``: apply the §4.2 training augmentation (default:
    only for ``split="train"``, and not at all for ``synthetic-difficulty``, whose items are
    fixed by their seed). ``n_per_class``: keep a class-balanced subset of that many images
    per class, drawn with ``seed``. ``seed`` also seeds ``synthetic-difficulty``'s generator.
    ``return_index``: items become ``(..., index)``, the index last (see :class:`WithIndex`).
    Other ``options`` are per data set (``download``, ``val_per_class``, ``test_per_class``,
    ``split_seed``, ``cache_dir``, ``size``, ``return_difficulty``); see the module of each.
    """
    entry = _entry(name)
    info = entry.info
    if split not in info.splits:
        raise DatasetError(f"{info.title} has no split {split!r}; valid splits: {', '.join(info.splits)}.")
    accepted = [p for p in inspect.signature(entry.build).parameters if p not in ("root", "split", "transform")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatasetError(
            f"Unknown option(s) {', '.join(unknown)} for {name!r}; it accepts augment, n_per_class, seed, "
            f"return_index{''.join(', ' + p for p in accepted if p != 'seed')}."
        )
    if "seed" in accepted:
        options["seed"] = seed
    train = (split == "train" and info.augment_train) if augment is None else augment
    dataset = entry.build(root=root, split=split, transform=build_transform(info, train), **options)
    if n_per_class is not None:
        dataset = balanced_subset(dataset, n_per_class, seed)
    if return_index:
        dataset = WithIndex(dataset)
    return dataset
