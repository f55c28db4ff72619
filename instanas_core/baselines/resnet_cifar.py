"""ResNet-50 and ResNet-101 baselines (He et al. 2016; paper Table 1), from torchvision's
builders with ``weights=None``.

Small-image adaptation, the usual CIFAR recipe, so that the last map is 4x4 at 32 and 64 px:

* 32 px: ``conv1`` (7x7, stride 2) replaced by a 3x3 stride-1 convolution and ``maxpool``
  replaced by ``nn.Identity``: 32 -> 32 (layer1) -> 16 -> 8 -> 4;
* 64 px: ``conv1`` replaced by the 3x3 stride-1 convolution only (the max-pool stays):
  64 -> 32 (layer1) -> 16 -> 8 -> 4;
* 224 px: unchanged (7x7 final map).
"""

from __future__ import annotations

from torch import nn
from torchvision import models

from .torchvision_models import check_resolution

__all__ = ["RESNET_DEPTHS", "adapt_resnet", "build_resnet"]

RESNET_DEPTHS: dict[int, str] = {50: "resnet50", 101: "resnet101"}


def adapt_resnet(model: models.ResNet, resolution: int) -> list[str]:
    """Replace the ImageNet stem for 32/64 px inputs (see module docstring); in place."""
    check_resolution(resolution)
    changes: list[str] = []
    if resolution in (32, 64):
        out_ch = model.conv1.out_channels
        model.conv1 = nn.Conv2d(3, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
        # the same initialisation torchvision gives every ResNet convolution
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        changes.append("conv1: 7x7 stride 2 -> 3x3 stride 1")
    if resolution == 32:
        model.maxpool = nn.Identity()
        changes.append("maxpool: MaxPool2d(3, stride 2) -> Identity")
    return changes


def build_resnet(depth: int, resolution: int, num_classes: int) -> nn.Module:
    """torchvision ResNet-``depth`` (50 or 101, no pretrained weights), adapted to ``resolution``."""
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth {depth} is not one of the paper's {tuple(RESNET_DEPTHS)}.")
    model = getattr(models, RESNET_DEPTHS[depth])(weights=None, num_classes=num_classes)
    adapt_resnet(model, resolution)
    return model
