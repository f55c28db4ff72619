"""Augmentation and evaluation transforms (paper §4.2: "random cropping, random horizontal
flipping, and cut-out [DeVries & Taylor 2017] as data augmentation methods"), plus the
normalisation statistics of each data set.

Training pipeline (``crop="pad"``): random crop after zero-padding (4 px at 32 px, 8 px at 64 px),
horizontal flip, to float, normalise, Cutout. Cutout comes after normalisation, as in DeVries &
Taylor's code, so the erased square holds the data set's mean colour (zero after normalising).
ImageNet (``crop="resized"``) uses the standard RandomResizedCrop(224) + flip for training and
Resize(256) + CenterCrop(224) for evaluation. Evaluation otherwise only converts and normalises.

Inputs may be PIL images (ImageFolder) or uint8 tensors (3, H, W) (in-memory data sets); outputs
are float32 tensors (3, H, W), normalised.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2

from .errors import DatasetError
from .info import DatasetInfo

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckImageSize",
    "Cutout",
    "build_transform",
    "cutout",
]

# Per-channel statistics of the training images, pixel values scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cutout(image: torch.Tensor, size: int, cy: int, cx: int) -> torch.Tensor:
    """A copy of ``image`` (..., H, W) with the ``size`` x ``size`` square centred at (cy, cx)
    set to zero; the square is clipped at the border, so near an edge less is erased."""
    h, w = image.shape[-2:]
    y0, x0 = cy - size // 2, cx - size // 2
    out = image.clone()
    out[..., max(y0, 0) : min(y0 + size, h), max(x0, 0) : min(x0 + size, w)] = 0
    return out


class Cutout(nn.Module):
    """Cutout (DeVries & Taylor 2017): zero one ``size`` x ``size`` square whose centre is drawn
    uniformly over the whole image, so the square may hang over the border.

    With ``generator=None`` the centre comes from torch's global RNG, which DataLoader reseeds in
    every worker; a generator passed here is copied into each worker unchanged (all workers
    would then erase the same squares), so pass one only for single-process use or tests.
    """

    def __init__(self, size: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"Cutout size must be positive, got {size}.")
        self.size = size
        self.generator = generator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        cy = int(torch.randint(h, (1,), generator=self.generator))
        cx = int(torch.randint(w, (1,), generator=self.generator))
        return cutout(image, self.size, cy, cx)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class CheckImageSize(nn.Module):
    """Refuse an image whose size or channel count is not the data set's, naming both.

    Fixed-size data sets (CIFAR, TinyImageNet, the in-memory ones) are not resized: an image of
    another size would otherwise be cropped silently in training and fail deep inside batching at
    evaluation. PIL images of any mode were already converted to RGB by the loader
    (:func:`~instanas_core.data.imagefolder.load_rgb`); tensors must have 3 channels.
    """

    def __init__(self, resolution: int, title: str) -> None:
        super().__init__()
        self.resolution, self.title = resolution, title

    def forward(self, image):
        if isinstance(image, torch.Tensor):
            channels, size = (image.shape[-3] if image.dim() >= 3 else 1), tuple(image.shape[-2:])
        else:  # PIL: size is (width, height)
            channels, size = len(image.getbands()), tuple(image.size[::-1])
        r = self.resolution
        if channels != 3 or size != (r, r):
            raise DatasetError(
                f"{self.title}: an image of {channels} channel(s) and {size[0]}x{size[1]} pixels, but this data set's "
                f"images are RGB {r}x{r}. Replace the file with one of the right size (or resize the folder's images "
                f"to {r}x{r}); images are not resized here, so that every image is seen as the paper's pipeline sees it."
            )
        return image

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}"


def build_transform(info: DatasetInfo, train: bool) -> Callable[[object], torch.Tensor]:
    """The training (augmenting) or evaluation transform of a data set, from its ``info``; data sets
    without a resizing crop first check each image's size (:class:`CheckImageSize`)."""
    steps: list[Callable] = []
    if info.crop != "resized":
        steps.append(CheckImageSize(info.resolution, info.title))
    if info.crop == "resized":
        r = info.resolution
        if train:
            steps.append(v2.RandomResizedCrop(r, antialias=True))
        else:
            # The usual 256 -> 224 ratio, kept for other resolutions.
            steps += [v2.Resize(round(r * 256 / 224), antialias=True), v2.CenterCrop(r)]
    elif train and info.pad:
        steps.append(v2.RandomCrop(info.resolution, padding=info.pad))
    if train and info.flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(info.mean), list(info.std)),
        v2.ToPureTensor(),
    ]
    if train and info.cutout:
        steps.append(Cutout(info.cutout))
    return v2.Compose(steps)
