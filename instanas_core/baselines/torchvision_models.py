"""MobileNetV2 and ShuffleNetV2 baselines from torchvision's own builders (paper Tables 1-3).

The paper compares InstaNAS with MobileNetV2 (Sandler et al. 2018) at width 0.4, 1.0 and 1.4
and with ShuffleNetV2 (Ma et al. 2018) at 0.5, 1.0, 1.5 (and 2.0, which §4.2's CIFAR-100 text
cites). The networks are torchvision's, built with ``weights=None``; only the strides change,
in place, the usual way of running ImageNet networks on small images, so that the last feature
map has the same size as our search space's (4x4 at 32 and 64 px, 7x7 at 224 px):

* 32 px (CIFAR): the stem convolution at stride 1, and
  - MobileNetV2: the first stride-2 block (the first 24-channel block, ``features.2``) at stride
    1 (its depthwise convolution ``features.2.conv.1.0``);
  - ShuffleNetV2: the max-pool after the stem replaced by ``nn.Identity``;
  map sizes 32 -> 32 -> ... -> 4.
* 64 px (TinyImageNet): the stem convolution at stride 1 only (``features.0.0`` /
  ``conv1.0``); 64 -> 64 -> ... -> 4.
* 224 px (ImageNet): unchanged; 224 -> 7.

Each ``adapt_*`` function returns the list of changes it made, so that a run can record them.
"""

from __future__ import annotations

from torch import nn
from torchvision import models

__all__ = [
    "MOBILENETV2_WIDTHS",
    "SHUFFLENETV2_WIDTHS",
    "SUPPORTED_RESOLUTIONS",
    "adapt_mobilenet_v2",
    "adapt_shufflenet_v2",
    "build_mobilenet_v2",
    "build_shufflenet_v2",
    "check_resolution",
]

SUPPORTED_RESOLUTIONS: tuple[int, ...] = (32, 64, 224)
MOBILENETV2_WIDTHS: tuple[float, ...] = (0.4, 1.0, 1.4)
# torchvision names its ShuffleNetV2 builders by width: x0_5, x1_0, x1_5, x2_0.
SHUFFLENETV2_WIDTHS: dict[float, str] = {
    0.5: "shufflenet_v2_x0_5",
    1.0: "shufflenet_v2_x1_0",
    1.5: "shufflenet_v2_x1_5",
    2.0: "shufflenet_v2_x2_0",
}


def check_resolution(resolution: int) -> None:
    if resolution not in SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"Unsupported resolution {resolution}: baselines are adapted for "
            f"{', '.join(map(str, SUPPORTED_RESOLUTIONS))} px, the paper's three settings."
        )


def _set_stride_1(conv: nn.Conv2d, name: str) -> str:
    if conv.stride != (2, 2):
        raise RuntimeError(f"expected {name} to have stride 2, found {conv.stride}; torchvision changed?")
    conv.stride = (1, 1)
    return f"{name}: stride 2 -> 1"


def adapt_mobilenet_v2(model: models.MobileNetV2, resolution: int) -> list[str]:
    """Make torchvision's MobileNetV2 fit ``resolution`` (see module docstring); in place."""
    check_resolution(resolution)
    changes: list[str] = []
    if resolution in (32, 64):
        changes.append(_set_stride_1(model.features[0][0], "features.0.0 (stem conv)"))
    if resolution == 32:
        # features[1] is the t=1, 16-channel block; features[2] opens the 24-channel stage, the
        # first with stride 2. Its depthwise conv is conv[1][0] (conv[0] is the 1x1 expansion).
        block = model.features[2]
        changes.append(_set_stride_1(block.conv[1][0], "features.2.conv.1.0 (first 24-channel block, depthwise)"))
        block.stride = 1  # only read at construction (residual rule); 16 -> 24 channels keeps it off
    return changes


def adapt_shufflenet_v2(model: models.ShuffleNetV2, resolution: int) -> list[str]:
    """Make torchvision's ShuffleNetV2 fit ``resolution`` (see module docstring); in place."""
    check_resolution(resolution)
    changes: list[str] = []
    if resolution in (32, 64):
        changes.append(_set_stride_1(model.conv1[0], "conv1.0 (stem conv)"))
    if resolution == 32:
        model.maxpool = nn.Identity()
        changes.append("maxpool: MaxPool2d(3, stride 2) -> Identity")
    return changes


def build_mobilenet_v2(width: float, resolution: int, num_classes: int) -> nn.Module:
    """torchvision MobileNetV2 at ``width`` (no pretrained weights), adapted to ``resolution``."""
    if width not in MOBILENETV2_WIDTHS:
        raise ValueError(f"MobileNetV2 width {width} is not one of the paper's {MOBILENETV2_WIDTHS}.")
    model = models.mobilenet_v2(weights=None, width_mult=width, num_classes=num_classes)
    adapt_mobilenet_v2(model, resolution)
    return model


def build_shufflenet_v2(width: float, resolution: int, num_classes: int) -> nn.Module:
    """torchvision ShuffleNetV2 at ``width`` (no pretrained weights), adapted to ``resolution``."""
    if width not in SHUFFLENETV2_WIDTHS:
        raise ValueError(f"ShuffleNetV2 width {width} is not one of {tuple(SHUFFLENETV2_WIDTHS)}.")
    builder = getattr(models, SHUFFLENETV2_WIDTHS[width])
    model = builder(weights=None, num_classes=num_classes)
    adapt_shufflenet_v2(model, resolution)
    return model
