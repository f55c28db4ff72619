"""TinyImageNet (64x64, 200 classes; paper Table 3) and ImageNet (224x224, 1000 classes; paper
Figure 5) as torchvision ``ImageFolder`` trees of class folders.

* ``tinyimagenet``: ``<root>/tiny-imagenet-200/train/<wnid>/images/*.JPEG`` and, after a one-time
  ``prepare_tinyimagenet_val(root)``, ``<root>/tiny-imagenet-200/val/<wnid>/*.JPEG``. Splits:
  ``train`` (100,000) and ``val`` (10,000); the official test images carry no labels.
* ``imagenet``: ``<root>/imagenet/train/<wnid>/*`` and ``<root>/imagenet/val/<wnid>/*``. Splits:
  ``train`` (1,281,167) and ``val`` (50,000).

Both splits must list the same classes, so that a label means the same class in each; this is
checked and refused otherwise. Images are decoded with PIL and converted to RGB: grayscale,
palette and CMYK images become 3 equal or converted channels, RGBA images lose their alpha
channel. A file PIL cannot decode (truncated, corrupt) raises ``DatasetError`` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from .errors import DatasetError
from .info import DatasetInfo
from .paths import data_root
from .transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_INFO",
    "TINYIMAGENET_INFO",
    "build_imagenet",
    "build_tinyimagenet",
    "load_rgb",
    "prepare_tinyimagenet_val",
]

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

TINYIMAGENET_INFO = DatasetInfo(
    name="tinyimagenet",
    title="TinyImageNet",
    resolution=64,
    num_classes=200,
    splits={"train": 100_000, "val": 10_000},
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    pad=8,
    flip=True,
    cutout=32,
    source=TINYIMAGENET_URL,
)
IMAGENET_INFO = DatasetInfo(
    name="imagenet",
    title="ImageNet (ILSVRC-2012)",
    resolution=224,
    num_classes=1000,
    splits={"train": 1_281_167, "val": 50_000},
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    crop="resized",
    flip=True,
    source="https://image-net.org (ILSVRC-2012, class-folder layout)",
)


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to RGB, or raise ``DatasetError`` naming the file."""
    try:
        with open(path, "rb") as f:
            image = Image.open(f)
            image.load()  # decode now, while we can still name the file in the error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(
            f"Cannot read the image file {path}: {type(e).__name__}: {e}. The file is truncated, "
            "corrupt or not an image; replace it from the original archive or delete it."
        ) from e
    return image.convert("RGB")


class _ImageFolder(ImageFolder):
    """ImageFolder that decodes with :func:`load_rgb` and carries the data set's ``info``."""

    def __init__(self, folder: Path, info: DatasetInfo, transform: Callable[[Any], Any] | None) -> None:
        try:
            super().__init__(str(folder), transform=transform, loader=load_rgb)
        except FileNotFoundError as e:
            raise DatasetError(f"{info.title}: the folder {folder} holds no usable class folders ({e}).") from e
        self.info = info


def _build(
    info: DatasetInfo, base: Path, split: str, transform: Callable[[Any], Any] | None, how_to_get: str
) -> Dataset:
    train_dir, split_dir = base / "train", base / split
    if not train_dir.is_dir() or not split_dir.is_dir():
        missing = train_dir if not train_dir.is_dir() else split_dir
        raise DatasetError(
            f"{info.title} not found: expected the folder {missing} with one sub-folder per class. "
            f"{how_to_get} The root defaults to ./data or $INSTANAS_DATA; pass root= to change it."
        )
    dataset = _ImageFolder(split_dir, info, transform)
    train_classes, _ = find_classes(str(train_dir))
    if split != "train" and dataset.classes != train_classes:
        only_split = sorted(set(dataset.classes) - set(train_classes))[:5]
        only_train = sorted(set(train_classes) - set(dataset.classes))[:5]
        raise DatasetError(
            f"{info.title}: the classes of {split_dir} ({len(dataset.classes)}) differ from those of "
            f"{train_dir} ({len(train_classes)}), so labels would mean different classes in the two "
            f"splits (only in {split}: {only_split}; only in train: {only_train}). Make both folders "
            "hold the same class folders."
        )
    return dataset


def build_tinyimagenet(
    root: str | os.PathLike[str] | None, split: str, transform: Callable[[Any], Any] | None
) -> Dataset:
    """TinyImageNet from ``<root>/tiny-imagenet-200`` (see the module docstring)."""
    root_path = data_root(root)
    base = root_path / "tiny-imagenet-200"
    if split == "val" and (base / "val" / "images").is_dir():
        raise DatasetError(
            f"TinyImageNet's validation images in {base / 'val' / 'images'} are not sorted into class "
            f'folders yet. Run once: python -c "from instanas_core.data import prepare_tinyimagenet_val; '
            f"prepare_tinyimagenet_val('{root_path}')\"."
        )
    how = (
        f"Download {TINYIMAGENET_URL}, unzip it into {root_path}, then run "
        f"prepare_tinyimagenet_val('{root_path}') once."
    )
    return _build(TINYIMAGENET_INFO, base, split, transform, how)


def build_imagenet(root: str | os.PathLike[str] | None, split: str, transform: Callable[[Any], Any] | None) -> Dataset:
    """ImageNet from ``<root>/imagenet/{train,val}`` (see the module docstring)."""
    root_path = data_root(root)
    how = (
        "Download ILSVRC-2012 from https://image-net.org, extract train/ and val/ into "
        f"{root_path / 'imagenet'} and sort val/ into class folders (e.g. with the widely used valprep.sh)."
    )
    return _build(IMAGENET_INFO, root_path / "imagenet", split, transform, how)


def prepare_tinyimagenet_val(root: str | os.PathLike[str] | None = None) -> Path:
    """Move TinyImageNet's flat ``val/images/*.JPEG`` into ``val/<wnid>/`` class folders, as
    listed in ``val/val_annotations.txt``, and remove the emptied ``val/images``. Safe to run
    again (after an interruption or when already done). Returns the ``val`` folder."""
    val = data_root(root) / "tiny-imagenet-200" / "val"
    images, annotations = val / "images", val / "val_annotations.txt"
    if not images.is_dir():
        if val.is_dir() and any(p.is_dir() for p in val.iterdir()):
            return val  # already re-laid out
        raise DatasetError(f"TinyImageNet validation images not found: expected the folder {images}.")
    if not annotations.is_file():
        raise DatasetError(f"Cannot sort {images} into class folders: {annotations} is missing.")
    for line_no, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DatasetError(f"{annotations}, line {line_no}: expected 'file<TAB>wnid<TAB>...', got {line!r}.")
        name, wnid = fields[0], fields[1]
        src, dst = images / name, val / wnid / name
        if dst.is_file() and not src.exists():
            continue  # moved by an earlier, interrupted run
        if not src.is_file():
            raise DatasetError(f"{annotations}, line {line_no} lists {src}, which does not exist.")
        dst.parent.mkdir(exist_ok=True)
        os.replace(src, dst)
    leftover = sorted(p.name for p in images.iterdir())
    if leftover:
        raise DatasetError(
            f"{len(leftover)} files in {images} are not listed in {annotations} (e.g. {leftover[:3]}); "
            "move or delete them, then run prepare_tinyimagenet_val again."
        )
    images.rmdir()
    return val
