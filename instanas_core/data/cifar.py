"""CIFAR-10 and CIFAR-100 (paper §4.2, Tables 1-2), read by torchvision's ``CIFAR10`` /
``CIFAR100`` classes from the standard on-disk layout: ``<root>/cifar-10-batches-py/``
(``data_batch_1..5``, ``test_batch``, ``batches.meta``) and ``<root>/cifar-100-python/``
(``train``, ``test``, ``meta``).

Splits: ``test`` is the official test set (10,000). The official training set (50,000) is split
into ``val``, a seeded class-balanced hold-out of ``val_per_class`` images per class (default 500
for CIFAR-10, 50 for CIFAR-100: 5,000 either way, ``split_seed=0``), and ``train``, the other
45,000. ``val_per_class=0`` keeps all 50,000 in ``train`` (the paper's setting) and removes
``val``.

Integrity: torchvision compares every file's md5 with the official archive's. This loader
replaces that check with an existence check (and names any file that fails to unpickle), so that
the same code reads both the official files and the small files the tests write in the same
format. ``download=True`` fetches the official archive, whose md5 torchvision does verify.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from .arrays import ArrayDataset
from .errors import DatasetError
from .info import DatasetInfo
from .paths import data_root
from .splits import split_per_class
from .transforms import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

__all__ = ["CIFAR10_INFO", "CIFAR100_INFO", "build_cifar10", "build_cifar100"]

CIFAR10_INFO = DatasetInfo(
    name="cifar10",
    title="CIFAR-10",
    resolution=32,
    num_classes=10,
    splits={"train": 45_000, "val": 5_000, "test": 10_000},
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    pad=4,
    flip=True,
    cutout=16,
    source="https://www.cs.toronto.edu/~kriz/cifar.html (torchvision CIFAR10 layout)",
)
CIFAR100_INFO = DatasetInfo(
    name="cifar100",
    title="CIFAR-100",
    resolution=32,
    num_classes=100,
    splits={"train": 45_000, "val": 5_000, "test": 10_000},
    mean=CIFAR100_MEAN,
    std=CIFAR100_STD,
    pad=4,
    flip=True,
    cutout=16,
    source="https://www.cs.toronto.edu/~kriz/cifar.html (torchvision CIFAR100 layout)",
)


class _ExistenceCheckedMixin:
    """Replaces torchvision's md5 checks by existence checks (see the module docstring)."""

    root: str
    base_folder: str
    train_list: list[list[str]]
    test_list: list[list[str]]
    meta: dict[str, str]

    def _check_integrity(self) -> bool:
        folder = Path(self.root, self.base_folder)
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _CIFAR10(_ExistenceCheckedMixin, CIFAR10):
    pass


class _CIFAR100(_ExistenceCheckedMixin, CIFAR100):
    pass


def _files(tv_class: type[CIFAR10]) -> list[str]:
    return [name for name, _ in tv_class.train_list + tv_class.test_list] + [tv_class.meta["filename"]]


def _unreadable_file(folder: Path, names: list[str]) -> tuple[str, Exception] | None:
    """The first file that does not unpickle to a dict, for the error message."""
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                if not isinstance(pickle.load(f, encoding="latin1"), dict):
                    raise ValueError("not a pickled dict")
        except Exception as e:  # any failure to read is what we are looking for
            return name, e
    return None


def _load(
    tv_class: type[CIFAR10],
    info: DatasetInfo,
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    download: bool,
    val_per_class: int,
    split_seed: int,
) -> Dataset:
    root_path = data_root(root)
    folder = root_path / tv_class.base_folder
    if download:
        try:
            if not all((folder / n).is_file() for n in _files(tv_class)):
                download_and_extract_archive(
                    tv_class.url, str(root_path), filename=tv_class.filename, md5=tv_class.tgz_md5
                )
        except Exception as e:
            raise DatasetError(
                f"Downloading {info.title} from {tv_class.url} into {root_path} failed ({type(e).__name__}: {e}). "
                f"Without internet access, fetch that archive elsewhere and extract it into {root_path}."
            ) from e
    missing = [n for n in _files(tv_class) if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            f"{info.title} files not found: expected the folder {folder} holding {', '.join(_files(tv_class))} "
            f"(missing: {', '.join(missing)}). Get them with build_dataset('{info.name}', root='{root_path}', "
            f"download=True) or the command-line flag --download, or download {tv_class.url} and extract "
            f"it into {root_path}. The root defaults to ./data or $INSTANAS_DATA."
        )
    if split == "val" and val_per_class <= 0:
        raise DatasetError(
            f"{info.title} has no 'val' split when val_per_class=0 (all training images are in 'train'); "
            "pass val_per_class > 0 to hold some out, or use split='test'."
        )
    ours = _CIFAR10 if tv_class is CIFAR10 else _CIFAR100
    try:
        tv = ours(str(root_path), train=split != "test")
    except Exception as e:
        bad = _unreadable_file(folder, _files(tv_class))
        where = f"the file {folder / bad[0]} cannot be read ({type(bad[1]).__name__}: {bad[1]})" if bad else str(e)
        raise DatasetError(
            f"{info.title} in {folder} is corrupt or truncated: {where}. Delete the folder and download "
            "it again (download=True or --download)."
        ) from e
    dataset = ArrayDataset(tv.data, tv.targets, info, tv.classes, transform)  # data: (N, 32, 32, 3) uint8
    if split == "test" or val_per_class <= 0:
        return dataset
    parts = split_per_class(dataset.targets.numpy(), {"val": val_per_class}, seed=split_seed)
    return dataset.subset(parts[split])


def build_cifar10(
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    *,
    download: bool = False,
    val_per_class: int = 500,
    split_seed: int = 0,
) -> Dataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (see the module docstring for the splits)."""
    return _load(CIFAR10, CIFAR10_INFO, root, split, transform, download, val_per_class, split_seed)


def build_cifar100(
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    *,
    download: bool = False,
    val_per_class: int = 50,
    split_seed: int = 0,
) -> Dataset:
    """CIFAR-100 from ``<root>/cifar-100-python`` (see the module docstring for the splits)."""
    return _load(CIFAR100, CIFAR100_INFO, root, split, transform, download, val_per_class, split_seed)
