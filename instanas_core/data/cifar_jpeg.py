"""CIFAR-10 (JPEG q75): the 50,000 CIFAR-10 training images re-encoded as JPEG quality 75 and
packed into one ``train.npz`` (arrays ``jpeg``, ``offsets``, ``labels``; see
``shared/datasets/cifar10-jpeg/README.md``). It is how real natural images reach this project
offline, standing in for CIFAR-10 (paper §4.2, Table 1). Results measured on it are labelled
"CIFAR-10 (JPEG q75)", never "CIFAR-10": JPEG artifacts cost a little accuracy.

Only a training split exists in the shared file, so the splits are carved from it with a fixed
seed (``split_seed=0``), class-balanced: ``val`` = 500 images per class (5,000), ``test`` = another
500 per class (5,000), ``train`` = the remaining 40,000 (4,000 per class). Change the slices with
``val_per_class`` / ``test_per_class``; report the split with any number measured on it.

A ``test.npz`` beside ``train.npz`` (the same layout: ``jpeg``, ``offsets``, ``labels``; 32x32
images, labels 0..9) is the test split instead: every image of it, with ``val`` carved from
the training file alone and ``test_per_class`` unused. Results on it are labelled
"CIFAR-10 test (JPEG q75)" (:func:`cifar10_jpeg_title`). A test file with another image size, a
label outside the ten classes or a JPEG that does not decode is refused, naming the file.

``root`` is the folder holding ``train.npz`` (or a data root with a ``cifar10-jpeg/`` folder);
without it, ``$INSTANAS_CIFAR10_JPEG``, else ``<data root>/cifar10-jpeg``, else the shared copy
beside a checkout (``../shared/datasets/cifar10-jpeg``). The images are
decoded once with PIL (about 5 s) and the uint8 array (N, 32, 32, 3) is cached as ``.npy`` in
``cache_dir`` (default ``<data root>/cache``, which git ignores), named after a fingerprint of the
file (size, modification time, offsets and labels). Neither the file nor the cache belongs in
the repository. Grayscale images would be converted to RGB; an image that does not decode, or
decodes to a size other than 32x32, is refused with its index.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .arrays import ArrayDataset
from .errors import DatasetError
from .info import DatasetInfo
from .paths import data_root
from .splits import split_per_class
from .transforms import CIFAR10_MEAN, CIFAR10_STD

__all__ = [
    "CIFAR10_JPEG_ENV_VAR",
    "CIFAR10_JPEG_INFO",
    "build_cifar10_jpeg",
    "cifar10_jpeg_test_file",
    "cifar10_jpeg_title",
    "load_packed_jpeg",
    "use_shared_cifar10_jpeg",
]

CIFAR10_JPEG_ENV_VAR = "INSTANAS_CIFAR10_JPEG"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_SIZE = 32

CIFAR10_JPEG_INFO = DatasetInfo(
    name="cifar10-jpeg",
    title="CIFAR-10 (JPEG q75)",
    resolution=_SIZE,
    num_classes=10,
    splits={"train": 40_000, "val": 5_000, "test": 5_000},
    mean=CIFAR10_MEAN,
    std=CIFAR10_STD,
    pad=4,
    flip=True,
    cutout=16,
    source="shared/datasets/cifar10-jpeg/train.npz (CIFAR-10 training split re-encoded as JPEG q75)",
)

# Decoded arrays already loaded in this process, so train/val/test cost one decode.
_DECODED: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


# A checkout of the project finds the shared copy beside it (shared/datasets/cifar10-jpeg/README.md).
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "cifar10-jpeg"


def use_shared_cifar10_jpeg() -> str | None:
    """Point ``$INSTANAS_CIFAR10_JPEG`` at the copy beside the checkout when nothing else locates
    the data set, so that the processes this one starts (notebook kernels, torchrun ranks) find
    the same copy; returns the folder used, if any."""
    if os.environ.get(CIFAR10_JPEG_ENV_VAR) or (data_root() / "cifar10-jpeg").exists():
        return None
    if (_BESIDE_CHECKOUT / "train.npz").is_file():
        os.environ[CIFAR10_JPEG_ENV_VAR] = str(_BESIDE_CHECKOUT)
        return str(_BESIDE_CHECKOUT)
    return None


def _locate(root: str | os.PathLike[str] | None) -> Path:
    if root is None:
        root = os.environ.get(CIFAR10_JPEG_ENV_VAR) or data_root() / "cifar10-jpeg"
        if not Path(root).exists() and (_BESIDE_CHECKOUT / "train.npz").is_file():
            root = _BESIDE_CHECKOUT
    base = Path(root).expanduser().resolve()
    for candidate in (base, base / "train.npz", base / "cifar10-jpeg" / "train.npz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"CIFAR-10 (JPEG q75) not found: expected the packed file {base / 'train.npz'}. It is the file "
        "described in shared/datasets/cifar10-jpeg/README.md (beside a checkout of this project at "
        f"../shared/datasets/cifar10-jpeg); pass its folder as root= or set ${CIFAR10_JPEG_ENV_VAR}."
    )


def cifar10_jpeg_test_file(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``test.npz`` beside the located ``train.npz``, if there is one (see the module docstring)."""
    test = _locate(root).with_name("test.npz")
    return test if test.is_file() else None


def cifar10_jpeg_title(root: str | os.PathLike[str] | None = None) -> str:
    """How results on the test split are labelled: "CIFAR-10 test (JPEG q75)" when a ``test.npz``
    is the test split, else the data set's title (the test split carved from the training file)."""
    try:
        test = cifar10_jpeg_test_file(root)
    except DatasetError:  # data not here (a finished run read elsewhere): the title it was made with
        test = None
    return "CIFAR-10 test (JPEG q75)" if test is not None else CIFAR10_JPEG_INFO.title


def _read_index(path: Path) -> tuple[np.lib.npyio.NpzFile, np.ndarray, np.ndarray]:
    """The open npz file and its validated offsets (N+1,) and labels (N,)."""
    try:
        packed = np.load(path)
        missing = [k for k in ("jpeg", "offsets", "labels") if k not in packed.files]
        if not missing:
            offsets, labels = packed["offsets"].astype(np.int64), packed["labels"].astype(np.int64)
            total = packed["jpeg"].shape[0]
    except Exception as e:
        raise DatasetError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}); it may be truncated.") from e
    if missing:
        raise DatasetError(
            f"{path} lacks the array(s) {', '.join(repr(k) for k in missing)}; a packed file holds 'jpeg', "
            "'offsets' and 'labels' (see shared/datasets/cifar10-jpeg/README.md)."
        )
    if offsets.ndim != 1 or len(offsets) != len(labels) + 1 or offsets[0] != 0 or offsets[-1] != total:
        raise DatasetError(
            f"{path}: 'offsets' must have one more entry than 'labels' ({len(labels)}), start at 0 and end "
            f"at the length of 'jpeg' ({total}); got {len(offsets)} entries from {offsets[:1]} to {offsets[-1:]}."
        )
    if np.any(np.diff(offsets) <= 0):
        raise DatasetError(
            f"{path}: image {int(np.argmax(np.diff(offsets) <= 0))} has no bytes (offsets must increase)."
        )
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(CIFAR10_CLASSES):
        raise DatasetError(f"{path}: labels must lie in 0..9 (CIFAR-10 classes), got {labels.min()}..{labels.max()}.")
    return packed, offsets, labels


def _decode(path: Path, jpeg: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    images = np.empty((len(offsets) - 1, _SIZE, _SIZE, 3), dtype=np.uint8)  # (N, 32, 32, 3)
    for i in range(len(images)):
        a, b = int(offsets[i]), int(offsets[i + 1])
        try:
            image = Image.open(io.BytesIO(jpeg[a:b].tobytes()))
            image.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise DatasetError(
                f"Image {i} of {path} (bytes {a}..{b}) cannot be decoded: {type(e).__name__}: {e}. "
                "The packed file is corrupt; get a fresh copy."
            ) from e
        if image.size != (_SIZE, _SIZE):
            raise DatasetError(
                f"Image {i} of {path} is {image.size[0]}x{image.size[1]}, but a CIFAR-10 packed file must "
                f"hold {_SIZE}x{_SIZE} images; refusing rather than resizing, which would silently change "
                "the data."
            )
        images[i] = np.asarray(image.convert("RGB"))  # grayscale/CMYK/RGBA -> 3-channel RGB
    return images


def load_packed_jpeg(
    root: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All images of the packed file as uint8 (N, 32, 32, 3) and labels as int64 (N,), decoded
    once and cached (see the module docstring). Do not modify the arrays in place: they are shared."""
    return _load_file(_locate(root), cache_dir)


def _load_file(path: Path, cache_dir: str | os.PathLike[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """One packed file (``train.npz`` or ``test.npz``), decoded once and cached."""
    packed, offsets, labels = _read_index(path)
    stat = path.stat()
    digest = hashlib.sha1(f"{stat.st_size}-{stat.st_mtime_ns}".encode())
    digest.update(offsets.tobytes())
    digest.update(labels.tobytes())
    key = (str(path), digest.hexdigest()[:16])
    if key in _DECODED:
        return _DECODED[key]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else data_root() / "cache"
    cache_file = cache / f"cifar10-jpeg-{key[1]}.npy"
    images = None
    if cache_file.is_file():
        try:
            images = np.load(cache_file)
        except Exception:  # a damaged cache is rebuilt, never trusted
            images = None
        if images is not None and (images.dtype != np.uint8 or images.shape != (len(labels), _SIZE, _SIZE, 3)):
            images = None
    if images is None:
        images = _decode(path, packed["jpeg"], offsets)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, images)
            os.replace(tmp, cache_file)  # atomic, so a concurrent reader never sees half a file
        except OSError as e:
            warnings.warn(f"Could not cache the decoded CIFAR-10 (JPEG q75) images in {cache}: {e}", stacklevel=2)
    _DECODED[key] = (images, labels)
    return images, labels


def build_cifar10_jpeg(
    root: str | os.PathLike[str] | None,
    split: str,
    transform: Callable[[Any], Any] | None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    val_per_class: int = 500,
    test_per_class: int = 500,
    split_seed: int = 0,
) -> Dataset:
    """The ``split`` of CIFAR-10 (JPEG q75) carved from the packed file, or the ``test.npz`` beside
    it for ``test`` (see the module docstring)."""
    test_file = cifar10_jpeg_test_file(root)
    if test_file is not None and split == "test":
        images, labels = _load_file(test_file, cache_dir)
        return ArrayDataset(images, labels, CIFAR10_JPEG_INFO, CIFAR10_CLASSES, transform)
    images, labels = load_packed_jpeg(root, cache_dir)
    holdouts = {"val": val_per_class} if test_file is not None else {"val": val_per_class, "test": test_per_class}
    parts = split_per_class(labels, holdouts, seed=split_seed)
    return ArrayDataset(images, labels, CIFAR10_JPEG_INFO, CIFAR10_CLASSES, transform).subset(parts[split])
